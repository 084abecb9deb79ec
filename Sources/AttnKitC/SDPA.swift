import AttnKit
import CAttnKitABI

@_cdecl("attn_sdpa_forward")
public func attn_sdpa_forward(
    _ params: UnsafePointer<attn_sdpa_params>?,
    _ query: UnsafePointer<attn_tensor>?, _ key: UnsafePointer<attn_tensor>?, _ value: UnsafePointer<attn_tensor>?,
    _ attnMask: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_sdpa_forward") {
        let attention = try sdpaOptions(params)
        let operands = try SDPAOperands(query, key, value, attnMask, out, dtypes: attentionDtypes)
        func run<E: AttnStorage>(_: E.Type) throws {
            try attention(query: operands.query.view(E.self), key: operands.key.view(E.self),
                          value: operands.value.view(E.self), mask: operands.mask(E.self), out: operands.out.mutableView(E.self))
        }
        try withStorage(operands.query.dtype) { try run($0) }
    }
}

/// The core options from an attn_sdpa_params, after checks on its flags.
func sdpaOptions(_ params: UnsafePointer<attn_sdpa_params>?) throws -> ScaledDotProductAttention {
    let options = try readParams("params", params)
    try requireFlag("params->is_causal", options.is_causal)
    try requireFlag("params->enable_gqa", options.enable_gqa)
    try requireFlag("params->has_scale", options.has_scale)
    return ScaledDotProductAttention(
        isCausal: options.is_causal != 0, scale: options.has_scale != 0 ? options.scale : nil,
        enableGQA: options.enable_gqa != 0, dropoutP: options.dropout_p, seed: options.seed)
}

/// A C boolean field must be 0 or 1.
func requireFlag(_ name: String, _ value: Int32) throws {
    guard value == 0 || value == 1 else {
        throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT, message: "\(name) must be 0 or 1, got \(value)")
    }
}

/// The operands of an SDPA-shaped call, checked: query, key, value and out of
/// one dtype from `dtypes`, and an optional mask that is bool/u8 (keep) or of
/// the query dtype (added).
struct SDPAOperands {
    let query, key, value, out: Descriptor
    let attnMask: Descriptor?

    init(_ query: UnsafePointer<attn_tensor>?, _ key: UnsafePointer<attn_tensor>?, _ value: UnsafePointer<attn_tensor>?,
         _ attnMask: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, dtypes: [Int32]) throws {
        self.query = try Descriptor("query", query, dtypes: dtypes)
        self.key = try Descriptor("key", key, dtypes: dtypes)
        self.value = try Descriptor("value", value, dtypes: dtypes)
        self.out = try Descriptor("out", out, dtypes: dtypes)
        for operand in [self.key, self.value, self.out] { try operand.requireDtype(self.query.dtype, sameAs: "query") }
        let maskDtypes = [Int32(ATTN_DTYPE_BOOL), Int32(ATTN_DTYPE_U8), self.query.dtype]
        self.attnMask = try attnMask.map { try Descriptor("attn_mask", $0, dtypes: maskDtypes) }
    }

    /// The mask as the core takes it, for storage E.
    func mask<E>(_: E.Type) -> SDPAMask<E>? {
        guard let attnMask else { return nil }
        return attnMask.dtype == query.dtype ? .additive(attnMask.view(E.self)) : .keep(attnMask.view(UInt8.self))
    }
}
