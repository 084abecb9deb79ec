// Compiled once per ISA tier (see Package.swift); the other kernel folders
// link to this file.
import AttnKitCore
#if ATTNKIT_AVX512
import _Builtin_intrinsics.intel
#endif

/// a·b + c, fused where the build targets a CPU with FMA (the AVX2 and AVX-512
/// builds); the portable build keeps a separate multiply and add, because
/// SIMD's addingProduct is a lane loop of fmaf calls without FMA hardware.
@_transparent
public func multiplyAdd(_ a: SIMD16<Float>, _ b: SIMD16<Float>, _ c: SIMD16<Float>) -> SIMD16<Float> {
    #if ATTNKIT_FMA
    return c.addingProduct(a, b)
    #else
    return a * b + c
    #endif
}

/// Vectorized e^x for 16 floats.
///
/// Range reduction x = n·ln2 + r with |r| <= ln2/2 (ln2 split in two so n·ln2Hi
/// is exact), then Cephes' degree-5 minimax polynomial for (e^r − 1 − r)/r², which
/// keeps the result within about 1 ulp of expf, scaled by 2^n through the
/// exponent bits. Special cases: e^(−inf) and anything below −87.33 give 0
/// (results in the denormal range are flushed), anything above 88.72 gives
/// +inf, NaN stays NaN. Only lane-wise arithmetic, compares and selects: the
/// stdlib's SIMD min/max/clamped are lane loops that do not vectorize.
@_transparent   // always inlined: as a call, SIMD16 crosses the ABI in four xmm halves
public func fastExp(_ x: SIMD16<Float>) -> SIMD16<Float> {
    #if ATTNKIT_AVX512
    return fastExpAVX512(x)
    #else
    return fastExpPortable(x)
    #endif
}

#if ATTNKIT_AVX512
/// e^x for 16 floats with AVX-512's vscalefps, about half the instructions of
/// the portable version.
///
/// x is clamped to [−104, 100] with vmaxps/vminps (their operand order keeps a
/// NaN x), reduced as x = n·ln2 + r with |r| <= ln2/2 (Cody–Waite, ln2 in two
/// parts), e^r comes from a degree-6 polynomial (a minimax fit made for this
/// file: 3e-9 relative on that interval, about 1.4 ulp once evaluated in
/// fp32), and vscalefps multiplies by 2^n, which also gives +inf past 88.72.
/// Results below e^−87.33 (denormals, slow on some cores) are flushed to 0, as
/// the portable version does, so a masked key's exp(−inf − m) is exactly 0.
@_transparent
public func fastExpAVX512(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let clamped = _mm512_min_ps(SIMD16(repeating: 100), _mm512_max_ps(SIMD16(repeating: -104), x))
    return reducedExp(clamped, flushWhere: x)
}

/// e^x by the reduction above for x where it is well defined (|x| <= 104 or
/// NaN), written as 0 where `original` is below −87.33 (the masked vscalefps).
@_transparent
public func reducedExp(_ x: SIMD16<Float>, flushWhere original: SIMD16<Float>) -> SIMD16<Float> {
    let log2e = SIMD16<Float>(repeating: 1.44269504088896341)
    let minusLn2Hi = SIMD16<Float>(repeating: -0.693359375)
    let minusLn2Lo = SIMD16<Float>(repeating: 2.12194440e-4)
    let roundingMagic = SIMD16<Float>(repeating: 12582912.0)
    let n = multiplyAdd(x, log2e, roundingMagic) - roundingMagic
    let r = multiplyAdd(n, minusLn2Lo, multiplyAdd(n, minusLn2Hi, x))
    var p = SIMD16<Float>(repeating: 1.3814613e-3)
    p = multiplyAdd(p, r, SIMD16(repeating: 8.36871e-3))
    p = multiplyAdd(p, r, SIMD16(repeating: 4.166839e-2))
    p = multiplyAdd(p, r, SIMD16(repeating: 0.16666521))
    p = multiplyAdd(p, r, SIMD16(repeating: 0.49999994))
    p = multiplyAdd(p, r, SIMD16(repeating: 1))
    p = multiplyAdd(p, r, SIMD16(repeating: 1))
    var result = _mm512_scalef_ps(p, n)
    result.replace(with: SIMD16<Float>(), where: original .< SIMD16<Float>(repeating: -87.33))
    return result
}
#endif

/// e^x for x <= 0 or NaN, as the online softmax produces (x = s − m with m the
/// running maximum): fastExp without the clamps. Where x is below −87.33
/// (−inf included) the masked vscalefps writes 0 whatever the reduction gave;
/// NaN stays NaN.
@_transparent
public func softmaxExp(_ x: SIMD16<Float>) -> SIMD16<Float> {
    #if ATTNKIT_AVX512
    // Without clamps: huge negative x (−inf included) may give anything before
    // the flush, and the flush writes 0 there.
    return reducedExp(x, flushWhere: x)
    #else
    return softmaxExpPortable(x)
    #endif
}

/// fastExpPortable for x <= 0 or NaN, without its clamps and overflow
/// select: where x is below −87.33 (−inf and −greatestFiniteMagnitude
/// included, whose reduction overflows to NaN) the last select writes 0; NaN
/// stays NaN through the arithmetic. Equal to fastExpPortable on [−87.33, 0].
@_transparent
public func softmaxExpPortable(_ x: SIMD16<Float>) -> SIMD16<Float> {
    var result = portableReducedExp(x)
    result.replace(with: SIMD16<Float>(), where: x .< SIMD16<Float>(repeating: -87.33))
    return result
}

/// The portable e^x (every build; the only one without AVX-512).
@_transparent
public func fastExpPortable(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let low = SIMD16<Float>(repeating: -87.33), high = SIMD16<Float>(repeating: 88.37)
    let overflow = SIMD16<Float>(repeating: 88.72), infinity = SIMD16<Float>(repeating: .infinity)
    var clamped = x
    clamped.replace(with: low, where: x .< low)
    clamped.replace(with: high, where: x .> high)
    var result = portableReducedExp(clamped)
    result.replace(with: SIMD16<Float>(), where: x .< low)
    result.replace(with: infinity, where: x .> overflow)
    result.replace(with: x, where: x .!= x)
    return result
}

/// e^x as p(r)·2^n, x = n·ln2 + r (Cody–Waite, ln2 in two parts), p Cephes'
/// degree-5 minimax polynomial for (e^r − 1 − r)/r², 2^n through the
/// exponent bits; exact enough for |x| <= 88.37, callers select the rest.
@_transparent
public func portableReducedExp(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let log2e = SIMD16<Float>(repeating: 1.44269504088896341)
    let minusLn2Hi = SIMD16<Float>(repeating: -0.693359375)
    let minusLn2Lo = SIMD16<Float>(repeating: 2.12194440e-4)
    // Adding 1.5·2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    let roundingMagic = SIMD16<Float>(repeating: 12582912.0)
    let shifted = multiplyAdd(x, log2e, roundingMagic)
    let n = shifted - roundingMagic
    let r = multiplyAdd(n, minusLn2Lo, multiplyAdd(n, minusLn2Hi, x))
    var p = SIMD16<Float>(repeating: 1.9875691500e-4)
    p = multiplyAdd(p, r, SIMD16(repeating: 1.3981999507e-3))
    p = multiplyAdd(p, r, SIMD16(repeating: 8.3334519073e-3))
    p = multiplyAdd(p, r, SIMD16(repeating: 4.1665795894e-2))
    p = multiplyAdd(p, r, SIMD16(repeating: 1.6666665459e-1))
    p = multiplyAdd(p, r, SIMD16(repeating: 5.0000001201e-1))
    p = multiplyAdd(p, r * r, r + SIMD16<Float>(repeating: 1))
    let integer = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- unsafeBitCast(roundingMagic, to: SIMD16<Int32>.self)
    return p * unsafeBitCast((integer &+ 127) &<< 23, to: SIMD16<Float>.self)
}

/// tanh(x) = sign(x)·(1 − 2/(e^{2|x|} + 1)), vectorized; for |x| < 1/8, where
/// that difference cancels (a relative error of 6e-6 at x = 0.01, and 0 for
/// tiny x), the series x − x³/3 + 2x⁵/15 − 17x⁷/315 (its first omitted term
/// is below 2e-9 relative there). So softcap·tanh(s/softcap) tends to s as
/// the softcap grows, as it should.
@_transparent
public func fastTanh(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let zero = SIMD16<Float>(), one = SIMD16<Float>(repeating: 1), two = SIMD16<Float>(repeating: 2)
    var magnitude = x
    magnitude.replace(with: zero - x, where: x .< zero)
    let e = fastExp(two * magnitude)
    var result = one - two / (e + one)
    result.replace(with: zero - result, where: x .< zero)
    let square = x * x
    var series = multiplyAdd(square, SIMD16(repeating: -17.0 / 315.0), SIMD16(repeating: 2.0 / 15.0))
    series = multiplyAdd(series, square, SIMD16(repeating: -1.0 / 3.0))
    series = multiplyAdd(series * square, x, x)
    result.replace(with: series, where: magnitude .< SIMD16<Float>(repeating: 0.125))
    result.replace(with: x, where: x .!= x)
    return result
}

// Reductions compiled in this tier. The standard library's SIMD reductions
// (sum(), max()) are generic: every tier emits a specialization of them under
// the same shared symbol, and a plain `swift build` links one copy for all
// tiers (the CMake build keeps each tier's own; cmake/LocalizeKernelTier.cmake),
// so an AVX2 CPU could run an AVX-512 copy. These are ordinary functions of the
// tier, with the same arithmetic: lanes in order.

/// Σ of the lanes in lane order, as SIMD16.sum().
@inline(__always)
func laneSum(_ v: SIMD16<Float>) -> Float {
    var total: Float = 0
    for lane in 0..<16 { total += v[lane] }
    return total
}

/// Σ of the lanes in lane order, as SIMD8.sum().
@inline(__always)
func laneSum(_ v: SIMD8<Float>) -> Float {
    var total: Float = 0
    for lane in 0..<8 { total += v[lane] }
    return total
}

/// The largest lane (NaN lanes are the callers' to detect; they check separately).
@inline(__always)
func laneMax(_ v: SIMD16<Float>) -> Float {
    var largest = v[0]
    for lane in 1..<16 where v[lane] > largest { largest = v[lane] }
    return largest
}
