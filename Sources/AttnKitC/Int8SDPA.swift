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
        let dtypes = [Int32(ATTN_DTYPE_F32), Int32(ATTN_DTYPE_F16), Int32(ATTN_DTYPE_BF16)]
        let q = try Descriptor("query", query, dtypes: dtypes)
        let k = try Descriptor("key", key, dtypes: dtypes)
        let v = try Descriptor("value", value, dtypes: dtypes)
        let o = try Descriptor("out", out, dtypes: dtypes)
        try k.requireDtype(q.dtype, sameAs: "query")
        try v.requireDtype(q.dtype, sameAs: "query")
        try o.requireDtype(q.dtype, sameAs: "query")
        let mask = try attnMask.map {
            try Descriptor("attn_mask", $0, dtypes: [Int32(ATTN_DTYPE_BOOL), Int32(ATTN_DTYPE_U8), q.dtype])
        }
        let attention = Int8ScaledDotProductAttention(
            isCausal: options.is_causal != 0, scale: options.has_scale != 0 ? options.scale : nil,
            enableGQA: options.enable_gqa != 0, qkQuant: mode, smoothK: options.smooth_k != 0)
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
