/// Everything the Swift API calls in a kernel build. Each build (one module
/// per ISA, all compiled from the sources in Sources/AttnKitKernels) has one
/// type, `Kernels`, conforming to this; AttnKit picks one of them once, at
/// first use, and calls through it. Adding a kernel function means adding it
/// here and to Sources/AttnKitKernels/Kernels.swift; adding a tier means one
/// more module and one row in KernelDispatch's table.
package protocol KernelSet {
    /// The name `ATTNKIT_ISA` and `attnkit.isa()` use for this build.
    static var tierName: String { get }

    /// The tiled online-softmax engine (SDPA, flash, varlen, int8).
    static func runFlash<E: AttnStorage>(units: [AttentionUnit<E>], options: AttentionOptions, threads: Int) throws

    /// The decode engine: each task's partial online-softmax state into `partials`
    /// (DecodeTask says where), the splits of a (sequence, KV head) left for the caller to merge.
    static func runDecode<E: AttnStorage>(_ problem: DecodeProblem<E>, tasks: [DecodeTask],
                                          partials: UnsafeMutablePointer<Float>, threads: Int) throws

    /// The attention backward (FlashAttention-2's, deterministic): dQ, dK, dV of every unit.
    static func runBackward<E: AttnStorage>(_ problem: BackwardProblem<E>, options: AttentionOptions, threads: Int) throws

    /// The eager kernel's in-place softmax of one row of scores.
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int, keyAllowed: UnsafePointer<UInt8>?)

    /// max over rows and d < count of |row[d] − mean[d]| over finite values.
    static func centeredAbsMax<E: AttnStorage>(_ source: Strided2D<E>, rows: Range<Int>, mean: UnsafePointer<Float>,
                                               count: Int) -> Float

    /// levels[d] = round((row[d] − mean[d])·inverse) to even, clamped to ±127; Σ levels and finiteness.
    static func quantizeRow<E: AttnStorage>(_ row: UnsafePointer<E>, colStride: Int, mean: UnsafePointer<Float>,
                                            inverse: Float, count: Int,
                                            into levels: UnsafeMutablePointer<Int8>) -> (sum: Int32, finite: Bool)

    /// totals[d] += Σ over rows of row[d], in fp32.
    static func addRows<E: AttnStorage>(_ source: Strided2D<E>, rows: Range<Int>, count: Int,
                                        into totals: UnsafeMutablePointer<Float>)

    // Kernel pieces the tests check against plain twins, per tier.

    /// x[i] = e^x[i] for i < count, with fastExp (about 1.4 ulp; below e^−87.33 flushed to 0).
    static func expInPlace(_ x: UnsafeMutablePointer<Float>, count: Int)
    /// Writes the j < count with !(row[j] <= threshold) (a larger score, or NaN) to positions, in
    /// order, and returns how many there are (positions holds count entries).
    static func collectAbove(_ row: UnsafePointer<Float>, count: Int, threshold: Float,
                             into positions: UnsafeMutablePointer<Int32>) -> Int

    /// The vectorized e^x of this build (fastExp).
    static func exp16(_ x: SIMD16<Float>) -> SIMD16<Float>
    /// The online softmax's e^x for x <= 0 or NaN (softmaxExp).
    static func softmaxExp16(_ x: SIMD16<Float>) -> SIMD16<Float>
    /// The query layout int8ScoreTile reads: for dim group g (4 dims) and row r,
    /// the 4 bytes at [(g·64 + r)·4 ..< +4] hold q8[r][4g ..< 4g+4] + 128 as UInt8.
    /// The int8 score tile: acc[key][row] = Σ_d q8[row][d]·k8[key][d] exactly, or,
    /// with `dequantize`, fp32 scores acc·rowScales[row]·keyScales[key] instead.
    static func int8ScoreTile(queryU8: UnsafePointer<UInt8>, groups: Int, keys: UnsafePointer<Int8>,
                              keySums: UnsafePointer<Int32>, keyCount: Int, into acc: UnsafeMutablePointer<Int32>,
                              dequantize: Int8ScoreScales?)
    /// scores[key][row] = acc[key][row]·rowScales[row]·keyScales[key] for 64 rows.
    static func dequantizeScores(_ acc: UnsafePointer<Int32>, rowScales: UnsafePointer<Float>,
                                 keyScales: UnsafePointer<Float>, keyCount: Int, into scores: UnsafeMutablePointer<Float>)
}

/// Where and how the int8 score tile writes fp32 scores: scores[key][row] =
/// acc · rowScales[row] · keyScales[key].
package struct Int8ScoreScales {
    package let rowScales: UnsafePointer<Float>
    package let keyScales: UnsafePointer<Float>
    package let scores: UnsafeMutablePointer<Float>

    package init(rowScales: UnsafePointer<Float>, keyScales: UnsafePointer<Float>, scores: UnsafeMutablePointer<Float>) {
        self.rowScales = rowScales; self.keyScales = keyScales; self.scores = scores
    }
}
