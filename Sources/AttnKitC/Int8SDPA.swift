import AttnKit
import CAttnKitABI

@_cdecl("attn_int8_sdpa_forward")
public func attn_int8_sdpa_forward(
    _ params: UnsafePointer<attn_int8_sdpa_params>?,
    _ query: UnsafePointer<attn_tensor>?, _ key: UnsafePointer<attn_tensor>?, _ value: UnsafePointer<attn_tensor>?,
    _ attnMask: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_int8_sdpa_forward") {
        let options = try readParams("params", params)
        try requireFlag("params->is_causal", options.is_causal)
        try requireFlag("params->enable_gqa", options.enable_gqa)
        try requireFlag("params->has_scale", options.has_scale)
        try requireFlag("params->smooth_k", options.smooth_k)
        guard let mode = qkQuantization(options.qk_quant) else {
            throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT,
                           message: "params->qk_quant must be ATTN_QK_QUANT_PER_BLOCK, _PER_TOKEN or _PER_TENSOR, got \(options.qk_quant)")
        }
        let operands = try SDPAOperands(query, key, value, attnMask, out,
                                        dtypes: [Int32(ATTN_DTYPE_F32), Int32(ATTN_DTYPE_F16), Int32(ATTN_DTYPE_BF16)])
        let attention = Int8ScaledDotProductAttention(
            isCausal: options.is_causal != 0, scale: options.has_scale != 0 ? options.scale : nil,
            enableGQA: options.enable_gqa != 0, qkQuant: mode, smoothK: options.smooth_k != 0)
        func run<E: AttnStorage>(_: E.Type) throws {
            try attention(query: operands.query.view(E.self), key: operands.key.view(E.self),
                          value: operands.value.view(E.self), mask: operands.mask(E.self), out: operands.out.mutableView(E.self))
        }
        try withStorage(operands.query.dtype) { try run($0) }
    }
}
