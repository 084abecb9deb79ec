import AttnKit
import CAttnKitABI

/// The eager kernel params describe (mask_mode: none or top-left causal).
private func eagerKernel(_ params: UnsafePointer<attn_eager_params>?) throws -> EagerAttention {
    let options = try readParams("params", params)
    guard options.mask_mode == ATTN_MASK_NONE || options.mask_mode == ATTN_MASK_CAUSAL_TOP_LEFT else {
        throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT,
                       message: "params->mask_mode must be ATTN_MASK_NONE or ATTN_MASK_CAUSAL_TOP_LEFT, got \(options.mask_mode)")
    }
    return EagerAttention(numHeads: Int(options.num_heads), headDim: Int(options.head_dim),
                          causal: options.mask_mode == ATTN_MASK_CAUSAL_TOP_LEFT)
}

@_cdecl("attn_eager_forward")
public func attn_eager_forward(
    _ params: UnsafePointer<attn_eager_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ keyMask: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ weights: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_eager_forward") {
        let kernel = try eagerKernel(params)
        let (query, key, value, output) = try qkvo(q, k, v, out)
        let mask = try keyMask.map { try Descriptor("key_mask", $0, dtypes: [Int32(ATTN_DTYPE_BOOL), Int32(ATTN_DTYPE_U8)]) }
        let probabilities = try weights.map { try Descriptor("weights", $0, dtypes: attentionDtypes) }
        try probabilities?.requireDtype(query.dtype, sameAs: "q")

        func run<E: AttnStorage>(_: E.Type) throws {
            try kernel(q: query.view(E.self), k: key.view(E.self), v: value.view(E.self),
                       keyMask: mask?.view(UInt8.self), out: output.mutableView(E.self),
                       weights: probabilities?.mutableView(E.self))
        }
        try withStorage(query.dtype) { try run($0) }
    }
}

@_cdecl("attn_eager_backward")
public func attn_eager_backward(
    _ params: UnsafePointer<attn_eager_params>?,
    _ dout: UnsafePointer<attn_tensor>?, _ dweights: UnsafePointer<attn_tensor>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ keyMask: UnsafePointer<attn_tensor>?,
    _ dq: UnsafePointer<attn_tensor>?, _ dk: UnsafePointer<attn_tensor>?, _ dv: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_eager_backward") {
        let kernel = try eagerKernel(params)
        let (query, key, value) = try qkv(q, k, v)
        let mask = try keyMask.map { try Descriptor("key_mask", $0, dtypes: [Int32(ATTN_DTYPE_BOOL), Int32(ATTN_DTYPE_U8)]) }
        let dOut = try dout.map { try Descriptor("dout", $0, dtypes: attentionDtypes) }
        let dWeights = try dweights.map { try Descriptor("dweights", $0, dtypes: attentionDtypes) }
        let dQ = try Descriptor("dq", dq, dtypes: attentionDtypes)
        let dK = try Descriptor("dk", dk, dtypes: attentionDtypes)
        let dV = try Descriptor("dv", dv, dtypes: attentionDtypes)
        for operand in [dOut, dWeights, dQ, dK, dV].compactMap({ $0 }) {
            try operand.requireDtype(query.dtype, sameAs: "q")
        }
        func run<E: AttnStorage>(_: E.Type) throws {
            try kernel.backward(dOut: dOut?.view(E.self), dWeights: dWeights?.view(E.self),
                                q: query.view(E.self), k: key.view(E.self), v: value.view(E.self),
                                keyMask: mask?.view(UInt8.self),
                                dQ: dQ.mutableView(E.self), dK: dK.mutableView(E.self), dV: dV.mutableView(E.self))
        }
        try withStorage(query.dtype) { try run($0) }
    }
}
