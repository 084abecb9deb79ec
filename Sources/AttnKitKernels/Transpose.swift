// Compiled once per ISA like the rest of the kernels; the portable build has
// no vpermt2ps and keeps its scalar loops instead.
#if ATTNKIT_AVX512
import AttnKitCore
import _Builtin_intrinsics.intel

/// In-register 16×16 transposes, for moving query rows into the engine's
/// transposed blocks (and the output back) without scattered stores.
enum Transpose16 {
    /// Transposes the 16 vectors at `rows` in place: rows[i][c] becomes rows[c][i].
    ///
    /// Four rounds, for block sizes b = 8, 4, 2, 1. Within every 2b×2b diagonal
    /// block, a round swaps the two off-diagonal b×b blocks: row i (bit b clear)
    /// and row i+b exchange the halves that the transpose moves between them.
    /// After all four rounds every element has crossed the diagonal once. Each
    /// exchange is one vpermt2ps per row, whose index picks lane c of row i
    /// (index c) or of row i+b (index 16+c).
    @inline(__always)
    static func inPlace(_ rows: UnsafeMutablePointer<SIMD16<Float>>) {
        round(rows, size: 8,
              low: SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
              high: SIMD16<Int32>(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
        round(rows, size: 4,
              low: SIMD16<Int32>(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27),
              high: SIMD16<Int32>(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31))
        round(rows, size: 2,
              low: SIMD16<Int32>(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29),
              high: SIMD16<Int32>(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31))
        round(rows, size: 1,
              low: SIMD16<Int32>(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30),
              high: SIMD16<Int32>(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31))
    }

    /// One round: for every row i with bit `size` clear, row i keeps its lanes
    /// with that bit clear and takes row i+size's lanes c−size for the others
    /// (`low`); row i+size mirrors it (`high`).
    @inline(__always)
    static func round(_ rows: UnsafeMutablePointer<SIMD16<Float>>, size: Int, low: SIMD16<Int32>, high: SIMD16<Int32>) {
        let lowIndex = unsafeBitCast(low, to: SIMD8<Int64>.self), highIndex = unsafeBitCast(high, to: SIMD8<Int64>.self)
        for i in 0..<16 where i & size == 0 {
            let a = rows[i], b = rows[i + size]
            rows[i] = _mm512_permutex2var_ps(a, lowIndex, b)
            rows[i + size] = _mm512_permutex2var_ps(a, highIndex, b)
        }
    }
}
#endif
