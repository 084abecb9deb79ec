import AttnKit
import CAttnKitABI

/// The core options from a params struct, after range checks on its fields.
func flashOptions(_ params: UnsafePointer<attn_flash_params>?) throws -> (FlashAttention, attn_flash_params) {
    let p = try readParams("params", params, minimumSize: Int(ATTN_FLASH_PARAMS_V1_SIZE))
    try requireFlag("params->causal", p.causal)
    try requireFlag("params->has_scale", p.has_scale)
    try requireFlag("params->int8_qk", p.int8_qk)
    try requireFlag("params->smooth_k", p.smooth_k)
    guard p.reserved == 0, p.reserved2 == 0 else {
        throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT,
                       message: "params->reserved and params->reserved2 must be 0, got \(p.reserved) and \(p.reserved2)")
    }
    var attention = FlashAttention(
        causal: p.causal != 0, softmaxScale: p.has_scale != 0 ? p.softmax_scale : nil,
        windowLeft: Int(p.window_left), windowRight: Int(p.window_right), softcap: p.softcap,
        dropoutP: p.dropout_p, seed: p.seed)
    if p.int8_qk != 0 {
        guard let mode = qkQuantization(p.qk_quant) else {
            throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT,
                           message: "params->qk_quant must be ATTN_QK_QUANT_PER_BLOCK, _PER_TOKEN or _PER_TENSOR, got \(p.qk_quant)")
        }
        attention.int8 = FlashAttention.Int8QK(qkQuant: mode, smoothK: p.smooth_k != 0)
    }
    return (attention, p)
}

/// The QKQuantization of an ATTN_QK_QUANT_* code.
func qkQuantization(_ code: Int32) -> QKQuantization? {
    switch Int(code) {
    case ATTN_QK_QUANT_PER_BLOCK: return .perBlock
    case ATTN_QK_QUANT_PER_TOKEN: return .perToken
    case ATTN_QK_QUANT_PER_TENSOR: return .perTensor
    default: return nil
    }
}

private let indexDtypes = [Int32(ATTN_DTYPE_I32), Int32(ATTN_DTYPE_I64)]

/// cu_seqlens, checked now and read only if the call has work.
func boundaries(_ name: String, _ tensor: UnsafePointer<attn_tensor>?) throws -> SequenceBoundaries {
    let descriptor = try Descriptor(name, tensor, dtypes: indexDtypes)
    if Int(descriptor.dtype) == ATTN_DTYPE_I32 {
        return try SequenceBoundaries(name, int32: descriptor.view(Int32.self), int64: nil)
    }
    return try SequenceBoundaries(name, int32: nil, int64: descriptor.view(Int64.self))
}

/// The operands both flash forwards share, checked and converted.
private struct FlashOperands {
    var attention: FlashAttention
    let params: attn_flash_params
    let query: Descriptor, key: Descriptor, value: Descriptor, output: Descriptor
    let slopes: Descriptor?, lse: Descriptor?, sDmask: Descriptor?

    init(_ params: UnsafePointer<attn_flash_params>?,
         _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
         _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?,
         _ softmaxLse: UnsafePointer<attn_tensor>?, sDmask: Descriptor?) throws {
        (attention, self.params) = try flashOptions(params)
        (query, key, value, output) = try qkvo(q, k, v, out)
        try sDmask?.requireDtype(query.dtype, sameAs: "q")
        self.sDmask = sDmask
        slopes = try alibiSlopes.map { try Descriptor("alibi_slopes", $0, dtypes: [Int32(ATTN_DTYPE_F32)]) }
        lse = try softmaxLse.map { try Descriptor("softmax_lse", $0, dtypes: [Int32(ATTN_DTYPE_F32)]) }
    }
}

/// The varlen forward, writing S_dmask too when `sDmask` is given.
private func flashVarlen(
    _ params: UnsafePointer<attn_flash_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ cuSeqlensQ: UnsafePointer<attn_tensor>?, _ cuSeqlensK: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?,
    sDmask: Descriptor?
) throws {
    let o = try FlashOperands(params, q, k, v, alibiSlopes, out, softmaxLse, sDmask: sDmask)
    let cuQ = try boundaries("cu_seqlens_q", cuSeqlensQ)
    let cuK = try boundaries("cu_seqlens_k", cuSeqlensK)
    func run<E: AttnStorage>(_: E.Type) throws {
        try o.attention.varlen(q: o.query.view(E.self), k: o.key.view(E.self), v: o.value.view(E.self),
                               boundariesQ: cuQ, boundariesK: cuK, maxSeqlenQ: Int(o.params.max_seqlen_q),
                               maxSeqlenK: Int(o.params.max_seqlen_k), alibiSlopes: o.slopes?.view(Float.self),
                               out: o.output.mutableView(E.self), lse: o.lse?.mutableView(Float.self),
                               probs: o.sDmask?.mutableView(E.self))
    }
    try withStorage(o.query.dtype) { try run($0) }
}

/// The fixed-length forward, writing S_dmask too when `sDmask` is given;
/// `diagonal` replaces Sk − Sq in the masks when given (attn_flash_block_forward).
func flashBatched(
    _ params: UnsafePointer<attn_flash_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?,
    sDmask: Descriptor?, diagonal: Int? = nil
) throws {
    var o = try FlashOperands(params, q, k, v, alibiSlopes, out, softmaxLse, sDmask: sDmask)
    o.attention.diagonal = diagonal
    func run<E: AttnStorage>(_: E.Type) throws {
        try o.attention.batched(q: o.query.view(E.self), k: o.key.view(E.self), v: o.value.view(E.self),
                                alibiSlopes: o.slopes?.view(Float.self), out: o.output.mutableView(E.self),
                                lse: o.lse?.mutableView(Float.self), probs: o.sDmask?.mutableView(E.self))
    }
    try withStorage(o.query.dtype) { try run($0) }
}

@_cdecl("attn_flash_varlen_forward")
public func attn_flash_varlen_forward(
    _ params: UnsafePointer<attn_flash_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ cuSeqlensQ: UnsafePointer<attn_tensor>?, _ cuSeqlensK: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_varlen_forward") {
        try flashVarlen(params, q, k, v, cuSeqlensQ, cuSeqlensK, alibiSlopes, out, softmaxLse, sDmask: nil)
    }
}

@_cdecl("attn_flash_varlen_forward_probs")
public func attn_flash_varlen_forward_probs(
    _ params: UnsafePointer<attn_flash_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ cuSeqlensQ: UnsafePointer<attn_tensor>?, _ cuSeqlensK: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?,
    _ sDmask: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_varlen_forward_probs") {
        let probs = try Descriptor("s_dmask", sDmask, dtypes: attentionDtypes)
        try flashVarlen(params, q, k, v, cuSeqlensQ, cuSeqlensK, alibiSlopes, out, softmaxLse, sDmask: probs)
    }
}

@_cdecl("attn_flash_forward")
public func attn_flash_forward(
    _ params: UnsafePointer<attn_flash_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_forward") {
        try flashBatched(params, q, k, v, alibiSlopes, out, softmaxLse, sDmask: nil)
    }
}

@_cdecl("attn_flash_forward_probs")
public func attn_flash_forward_probs(
    _ params: UnsafePointer<attn_flash_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?,
    _ sDmask: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_forward_probs") {
        let probs = try Descriptor("s_dmask", sDmask, dtypes: attentionDtypes)
        try flashBatched(params, q, k, v, alibiSlopes, out, softmaxLse, sDmask: probs)
    }
}

@_cdecl("attn_flash_varlen_int8_forward")
public func attn_flash_varlen_int8_forward(
    _ params: UnsafePointer<attn_flash_params>?,
    _ qInt8: UnsafePointer<attn_tensor>?, _ qScale: UnsafePointer<attn_tensor>?,
    _ kInt8: UnsafePointer<attn_tensor>?, _ kScale: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ cuSeqlensQ: UnsafePointer<attn_tensor>?, _ cuSeqlensK: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_varlen_int8_forward") {
        var (attention, p) = try flashOptions(params)
        attention.int8 = nil
        let int8 = [Int32(ATTN_DTYPE_I8)], f32 = [Int32(ATTN_DTYPE_F32)]
        let queries = try Descriptor("q_int8", qInt8, dtypes: int8)
        let queryScales = try Descriptor("q_scale", qScale, dtypes: f32)
        let keys = try Descriptor("k_int8", kInt8, dtypes: int8)
        let keyScales = try Descriptor("k_scale", kScale, dtypes: f32)
        let value = try Descriptor("v", v, dtypes: [Int32(ATTN_DTYPE_F32), Int32(ATTN_DTYPE_F16), Int32(ATTN_DTYPE_BF16)])
        let output = try Descriptor("out", out, dtypes: attentionDtypes)
        try output.requireDtype(value.dtype, sameAs: "v")
        let slopes = try alibiSlopes.map { try Descriptor("alibi_slopes", $0, dtypes: f32) }
        let lse = try softmaxLse.map { try Descriptor("softmax_lse", $0, dtypes: f32) }
        let cuQ = try boundaries("cu_seqlens_q", cuSeqlensQ)
        let cuK = try boundaries("cu_seqlens_k", cuSeqlensK)
        func run<E: AttnStorage>(_: E.Type) throws {
            try attention.varlenPrequantized(
                qInt8: queries.view(Int8.self), qScale: queryScales.view(Float.self), kInt8: keys.view(Int8.self),
                kScale: keyScales.view(Float.self), v: value.view(E.self), boundariesQ: cuQ, boundariesK: cuK,
                maxSeqlenQ: Int(p.max_seqlen_q), maxSeqlenK: Int(p.max_seqlen_k), alibiSlopes: slopes?.view(Float.self),
                out: output.mutableView(E.self), lse: lse?.mutableView(Float.self))
        }
        try withStorage(value.dtype) { try run($0) }
    }
}
