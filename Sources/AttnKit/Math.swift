/// Vectorized e^x for 16 floats.
///
/// Range reduction x = n·ln2 + r with |r| <= ln2/2, then a degree-7 Taylor
/// polynomial for e^r (truncation error below 5e-9 relative, so the result is
/// within about 1 ulp of expf), scaled by 2^n through the exponent bits.
/// Special cases: e^(-inf) and anything below -87.33 give 0 (results in the
/// denormal range are flushed), anything above 88.72 gives +inf, NaN stays NaN.
@inlinable @inline(__always)
public func fastExp(_ x: SIMD16<Float>) -> SIMD16<Float> {
    // Only lane-wise arithmetic, comparisons and selects: the stdlib's SIMD
    // min/max/clamped/addingProduct are lane loops that do not vectorize everywhere.
    let log2e = SIMD16<Float>(repeating: 1.44269504088896341)
    let ln2Hi = SIMD16<Float>(repeating: 0.693359375)       // ln 2 split so n·ln2Hi is exact
    let ln2Lo = SIMD16<Float>(repeating: -2.12194440e-4)
    // Adding 1.5·2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    let roundingMagic = SIMD16<Float>(repeating: 12582912.0)
    let low = SIMD16<Float>(repeating: -87.33), high = SIMD16<Float>(repeating: 88.37)
    let overflow = SIMD16<Float>(repeating: 88.72), zero = SIMD16<Float>(), infinity = SIMD16<Float>(repeating: .infinity)
    var clamped = x
    clamped.replace(with: low, where: x .< low)
    clamped.replace(with: high, where: x .> high)
    let shifted = clamped * log2e + roundingMagic
    let n = shifted - roundingMagic
    let r = (clamped - n * ln2Hi) - n * ln2Lo
    var p = SIMD16<Float>(repeating: 1.0 / 5040.0)
    p = p * r + SIMD16(repeating: 1.0 / 720.0)
    p = p * r + SIMD16(repeating: 1.0 / 120.0)
    p = p * r + SIMD16(repeating: 1.0 / 24.0)
    p = p * r + SIMD16(repeating: 1.0 / 6.0)
    p = p * r + SIMD16(repeating: 0.5)
    p = p * r + SIMD16(repeating: 1.0)
    p = p * r + SIMD16(repeating: 1.0)
    let integer = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- unsafeBitCast(roundingMagic, to: SIMD16<Int32>.self)
    let twoToN = unsafeBitCast((integer &+ 127) &<< 23, to: SIMD16<Float>.self)
    var result = p * twoToN
    result.replace(with: zero, where: x .< low)
    result.replace(with: infinity, where: x .> overflow)
    result.replace(with: x, where: x .!= x)
    return result
}

/// Lane-wise maximum that keeps `a` where `b` is NaN (NaN scores propagate
/// through exp instead).
@inlinable @inline(__always)
func lanewiseMax(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
    var result = a
    result.replace(with: b, where: b .> a)
    return result
}

/// Loads `count` (< 16) floats and fills the other lanes with `fill`.
@inlinable @inline(__always)
func loadPartial(_ pointer: UnsafePointer<Float>, count: Int, fill: Float) -> SIMD16<Float> {
    var vector = SIMD16<Float>(repeating: fill)
    for lane in 0..<count { vector[lane] = pointer[lane] }
    return vector
}

@inlinable @inline(__always)
func storePartial(_ vector: SIMD16<Float>, _ pointer: UnsafeMutablePointer<Float>, count: Int) {
    for lane in 0..<count { pointer[lane] = vector[lane] }
}

@inlinable @inline(__always)
func load16(_ pointer: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD16<Float>.self)
}

@inlinable @inline(__always)
func store16(_ vector: SIMD16<Float>, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: SIMD16<Float>.self)
}
