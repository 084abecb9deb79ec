import AttnKit
import CAttnKitABI

// The attention guide's variants: sparse top-k, AFT and Linformer (docs/semantics.md §9).

@_cdecl("attn_sparse_topk_forward")
public func attn_sparse_topk_forward(
    _ params: UnsafePointer<attn_sparse_topk_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ keyMask: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_sparse_topk_forward") {
        let options = try readParams("params", params)
        guard options.mask_mode == ATTN_MASK_NONE || options.mask_mode == ATTN_MASK_CAUSAL_TOP_LEFT else {
            throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT,
                           message: "params->mask_mode must be ATTN_MASK_NONE or ATTN_MASK_CAUSAL_TOP_LEFT, got \(options.mask_mode)")
        }
        try requireFlag("params->has_scale", options.has_scale)
        try requireReserved("params->reserved", options.reserved)
        let kernel = SparseTopKAttention(topK: Int(options.top_k), causal: options.mask_mode == ATTN_MASK_CAUSAL_TOP_LEFT,
                                         scale: options.has_scale != 0 ? options.softmax_scale : nil)
        let (query, key, value, output) = try qkvo(q, k, v, out)
        let mask = try keyMask.map { try Descriptor("key_mask", $0, dtypes: [Int32(ATTN_DTYPE_BOOL), Int32(ATTN_DTYPE_U8)]) }
        func run<E: AttnStorage>(_: E.Type) throws {
            try kernel(q: query.view(E.self), k: key.view(E.self), v: value.view(E.self),
                       keyMask: mask?.view(UInt8.self), out: output.mutableView(E.self))
        }
        try withStorage(query.dtype) { try run($0) }
    }
}

@_cdecl("attn_aft_forward")
public func attn_aft_forward(
    _ params: UnsafePointer<attn_aft_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ wBias: UnsafePointer<attn_tensor>?, _ wU: UnsafePointer<attn_tensor>?, _ wV: UnsafePointer<attn_tensor>?,
    _ out: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_aft_forward") {
        let options = try readParams("params", params)
        try requireFlag("params->causal", options.causal)
        let variant: AFTAttention.Variant
        switch Int(options.variant) {
        case ATTN_AFT_FULL: variant = .full
        case ATTN_AFT_SIMPLE: variant = .simple
        case ATTN_AFT_LOCAL:
            guard options.outside == ATTN_AFT_OUTSIDE_EXCLUDE || options.outside == ATTN_AFT_OUTSIDE_ZERO_BIAS else {
                throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT,
                               message: "params->outside must be ATTN_AFT_OUTSIDE_EXCLUDE or ATTN_AFT_OUTSIDE_ZERO_BIAS, got \(options.outside)")
            }
            variant = .local(context: Int(options.local_context), zeroBiasOutside: options.outside == ATTN_AFT_OUTSIDE_ZERO_BIAS)
        default:
            throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT,
                           message: "params->variant must be ATTN_AFT_FULL, ATTN_AFT_LOCAL or ATTN_AFT_SIMPLE, got \(options.variant)")
        }
        if case .local = variant {} else {
            try requireReserved("params->outside (only ATTN_AFT_LOCAL reads it)", options.outside)
            guard options.local_context == 0 else {
                throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT,
                               message: "params->local_context must be 0 unless variant is ATTN_AFT_LOCAL, got \(options.local_context)")
            }
        }
        let (query, key, value, output) = try qkvo(q, k, v, out)
        let dense = try wBias.map { try Descriptor("w_bias", $0, dtypes: attentionDtypes) }
        let u = try wU.map { try Descriptor("w_u", $0, dtypes: attentionDtypes) }
        let w = try wV.map { try Descriptor("w_v", $0, dtypes: attentionDtypes) }
        for operand in [dense, u, w].compactMap({ $0 }) { try operand.requireDtype(query.dtype, sameAs: "q") }
        guard (u == nil) == (w == nil) else {
            throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT, message: "w_u and w_v must be given together, or neither")
        }
        guard dense == nil || u == nil else {
            throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT, message: "w_bias and (w_u, w_v) are alternatives: give one")
        }
        let kernel = AFTAttention(variant: variant, causal: options.causal != 0)
        func run<E: AttnStorage>(_: E.Type) throws {
            let bias: AFTAttention.PositionBias<E>
            if let dense { bias = .dense(dense.view(E.self)) } else if let u, let w {
                bias = .lowRank(u: u.view(E.self), w: w.view(E.self))
            } else { bias = .none }
            try kernel(q: query.view(E.self), k: key.view(E.self), v: value.view(E.self), bias: bias,
                       out: output.mutableView(E.self))
        }
        try withStorage(query.dtype) { try run($0) }
    }
}

@_cdecl("attn_linformer_forward")
public func attn_linformer_forward(
    _ params: UnsafePointer<attn_linformer_params>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ projE: UnsafePointer<attn_tensor>?, _ biasE: UnsafePointer<attn_tensor>?,
    _ projF: UnsafePointer<attn_tensor>?, _ biasF: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_linformer_forward") {
        let options = try readParams("params", params)
        try requireFlag("params->has_scale", options.has_scale)
        let kernel = LinformerAttention(scale: options.has_scale != 0 ? options.softmax_scale : nil)
        let (query, key, value, output) = try qkvo(q, k, v, out)
        let e = try Descriptor("proj_e", projE, dtypes: attentionDtypes)
        let f = try Descriptor("proj_f", projF, dtypes: attentionDtypes)
        let be = try biasE.map { try Descriptor("bias_e", $0, dtypes: attentionDtypes) }
        let bf = try biasF.map { try Descriptor("bias_f", $0, dtypes: attentionDtypes) }
        for operand in [e, f, be, bf].compactMap({ $0 }) { try operand.requireDtype(query.dtype, sameAs: "q") }
        func run<E: AttnStorage>(_: E.Type) throws {
            try kernel(q: query.view(E.self), k: key.view(E.self), v: value.view(E.self),
                       projE: e.view(E.self), biasE: be?.view(E.self), projF: f.view(E.self), biasF: bf?.view(E.self),
                       out: output.mutableView(E.self))
        }
        try withStorage(query.dtype) { try run($0) }
    }
}

/// A field that must be 0 (reserved, or not read by the chosen variant).
func requireReserved(_ name: String, _ value: Int32) throws {
    guard value == 0 else {
        throw ABIError(status: ATTN_ERR_INVALID_ARGUMENT, message: "\(name) must be 0, got \(value)")
    }
}
