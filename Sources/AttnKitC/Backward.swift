import AttnKit
import CAttnKitABI

/// dout, dq, dk, dv: of q's dtype (the forward operands are checked by the caller).
private struct GradientOperands {
    let dOut: Descriptor, dQ: Descriptor, dK: Descriptor, dV: Descriptor

    init(_ names: (String, String, String, String), dtype: attn_dtype, sameAs: String,
         _ dOut: UnsafePointer<attn_tensor>?, _ dQ: UnsafePointer<attn_tensor>?, _ dK: UnsafePointer<attn_tensor>?,
         _ dV: UnsafePointer<attn_tensor>?) throws {
        self.dOut = try Descriptor(names.0, dOut, dtypes: attentionDtypes)
        self.dQ = try Descriptor(names.1, dQ, dtypes: attentionDtypes)
        self.dK = try Descriptor(names.2, dK, dtypes: attentionDtypes)
        self.dV = try Descriptor(names.3, dV, dtypes: attentionDtypes)
        for operand in [self.dOut, self.dQ, self.dK, self.dV] { try operand.requireDtype(dtype, sameAs: sameAs) }
    }
}

/// The operands both flash backward entries share, checked and converted, in
/// argument order (params, then the forward's tensors, then the gradients).
private struct FlashBackwardOperands {
    var attention: FlashAttention
    let params: attn_flash_params
    let query: Descriptor, key: Descriptor, value: Descriptor, output: Descriptor
    let slopes: Descriptor?, lse: Descriptor
    let gradients: GradientOperands

    init(_ params: UnsafePointer<attn_flash_params>?, _ dout: UnsafePointer<attn_tensor>?,
         _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
         _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?,
         _ softmaxLse: UnsafePointer<attn_tensor>?, _ dq: UnsafePointer<attn_tensor>?, _ dk: UnsafePointer<attn_tensor>?,
         _ dv: UnsafePointer<attn_tensor>?) throws {
        (attention, self.params) = try flashOptions(params)
        (query, key, value, output) = try qkvo(q, k, v, out)
        slopes = try alibiSlopes.map { try Descriptor("alibi_slopes", $0, dtypes: [Int32(ATTN_DTYPE_F32)]) }
        lse = try Descriptor("softmax_lse", softmaxLse, dtypes: [Int32(ATTN_DTYPE_F32)])
        gradients = try GradientOperands(("dout", "dq", "dk", "dv"), dtype: query.dtype, sameAs: "q", dout, dq, dk, dv)
    }
}

@_cdecl("attn_sdpa_forward_lse")
public func attn_sdpa_forward_lse(
    _ params: UnsafePointer<attn_sdpa_params>?,
    _ query: UnsafePointer<attn_tensor>?, _ key: UnsafePointer<attn_tensor>?, _ value: UnsafePointer<attn_tensor>?,
    _ attnMask: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ lse: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_sdpa_forward_lse") {
        let attention = try sdpaOptions(params)
        let operands = try SDPAOperands(query, key, value, attnMask, out, dtypes: attentionDtypes)
        let logSumExp = try lse.map { try Descriptor("lse", $0, dtypes: [Int32(ATTN_DTYPE_F32)]) }
        func run<E: AttnStorage>(_: E.Type) throws {
            try attention(query: operands.query.view(E.self), key: operands.key.view(E.self),
                          value: operands.value.view(E.self), mask: operands.mask(E.self),
                          out: operands.out.mutableView(E.self), lse: logSumExp?.mutableView(Float.self))
        }
        try withStorage(operands.query.dtype) { try run($0) }
    }
}

@_cdecl("attn_sdpa_backward")
public func attn_sdpa_backward(
    _ params: UnsafePointer<attn_sdpa_params>?, _ dout: UnsafePointer<attn_tensor>?,
    _ query: UnsafePointer<attn_tensor>?, _ key: UnsafePointer<attn_tensor>?, _ value: UnsafePointer<attn_tensor>?,
    _ attnMask: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ lse: UnsafePointer<attn_tensor>?,
    _ dquery: UnsafePointer<attn_tensor>?, _ dkey: UnsafePointer<attn_tensor>?, _ dvalue: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_sdpa_backward") {
        let attention = try sdpaOptions(params)
        let operands = try SDPAOperands(query, key, value, attnMask, out, dtypes: attentionDtypes)
        let logSumExp = try Descriptor("lse", lse, dtypes: [Int32(ATTN_DTYPE_F32)])
        let gradients = try GradientOperands(("dout", "dquery", "dkey", "dvalue"), dtype: operands.query.dtype,
                                             sameAs: "query", dout, dquery, dkey, dvalue)
        func run<E: AttnStorage>(_: E.Type) throws {
            try attention.backward(dOut: gradients.dOut.view(E.self), query: operands.query.view(E.self),
                                   key: operands.key.view(E.self), value: operands.value.view(E.self),
                                   mask: operands.mask(E.self), out: operands.out.view(E.self),
                                   lse: logSumExp.view(Float.self), dQuery: gradients.dQ.mutableView(E.self),
                                   dKey: gradients.dK.mutableView(E.self), dValue: gradients.dV.mutableView(E.self))
        }
        try withStorage(operands.query.dtype) { try run($0) }
    }
}

@_cdecl("attn_flash_backward")
public func attn_flash_backward(
    _ params: UnsafePointer<attn_flash_params>?, _ dout: UnsafePointer<attn_tensor>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?,
    _ dq: UnsafePointer<attn_tensor>?, _ dk: UnsafePointer<attn_tensor>?, _ dv: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_backward") {
        try flashBatchedBackward(params, dout, q, k, v, alibiSlopes, out, softmaxLse, dq, dk, dv)
    }
}

/// The fixed-length backward; `diagonal` replaces Sk − Sq in the masks when
/// given (attn_flash_block_backward).
func flashBatchedBackward(
    _ params: UnsafePointer<attn_flash_params>?, _ dout: UnsafePointer<attn_tensor>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?,
    _ dq: UnsafePointer<attn_tensor>?, _ dk: UnsafePointer<attn_tensor>?, _ dv: UnsafePointer<attn_tensor>?,
    diagonal: Int? = nil
) throws {
    var o = try FlashBackwardOperands(params, dout, q, k, v, alibiSlopes, out, softmaxLse, dq, dk, dv)
    o.attention.diagonal = diagonal
    func run<E: AttnStorage>(_: E.Type) throws {
        let g = o.gradients
        try o.attention.batchedBackward(dOut: g.dOut.view(E.self), q: o.query.view(E.self), k: o.key.view(E.self),
                                        v: o.value.view(E.self), out: o.output.view(E.self), lse: o.lse.view(Float.self),
                                        alibiSlopes: o.slopes?.view(Float.self), dQ: g.dQ.mutableView(E.self),
                                        dK: g.dK.mutableView(E.self), dV: g.dV.mutableView(E.self))
    }
    try withStorage(o.query.dtype) { try run($0) }
}

@_cdecl("attn_flash_varlen_backward")
public func attn_flash_varlen_backward(
    _ params: UnsafePointer<attn_flash_params>?, _ dout: UnsafePointer<attn_tensor>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ cuSeqlensQ: UnsafePointer<attn_tensor>?, _ cuSeqlensK: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?,
    _ dq: UnsafePointer<attn_tensor>?, _ dk: UnsafePointer<attn_tensor>?, _ dv: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_varlen_backward") {
        let o = try FlashBackwardOperands(params, dout, q, k, v, alibiSlopes, out, softmaxLse, dq, dk, dv)
        let cuQ = try boundaries("cu_seqlens_q", cuSeqlensQ)
        let cuK = try boundaries("cu_seqlens_k", cuSeqlensK)
        func run<E: AttnStorage>(_: E.Type) throws {
            let g = o.gradients
            try o.attention.varlenBackward(dOut: g.dOut.view(E.self), q: o.query.view(E.self), k: o.key.view(E.self),
                                           v: o.value.view(E.self), out: o.output.view(E.self), lse: o.lse.view(Float.self),
                                           boundariesQ: cuQ, boundariesK: cuK, maxSeqlenQ: Int(o.params.max_seqlen_q),
                                           maxSeqlenK: Int(o.params.max_seqlen_k), alibiSlopes: o.slopes?.view(Float.self),
                                           dQ: g.dQ.mutableView(E.self), dK: g.dK.mutableView(E.self),
                                           dV: g.dV.mutableView(E.self))
        }
        try withStorage(o.query.dtype) { try run($0) }
    }
}
