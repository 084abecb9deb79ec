import CAttnKitABI

// The fixed-length flash forward and backward on a block of a longer sequence
// (ring attention): `diagonal` is q's first position minus k's first position,
// and replaces Sk − Sq in every mask and ALiBi rule.

@_cdecl("attn_flash_block_forward")
public func attn_flash_block_forward(
    _ params: UnsafePointer<attn_flash_params>?, _ diagonal: Int64,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_block_forward") {
        try flashBatched(params, q, k, v, alibiSlopes, out, softmaxLse, sDmask: nil, diagonal: Int(clamping: diagonal))
    }
}

@_cdecl("attn_flash_block_backward")
public func attn_flash_block_backward(
    _ params: UnsafePointer<attn_flash_params>?, _ diagonal: Int64, _ dout: UnsafePointer<attn_tensor>?,
    _ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
    _ alibiSlopes: UnsafePointer<attn_tensor>?, _ out: UnsafePointer<attn_tensor>?, _ softmaxLse: UnsafePointer<attn_tensor>?,
    _ dq: UnsafePointer<attn_tensor>?, _ dk: UnsafePointer<attn_tensor>?, _ dv: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_flash_block_backward") {
        try flashBatchedBackward(params, dout, q, k, v, alibiSlopes, out, softmaxLse, dq, dk, dv, diagonal: Int(clamping: diagonal))
    }
}
