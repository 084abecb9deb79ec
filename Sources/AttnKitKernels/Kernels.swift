// Compiled once per ISA (see Package.swift): this build's entry in AttnKit's
// kernel table. The other kernel folders link to this file.
import AttnKitCore

/// This build's kernels behind the KernelSet protocol (AttnKitCore).
package enum Kernels: KernelSet {
    package static var tierName: String {
        #if ATTNKIT_AVX512_BF16
        return "avx512_bf16"
        #elseif ATTNKIT_AVX512
        return "avx512"
        #elseif ATTNKIT_AVX2
        return "avx2"
        #else
        return "generic"
        #endif
    }

    package static func runFlash<E: AttnStorage>(units: [AttentionUnit<E>], options: AttentionOptions,
                                                 threads: Int) throws {
        try FlashEngine.run(units: units, options: options, threads: threads)
    }

    package static func runDecode<E: AttnStorage>(_ problem: DecodeProblem<E>, tasks: [DecodeTask],
                                                  partials: UnsafeMutablePointer<Float>, threads: Int) throws {
        try DecodeEngine.run(problem, tasks: tasks, partials: partials, threads: threads)
    }

    package static func runBackward<E: AttnStorage>(_ problem: BackwardProblem<E>, options: AttentionOptions,
                                                    threads: Int) throws {
        try BackwardEngine.run(problem, options: options, threads: threads)
    }

    package static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int, keyAllowed: UnsafePointer<UInt8>?) {
        RowSoftmax.run(row, count: count, keyAllowed: keyAllowed)
    }

    package static func centeredAbsMax<E: AttnStorage>(_ source: Strided2D<E>, rows: Range<Int>,
                                                       mean: UnsafePointer<Float>, count: Int) -> Float {
        Int8Quantizer.centeredAbsMax(source, rows: rows, mean: mean, count: count)
    }

    package static func quantizeRow<E: AttnStorage>(_ row: UnsafePointer<E>, colStride: Int, mean: UnsafePointer<Float>,
                                                    inverse: Float, count: Int,
                                                    into levels: UnsafeMutablePointer<Int8>) -> (sum: Int32, finite: Bool) {
        Int8Quantizer.quantizeRow(row, colStride: colStride, mean: mean, inverse: inverse, count: count, into: levels)
    }

    package static func addRows<E: AttnStorage>(_ source: Strided2D<E>, rows: Range<Int>, count: Int,
                                                into totals: UnsafeMutablePointer<Float>) {
        Int8Quantizer.addRows(source, rows: rows, count: count, into: totals)
    }

    package static func exp16(_ x: SIMD16<Float>) -> SIMD16<Float> { fastExp(x) }

    package static func softmaxExp16(_ x: SIMD16<Float>) -> SIMD16<Float> { softmaxExp(x) }

    package static func int8ScoreTile(queryU8: UnsafePointer<UInt8>, groups: Int, keys: UnsafePointer<Int8>,
                                      keySums: UnsafePointer<Int32>, keyCount: Int, into acc: UnsafeMutablePointer<Int32>,
                                      dequantize: Int8ScoreScales?) {
        FlashEngine.int8ScoreTile(queryU8: queryU8, groups: groups, keys: keys, keySums: keySums, keyCount: keyCount,
                                  into: acc, dequantize: dequantize)
    }

    package static func dequantizeScores(_ acc: UnsafePointer<Int32>, rowScales: UnsafePointer<Float>,
                                         keyScales: UnsafePointer<Float>, keyCount: Int,
                                         into scores: UnsafeMutablePointer<Float>) {
        FlashEngine.dequantizeScores(acc, rowScales: rowScales, keyScales: keyScales, keyCount: keyCount, into: scores)
    }
}
