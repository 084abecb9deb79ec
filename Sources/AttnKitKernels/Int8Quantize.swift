// Compiled once per ISA (see Package.swift); AttnKit dispatches at run time.
import AttnKitCore
#if ATTNKIT_AVX512 || ATTNKIT_AVX2
import _Builtin_intrinsics.intel
#endif

/// Row helpers for symmetric int8 quantization of K (per key) and Q (per query
/// block), 16 dims at a time. The scalar versions in the portable build do the
/// same arithmetic: round half to even, clamp to ±127.
public enum Int8Quantizer {
    /// max over rows and d of |row[d] − mean[d]|, over finite values only (a
    /// NaN or Inf key must not wipe out the scale of the other keys of its block).
    @_specialize(where E == Float)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    package static func centeredAbsMax<E: AttnStorage>(_ source: Strided2D<E>, rows: Range<Int>,
                                                       mean: UnsafePointer<Float>, count: Int) -> Float {
        var largest = SIMD16<Float>()
        @inline(__always) func include(_ x: SIMD16<Float>) {
            var magnitude = x
            magnitude.replace(with: SIMD16<Float>() - x, where: x .< SIMD16<Float>())
            // x − x is NaN exactly where x is NaN or ±Inf.
            let difference = x - x
            magnitude.replace(with: SIMD16<Float>(), where: difference .!= difference)
            largest = lanewiseMax(largest, magnitude)
        }
        if source.colStride == 1 && count & 15 == 0 {   // whole vectors: no per-vector width logic
            for j in rows {
                let row = source.pointer(j, 0)
                for d in stride(from: 0, to: count, by: 16) {
                    include(FlashEngine.loadRow16(row + d, colStride: 1, count: 16) - load16(mean + d))
                }
            }
        } else {
            for j in rows {
                let row = source.pointer(j, 0)
                var d = 0
                while d < count {
                    let width = Swift.min(16, count - d)
                    include(FlashEngine.loadRow16(row + d &* source.colStride, colStride: source.colStride, count: width)
                            - loadMean(mean + d, width))
                    d += 16
                }
            }
        }
        #if ATTNKIT_AVX512
        return _mm512_reduce_max_ps(largest)
        #else
        return laneMax(largest)
        #endif
    }

    /// levels[d] = round((row[d] − mean[d]) · inverse), half to even, clamped to
    /// ±127. Returns Σ levels and whether every value of the row was finite.
    @_specialize(where E == Float)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    public static func quantizeRow<E: AttnStorage>(_ row: UnsafePointer<E>, colStride: Int, mean: UnsafePointer<Float>,
                                                   inverse: Float, count: Int,
                                                   into levels: UnsafeMutablePointer<Int8>) -> (sum: Int32, finite: Bool) {
        #if ATTNKIT_AVX512 || ATTNKIT_AVX2
        var sum = SIMD16<Int32>()
        var bad = SIMDMask<SIMD16<Int32>>()
        let scale = SIMD16<Float>(repeating: inverse)
        @inline(__always) func levels16(_ x: SIMD16<Float>) -> SIMD16<Int8> {
            let difference = x - x
            bad .|= difference .!= difference
            let rounded = clampedLevels(x * scale)
            sum &+= rounded
            return SIMD16<Int8>(truncatingIfNeeded: rounded)   // within ±127: exact
        }
        var d = 0
        if colStride == 1 {   // whole vectors first, with no per-vector width logic
            while d + 16 <= count {
                let bytes = levels16(FlashEngine.loadRow16(row + d, colStride: 1, count: 16) - load16(mean + d))
                UnsafeMutableRawPointer(levels + d).storeBytes(of: bytes, as: SIMD16<Int8>.self)
                d += 16
            }
        }
        while d < count {
            let width = Swift.min(16, count - d)
            let bytes = levels16(FlashEngine.loadRow16(row + d &* colStride, colStride: colStride, count: width)
                                 - loadMean(mean + d, width))
            if width == 16 {
                UnsafeMutableRawPointer(levels + d).storeBytes(of: bytes, as: SIMD16<Int8>.self)
            } else {
                for lane in 0..<width { levels[d + lane] = bytes[lane] }
            }
            d += 16
        }
        return (sum.wrappedSum(), !any(bad))
        #else
        var sum: Int32 = 0
        var finite = true
        for d in 0..<count {
            let value = E.toFloat(row[d &* colStride]) - mean[d]
            finite = finite && value.isFinite
            let level = Int8(Swift.max(-127, Swift.min(127, (value * inverse).rounded(.toNearestOrEven))))
            levels[d] = level
            sum &+= Int32(level)
        }
        return (sum, finite)
        #endif
    }

    /// totals[d] += Σ over `rows` rows of row[d], in fp32 (a smoothing mean
    /// needs no more: any vector subtracted from every key leaves the softmax
    /// unchanged, as long as the LSE correction uses the same one).
    @_specialize(where E == Float)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    package static func addRows<E: AttnStorage>(_ source: Strided2D<E>, rows: Range<Int>, count: Int,
                                               into totals: UnsafeMutablePointer<Float>) {
        if source.colStride == 1 && count & 15 == 0 {
            // Row by row, so the keys stream in memory order (a column-wise walk
            // touches one cache line per key). From zero totals this adds the same
            // values in the same order as the loop below.
            for j in rows {
                let row = source.pointer(j, 0)
                for d in stride(from: 0, to: count, by: 16) {
                    store16(load16(totals + d) + FlashEngine.loadRow16(row + d, colStride: 1, count: 16), totals + d)
                }
            }
            return
        }
        var d = 0
        while d < count {
            let width = Swift.min(16, count - d)
            var sum = SIMD16<Float>()
            for j in rows {
                sum += FlashEngine.loadRow16(source.pointer(j, d), colStride: source.colStride, count: width)
            }
            for lane in 0..<width { totals[d + lane] += sum[lane] }
            d += 16
        }
    }

    #if ATTNKIT_AVX512 || ATTNKIT_AVX2
    /// x rounded half to even (vcvtps2dq in the default MXCSR mode) and clamped
    /// to ±127; NaN gives INT_MIN, clamped like any other value (the row's
    /// scale turns NaN).
    @inline(__always)
    static func clampedLevels(_ x: SIMD16<Float>) -> SIMD16<Int32> {
        #if ATTNKIT_AVX512
        let high = unsafeBitCast(SIMD16<Int32>(repeating: 127), to: SIMD8<Int64>.self)
        let low = unsafeBitCast(SIMD16<Int32>(repeating: -127), to: SIMD8<Int64>.self)
        return unsafeBitCast(_mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(x), low), high), to: SIMD16<Int32>.self)
        #else
        let high = unsafeBitCast(SIMD8<Int32>(repeating: 127), to: SIMD4<Int64>.self)
        let low = unsafeBitCast(SIMD8<Int32>(repeating: -127), to: SIMD4<Int64>.self)
        @inline(__always) func half(_ x: SIMD8<Float>) -> SIMD8<Int32> {
            unsafeBitCast(_mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(x), low), high), to: SIMD8<Int32>.self)
        }
        return SIMD16(lowHalf: half(x.lowHalf), highHalf: half(x.highHalf))
        #endif
    }
    #endif

    @inline(__always)
    static func loadMean(_ mean: UnsafePointer<Float>, _ width: Int) -> SIMD16<Float> {
        width == 16 ? load16(mean) : loadPartial(mean, count: width, fill: 0)
    }
}
