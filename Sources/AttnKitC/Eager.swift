import AttnKit
import CAttnKitABI

@_cdecl("attn_eager_forward")
public func attn_eager_forward(
    _ params: UnsafePointer<attn_eager_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ keyMask: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ weights: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_eager_forward") {
        let options = try readParams("params", params)
        guard options.mask_mode == ATTN_MASK_NONE || options.mask_mode == ATTN_MASK_CAUSAL_TOP_LEFT else {
            throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT,
                           message: "params->mask_mode must be ATTN_MASK_NONE or ATTN_MASK_CAUSAL_TOP_LEFT, got \(options.mask_mode)")
        }
        let (query, key, value, output) = try qkvo(q, k, v, out)
        let mask = try keyMask.map { try Descriptor("key_mask", $0, dtypes: [Int32(ATTN_DTYPE_BOOL), Int32(ATTN_DTYPE_U8)]) }
        let probabilities = try weights.map { try Descriptor("weights", $0, dtypes: attentionDtypes) }
        try probabilities?.requireDtype(query.dtype, sameAs: "q")

        let kernel = EagerAttention(numHeads: Int(options.num_heads), headDim: Int(options.head_dim),
                                    causal: options.mask_mode == ATTN_MASK_CAUSAL_TOP_LEFT)
        func run<E: AttnStorage>(_: E.Type) throws {
            try kernel(q: query.view(E.self), k: key.view(E.self), v: value.view(E.self),
                       keyMask: mask?.view(UInt8.self), out: output.mutableView(E.self),
                       weights: probabilities?.mutableView(E.self))
        }
        try withStorage(query.dtype) { try run($0) }
    }
}
