// Compiled once per ISA tier (see Package.swift). The AVX-512 tiles reduce
// with in-register 16×16 transposes; the other tiers' tiles are in
// RowwiseTile8.swift.
import AttnKitCore
#if ATTNKIT_AVX512
import _Builtin_intrinsics.intel
#endif

/// The engine for blocks of very few query rows (decoding: one new token
/// against a long KV cache). The transposed 16-row chunks would broadcast
/// every K and V element for one useful lane; here each row reads K and V
/// rows as vectors along the head dim instead:
///   - Q is kept row-major, [rows][paddedDim], in the block's Qᵀ scratch;
///   - scores of 16 keys are 16 vector dot products, reduced together by one
///     16×16 transpose and 15 adds, and land in Sᵀ[key][row] as usual, so
///     masks and the online softmax run unchanged on chunk 0;
///   - O is kept row-major, [rows][valueDim], in the block's Oᵀ scratch.
extension FlashEngine {
    /// Blocks with at most this many rows go row-wise.
    static let rowwiseMaxRows = 4

    @inline(__always)
    static func usesRowwise<E>(_ unit: AttentionUnit<E>, rows: Int, options: AttentionOptions) -> Bool {
        rows <= rowwiseMaxRows && unit.int8Keys == nil && unit.int8QuerySource == nil && !usesBF16Dots(unit)
            && !options.halfPrecisionValues
    }

    /// queryRows[row][d] = scale·q[rowStart+row][d], zero for d in dim..<paddedDim.
    static func packQueryRows<E: AttnStorage>(_ unit: AttentionUnit<E>, rowStart: Int, rows: Int, dim: Int,
                                              paddedDim: Int, scale: Float, into queryRows: UnsafeMutablePointer<Float>) {
        let scaleVector = SIMD16<Float>(repeating: scale)
        for row in 0..<rows {
            let source = unit.q.pointer(rowStart + row, 0)
            var d = 0
            while d < paddedDim {
                let width = Swift.min(16, dim - d)
                store16(loadRow16(source + d &* unit.q.colStride, colStride: unit.q.colStride, count: width) * scaleVector,
                        queryRows + row &* paddedDim + d)
                d += 16
            }
        }
    }

    #if ATTNKIT_AVX512
    /// `count` (1...16) floats from `pointer`, zero past them; never reads past them.
    @inline(__always)
    static func loadMasked(_ pointer: UnsafePointer<Float>, count: Int) -> SIMD16<Float> {
        if count >= 16 { return load16(pointer) }
        return _mm512_maskz_loadu_ps(UInt16(truncatingIfNeeded: (1 << count) - 1), pointer)
    }

    /// Sᵀ[key][row] = Σ_d queryRows[row][d]·K[key][d] for row < rows, over K rows
    /// `keyStride` apart.
    static func scoreTileRows(queryRows: UnsafePointer<Float>, rows: Int, dim: Int, paddedDim: Int,
                              keys: UnsafePointer<Float>, keyStride: Int, keyCount: Int,
                              into scores: UnsafeMutablePointer<Float>) {
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 16) { buffer in
            let sums = buffer.baseAddress!
            for row in 0..<rows {
                let q = queryRows + row &* paddedDim
                var key = 0
                while key < keyCount {
                    let group = Swift.min(16, keyCount - key)
                    // One vector accumulator per key; lanes are partial sums over d.
                    for k in 0..<16 { sums[k] = SIMD16<Float>() }
                    var d = 0
                    while d < dim {
                        let width = Swift.min(16, dim - d)
                        let qv = load16(q + d)   // zero past dim
                        for k in 0..<group {
                            sums[k] = multiplyAdd(qv, loadMasked(keys + (key + k) &* keyStride + d, count: width), sums[k])
                        }
                        d += 16
                    }
                    // Lane k of Σ_c transpose[c] is key k's full sum.
                    Transpose16.inPlace(sums)
                    var total = sums[0]
                    for c in 1..<16 { total += sums[c] }
                    for k in 0..<group { scores[(key + k) &* rowsPerTask &+ row] = total[k] }
                    key += 16
                }
            }
        }
    }

    /// outRows[row][e] = rescale[row]·outRows[row][e] + Σ_key Pᵀ[key][row]·V[key][e],
    /// 128 value dims (8 vectors) at a time.
    static func accumulateValuesRows(outRows: UnsafeMutablePointer<Float>, rows: Int, valueDim: Int,
                                     probabilities: UnsafePointer<Float>, values: UnsafePointer<Float>, keys: Int,
                                     rescale: UnsafePointer<Float>) {
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 8) { buffer in
            let sums = buffer.baseAddress!
            for row in 0..<rows {
                let o = outRows + row &* valueDim
                let scale = SIMD16<Float>(repeating: rescale[row])
                var e0 = 0
                while e0 < valueDim {
                    let vectors = Swift.min(8, (valueDim - e0 + 15) / 16)
                    for i in 0..<8 { sums[i] = SIMD16<Float>() }
                    for key in 0..<keys {
                        let p = SIMD16<Float>(repeating: probabilities[key &* rowsPerTask &+ row])
                        let v = values + key &* valueDim + e0
                        for i in 0..<vectors {
                            sums[i] = multiplyAdd(p, loadMasked(v + i &* 16, count: Swift.min(16, valueDim - e0 - i &* 16)), sums[i])
                        }
                    }
                    for i in 0..<vectors {
                        let width = Swift.min(16, valueDim - e0 - i &* 16)
                        let target = o + e0 + i &* 16
                        let joined = multiplyAdd(loadMasked(target, count: width), scale, sums[i])
                        if width == 16 {
                            store16(joined, target)
                        } else {
                            for lane in 0..<width { target[lane] = joined[lane] }
                        }
                    }
                    e0 += 128
                }
            }
        }
    }
    #endif
}
