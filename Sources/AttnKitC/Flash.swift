import AttnKit
import CAttnKitABI

/// The core options from a params struct, after range checks on its fields.
private func flashOptions(_ params: UnsafePointer<attn_flash_params>?) throws -> (FlashAttention, attn_flash_params) {
    let p = try readParams("params", params)
    try requireFlag("params->causal", p.causal)
    try requireFlag("params->has_scale", p.has_scale)
    let attention = FlashAttention(
        causal: p.causal != 0, softmaxScale: p.has_scale != 0 ? p.softmax_scale : nil,
        windowLeft: Int(p.window_left), windowRight: Int(p.window_right), softcap: p.softcap,
        dropoutP: p.dropout_p, seed: p.seed)
    return (attention, p)
}

private let floatDtypes = attentionDtypes

/// q, k, v and out: float descriptors of one dtype.
private func qkvo(_ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
                  _ out: UnsafePointer<attn_tensor>?) throws -> (Descriptor, Descriptor, Descriptor, Descriptor) {
    let query = try Descriptor("q", q, dtypes: floatDtypes)
    let key = try Descriptor("k", k, dtypes: floatDtypes)
    let value = try Descriptor("v", v, dtypes: floatDtypes)
    let output = try Descriptor("out", out, dtypes: floatDtypes)
    try key.requireDtype(query.dtype, sameAs: "q")
    try value.requireDtype(query.dtype, sameAs: "q")
    try output.requireDtype(query.dtype, sameAs: "q")
    return (query, key, value, output)
}

private func cuSeqlens(_ name: String, _ tensor: UnsafePointer<attn_tensor>?) throws -> [Int] {
    let descriptor = try Descriptor(name, tensor, dtypes: [Int32(ATTN_DTYPE_I32), Int32(ATTN_DTYPE_I64)])
    if Int(descriptor.dtype) == ATTN_DTYPE_I32 {
        return try readIndexTensor(name, int32: descriptor.view(Int32.self), int64: nil)
    }
    return try readIndexTensor(name, int32: nil, int64: descriptor.view(Int64.self))
}

@_cdecl("attn_flash_varlen_forward")
public func attn_flash_varlen_forward(
    _ params: UnsafePointer<attn_flash_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ cuSeqlensQ: UnsafePointer<attn_tensor>?, _ cuSeqlensK: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_varlen_forward") {
        let (attention, p) = try flashOptions(params)
        let (query, key, value, output) = try qkvo(q, k, v, out)
        let cuQ = try cuSeqlens("cu_seqlens_q", cuSeqlensQ)
        let cuK = try cuSeqlens("cu_seqlens_k", cuSeqlensK)
        let slopes = try alibiSlopes.map { try Descriptor("alibi_slopes", $0, dtypes: [Int32(ATTN_DTYPE_F32)]) }
        let lse = try softmaxLse.map { try Descriptor("softmax_lse", $0, dtypes: [Int32(ATTN_DTYPE_F32)]) }
        func run<E: AttnStorage>(_: E.Type) throws {
            try attention.varlen(q: query.view(E.self), k: key.view(E.self), v: value.view(E.self),
                                 cuSeqlensQ: cuQ, cuSeqlensK: cuK, maxSeqlenQ: Int(p.max_seqlen_q),
                                 maxSeqlenK: Int(p.max_seqlen_k), alibiSlopes: slopes?.view(Float.self),
                                 out: output.mutableView(E.self), lse: lse?.mutableView(Float.self))
        }
        try withStorage(query.dtype) { try run($0) }
    }
}

@_cdecl("attn_flash_forward")
public func attn_flash_forward(
    _ params: UnsafePointer<attn_flash_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_forward") {
        let (attention, _) = try flashOptions(params)
        let (query, key, value, output) = try qkvo(q, k, v, out)
        let slopes = try alibiSlopes.map { try Descriptor("alibi_slopes", $0, dtypes: [Int32(ATTN_DTYPE_F32)]) }
        let lse = try softmaxLse.map { try Descriptor("softmax_lse", $0, dtypes: [Int32(ATTN_DTYPE_F32)]) }
        func run<E: AttnStorage>(_: E.Type) throws {
            try attention.batched(q: query.view(E.self), k: key.view(E.self), v: value.view(E.self),
                                  alibiSlopes: slopes?.view(Float.self), out: output.mutableView(E.self),
                                  lse: lse?.mutableView(Float.self))
        }
        try withStorage(query.dtype) { try run($0) }
    }
}
