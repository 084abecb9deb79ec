/// ISA-neutral SIMD helpers, inlined into (and compiled for) each caller.
/// Lane-wise maximum that keeps `a` where `b` is NaN (NaN scores propagate
/// through exp instead).
@_transparent
public func lanewiseMax(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
    var result = a
    result.replace(with: b, where: b .> a)
    return result
}

/// Loads `count` (< 16) floats and fills the other lanes with `fill`.
@inlinable @inline(__always)
public func loadPartial(_ pointer: UnsafePointer<Float>, count: Int, fill: Float) -> SIMD16<Float> {
    var vector = SIMD16<Float>(repeating: fill)
    for lane in 0..<count { vector[lane] = pointer[lane] }
    return vector
}

@inlinable @inline(__always)
public func storePartial(_ vector: SIMD16<Float>, _ pointer: UnsafeMutablePointer<Float>, count: Int) {
    for lane in 0..<count { pointer[lane] = vector[lane] }
}

@_transparent
public func load16(_ pointer: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD16<Float>.self)
}

@_transparent
public func store16(_ vector: SIMD16<Float>, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: SIMD16<Float>.self)
}
