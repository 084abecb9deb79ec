import AttnKit
import CAttnKitABI

@_cdecl("attn_sdpa_forward")
public func attn_sdpa_forward(
    _ params: UnsafePointer<attn_sdpa_params>?,
    _ query: UnsafePointer<attn_tensor>?, _ key: UnsafePointer<attn_tensor>?, _ value: UnsafePointer<attn_tensor>?,
    _ attnMask: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_sdpa_forward") {
        let options = try readParams("params", params)
        try requireFlag("params->is_causal", options.is_causal)
        try requireFlag("params->enable_gqa", options.enable_gqa)
        try requireFlag("params->has_scale", options.has_scale)
        let floats = attentionDtypes
        let q = try Descriptor("query", query, dtypes: floats)
        let k = try Descriptor("key", key, dtypes: floats)
        let v = try Descriptor("value", value, dtypes: floats)
        let o = try Descriptor("out", out, dtypes: floats)
        try k.requireDtype(q.dtype, sameAs: "query")
        try v.requireDtype(q.dtype, sameAs: "query")
        try o.requireDtype(q.dtype, sameAs: "query")
        let mask = try attnMask.map {
            try Descriptor("attn_mask", $0, dtypes: [Int32(ATTN_DTYPE_BOOL), Int32(ATTN_DTYPE_U8), q.dtype])
        }
        let attention = ScaledDotProductAttention(
            isCausal: options.is_causal != 0, scale: options.has_scale != 0 ? options.scale : nil,
            enableGQA: options.enable_gqa != 0, dropoutP: options.dropout_p, seed: options.seed)
        func run<E: AttnStorage>(_: E.Type) throws {
            var sdpaMask: SDPAMask<E>? = nil
            if let mask {
                sdpaMask = mask.dtype == q.dtype ? .additive(mask.view(E.self)) : .keep(mask.view(UInt8.self))
            }
            try attention(query: q.view(E.self), key: k.view(E.self), value: v.view(E.self), mask: sdpaMask,
                          out: o.mutableView(E.self))
        }
        try withStorage(q.dtype) { try run($0) }
    }
}

/// A C boolean field must be 0 or 1.
func requireFlag(_ name: String, _ value: Int32) throws {
    guard value == 0 || value == 1 else {
        throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT, message: "\(name) must be 0 or 1, got \(value)")
    }
}
