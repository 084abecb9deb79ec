/// Vectorized e^x for 16 floats.
///
/// Range reduction x = n·ln2 + r with |r| <= ln2/2, then a degree-7 Taylor
/// polynomial for e^r (truncation error below 5e-9 relative, so the result is
/// within about 1 ulp of expf), scaled by 2^n through the exponent bits.
/// Special cases: e^(-inf) and anything below -87.33 give 0 (results in the
/// denormal range are flushed), anything above 88.72 gives +inf, NaN stays NaN.
@inlinable @inline(__always)
public func fastExp(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let log2e: Float = 1.44269504088896341
    let ln2Hi: Float = 0.693359375       // ln 2 split so n·ln2Hi is exact
    let ln2Lo: Float = -2.12194440e-4
    // Adding 1.5·2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    let roundingMagic: Float = 12582912.0
    let clamped = x.clamped(lowerBound: SIMD16(repeating: -87.33), upperBound: SIMD16(repeating: 88.37))
    let shifted = clamped * SIMD16(repeating: log2e) + SIMD16(repeating: roundingMagic)
    let n = shifted - SIMD16(repeating: roundingMagic)
    var r = clamped.addingProduct(n, SIMD16(repeating: -ln2Hi))
    r = r.addingProduct(n, SIMD16(repeating: -ln2Lo))
    var p = SIMD16<Float>(repeating: 1.0 / 5040.0)
    p = SIMD16(repeating: 1.0 / 720.0).addingProduct(p, r)
    p = SIMD16(repeating: 1.0 / 120.0).addingProduct(p, r)
    p = SIMD16(repeating: 1.0 / 24.0).addingProduct(p, r)
    p = SIMD16(repeating: 1.0 / 6.0).addingProduct(p, r)
    p = SIMD16(repeating: 0.5).addingProduct(p, r)
    p = SIMD16(repeating: 1.0).addingProduct(p, r)
    p = SIMD16(repeating: 1.0).addingProduct(p, r)
    let integer = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- unsafeBitCast(SIMD16<Float>(repeating: roundingMagic), to: SIMD16<Int32>.self)
    let twoToN = unsafeBitCast((integer &+ 127) &<< 23, to: SIMD16<Float>.self)
    var result = p * twoToN
    result.replace(with: 0, where: x .< -87.33)
    result.replace(with: .infinity, where: x .> 88.72)
    result.replace(with: x, where: x .!= x)
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
