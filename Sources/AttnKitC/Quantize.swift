import AttnKit
import CAttnKitABI

@_cdecl("attn_quantize_per_tensor")
public func attn_quantize_per_tensor(
    _ x: UnsafePointer<attn_tensor>?, _ numBits: Int32, _ q: UnsafePointer<attn_tensor>?,
    _ scale: UnsafeMutablePointer<Double>?, _ zeroPoint: UnsafeMutablePointer<Double>?
) -> attn_status {
    withStatus("attn_quantize_per_tensor") {
        let input = try Descriptor("x", x, dtypes: attentionDtypes)
        let output = try Descriptor("q", q, dtypes: [Int32(ATTN_DTYPE_U8)])
        guard let scale else { throw ABIError(status: ATTN_ERR_NULL_POINTER, message: "scale must not be NULL") }
        guard let zeroPoint else { throw ABIError(status: ATTN_ERR_NULL_POINTER, message: "zero_point must not be NULL") }
        try withStorage(input.dtype) { storage in
            func run<E: AttnStorage>(_: E.Type) throws {
                let parameters = try PerTensorQuantization.quantize(input.view(E.self), bits: Int(numBits),
                                                                    into: output.mutableView(UInt8.self))
                scale.pointee = parameters.scale
                zeroPoint.pointee = parameters.zeroPoint
            }
            try run(storage)
        }
    }
}

@_cdecl("attn_dequantize_per_tensor")
public func attn_dequantize_per_tensor(
    _ q: UnsafePointer<attn_tensor>?, _ scale: Double, _ zeroPoint: Double, _ out: UnsafePointer<attn_tensor>?
) -> attn_status {
    withStatus("attn_dequantize_per_tensor") {
        let input = try Descriptor("q", q, dtypes: [Int32(ATTN_DTYPE_U8)])
        let output = try Descriptor("out", out, dtypes: attentionDtypes)
        try withStorage(output.dtype) { storage in
            func run<E: AttnStorage>(_: E.Type) throws {
                try PerTensorQuantization.dequantize(input.view(UInt8.self),
                                                     PerTensorQuantization.Parameters(scale: scale, zeroPoint: zeroPoint),
                                                     into: output.mutableView(E.self))
            }
            try run(storage)
        }
    }
}
