import XCTest
import Foundation
import AttnKit
import AttnKitCore
#if ATTNKIT_X86
import _AttnKitShims
#endif

/// The int8 QKᵀ tile (vpdpbusd on AVX-512 VNNI, vpmaddwd on AVX2, lane loops
/// in the portable build) against a plain scalar twin: int32 results must be
/// exactly equal. Kernel-level tests run once per tier (skipped where the CPU
/// lacks it).
final class Int8Tests: XCTestCase {
    func testTileMatchesScalarTwinExactlyGeneric() throws { checkTile(try tierKernels(.generic)) }
    func testTileMatchesScalarTwinExactlyAVX2() throws { checkTile(try tierKernels(.avx2)) }
    func testTileMatchesScalarTwinExactlyAVX512() throws { checkTile(try tierKernels(.avx512)) }
    func testTileMatchesScalarTwinExactlyAVX512BF16() throws { checkTile(try tierKernels(.avx512bf16)) }
    func testFusedDequantizationMatchesTwoStepsGeneric() throws { checkFusedDequantization(try tierKernels(.generic)) }
    func testFusedDequantizationMatchesTwoStepsAVX2() throws { checkFusedDequantization(try tierKernels(.avx2)) }
    func testFusedDequantizationMatchesTwoStepsAVX512() throws { checkFusedDequantization(try tierKernels(.avx512)) }
    func testFusedDequantizationMatchesTwoStepsAVX512BF16() throws { checkFusedDequantization(try tierKernels(.avx512bf16)) }
    func testRowQuantizerMatchesScalarTwinGeneric() throws { checkRowQuantizer(try tierKernels(.generic)) }
    func testRowQuantizerMatchesScalarTwinAVX2() throws { checkRowQuantizer(try tierKernels(.avx2)) }
    func testRowQuantizerMatchesScalarTwinAVX512() throws { checkRowQuantizer(try tierKernels(.avx512)) }
    func testRowQuantizerMatchesScalarTwinAVX512BF16() throws { checkRowQuantizer(try tierKernels(.avx512bf16)) }
    func testColumnSumsMatchPlainTwinGeneric() throws { checkColumnSums(try tierKernels(.generic)) }
    func testColumnSumsMatchPlainTwinAVX2() throws { checkColumnSums(try tierKernels(.avx2)) }
    func testColumnSumsMatchPlainTwinAVX512() throws { checkColumnSums(try tierKernels(.avx512)) }
    func testColumnSumsMatchPlainTwinAVX512BF16() throws { checkColumnSums(try tierKernels(.avx512bf16)) }

    /// Σ_d q8[row][d]·k8[key][d] from the same packed operands, written out plainly.
    func scalarTwin(queryU8: [UInt8], groups: Int, keys: [Int8], keyCount: Int) -> [Int32] {
        var result = [Int32](repeating: 0, count: keyCount * 64)
        for key in 0..<keyCount {
            for row in 0..<64 {
                var sum: Int32 = 0
                for d in 0..<(groups * 4) {
                    let q8 = Int32(queryU8[((d / 4) * 64 + row) * 4 + d % 4]) - 128
                    sum += q8 * Int32(keys[key * groups * 4 + d])
                }
                result[key * 64 + row] = sum
            }
        }
        return result
    }

    /// Random operands, then all-±127 ones (every product at its extreme, so
    /// pair and quad sums saturate wherever a kernel's int16 step could).
    func checkTile(_ kernels: KernelSet.Type) {
        checkTile(kernels.tierName) { q, groups, k, sums, keyCount, out in
            kernels.int8ScoreTile(queryU8: q, groups: groups, keys: k, keySums: sums, keyCount: keyCount, into: out,
                                  dequantize: nil)
        }
    }

    #if ATTNKIT_X86
    /// The AVX2 tier's vpdpbusd tile, taken where the CPU has AVX-VNNI.
    func testAVXVNNITileMatchesScalarTwinExactly() throws {
        if attn_shim_cpu_has_avx_vnni() == 0 { throw XCTSkip("CPU lacks AVX-VNNI: the ymm vpdpbusd tile not run") }
        checkTile("avx2 avx-vnni") { q, groups, k, sums, keyCount, out in
            attn_shim_int8_tile_avxvnni(q, groups, k, sums, keyCount, out)
        }
    }
    #endif

    func checkTile(_ name: String, _ tile: (UnsafePointer<UInt8>, Int, UnsafePointer<Int8>, UnsafePointer<Int32>, Int,
                                            UnsafeMutablePointer<Int32>) -> Void) {
        var rng = SplitMix64(seed: 8)
        // 0: random; 1: q = k = 127; 2: q = −127, k = 127; 3: q = 127, k = −127; 4: signs alternating by d.
        for pattern in 0..<5 {
            func level(_ d: Int, query: Bool) -> Int8 {
                switch pattern {
                case 0: return Int8.random(in: -127...127, using: &rng)
                case 1: return 127
                case 2: return query ? -127 : 127
                case 3: return query ? 127 : -127
                default: return query ? 127 : (d % 2 == 0 ? 127 : -127)
                }
            }
            for dim in [1, 7, 17, 33, 65, 127] {
                for keyCount in [1, 7, 17, 33, 65, 127] {
                    let groups = (dim + 3) / 4
                    var query = [UInt8](repeating: 128, count: groups * 64 * 4)
                    for row in 0..<64 {
                        for d in 0..<dim {
                            query[((d / 4) * 64 + row) * 4 + d % 4] = UInt8(Int(level(d, query: true)) + 128)
                        }
                    }
                    var keys = [Int8](repeating: 0, count: keyCount * groups * 4)
                    for key in 0..<keyCount {
                        for d in 0..<dim { keys[key * groups * 4 + d] = level(d, query: false) }
                    }
                    let sums: [Int32] = (0..<keyCount).map { key in (0..<(groups * 4)).reduce(0) { $0 + Int32(keys[key * groups * 4 + $1]) } }
                    var result = [Int32](repeating: -1, count: keyCount * 64)
                    query.withUnsafeBufferPointer { q in keys.withUnsafeBufferPointer { k in sums.withUnsafeBufferPointer { s in
                        result.withUnsafeMutableBufferPointer { r in
                            tile(q.baseAddress!, groups, k.baseAddress!, s.baseAddress!, keyCount, r.baseAddress!)
                        }
                    }}}
                    XCTAssertEqual(result, scalarTwin(queryU8: query, groups: groups, keys: keys, keyCount: keyCount),
                                   "\(name) pattern \(pattern) D\(dim) keys\(keyCount)")
                }
            }
        }
    }

    /// The engine's fused path (fp32 scores written from the VNNI registers)
    /// against the two steps it replaces: exact int32 tile, then dequantizeScores.
    func checkFusedDequantization(_ kernels: KernelSet.Type) {
        var rng = SplitMix64(seed: 12)
        for dim in [1, 17, 64, 111] {
            for keyCount in [1, 7, 64] {
                let groups = (dim + 3) / 4
                let query = (0..<(groups * 64 * 4)).map { _ in UInt8.random(in: 1...255, using: &rng) }
                let keys = (0..<(keyCount * groups * 4)).map { _ in Int8.random(in: -127...127, using: &rng) }
                let sums: [Int32] = (0..<keyCount).map { key in (0..<(groups * 4)).reduce(0) { $0 + Int32(keys[key * groups * 4 + $1]) } }
                let rowScales = (0..<64).map { _ in Float.random(in: 1e-3...1e-1, using: &rng) }
                let keyScales = (0..<keyCount).map { _ in Float.random(in: 1e-3...1e-1, using: &rng) }
                var exact = [Int32](repeating: 0, count: keyCount * 64)
                var twoSteps = [Float](repeating: .nan, count: keyCount * 64), fused = twoSteps
                query.withUnsafeBufferPointer { q in keys.withUnsafeBufferPointer { k in sums.withUnsafeBufferPointer { s in
                rowScales.withUnsafeBufferPointer { rs in keyScales.withUnsafeBufferPointer { ks in
                exact.withUnsafeMutableBufferPointer { e in
                    kernels.int8ScoreTile(queryU8: q.baseAddress!, groups: groups, keys: k.baseAddress!,
                                          keySums: s.baseAddress!, keyCount: keyCount, into: e.baseAddress!, dequantize: nil)
                    twoSteps.withUnsafeMutableBufferPointer { t in
                        kernels.dequantizeScores(e.baseAddress!, rowScales: rs.baseAddress!, keyScales: ks.baseAddress!,
                                                 keyCount: keyCount, into: t.baseAddress!)
                    }
                    fused.withUnsafeMutableBufferPointer { f in
                        let scales = Int8ScoreScales(rowScales: rs.baseAddress!, keyScales: ks.baseAddress!,
                                                     scores: f.baseAddress!)
                        kernels.int8ScoreTile(queryU8: q.baseAddress!, groups: groups, keys: k.baseAddress!,
                                              keySums: s.baseAddress!, keyCount: keyCount,
                                              into: e.baseAddress!, dequantize: scales)
                    }
                }}}}}}
                XCTAssertEqual(fused, twoSteps, "\(kernels.tierName) D\(dim) keys\(keyCount)")
            }
        }
    }

    /// The vectorized row quantizer (AVX-512 build) and the portable one against
    /// a scalar twin: the same levels, sums and finiteness, ties rounding to even.
    func checkRowQuantizer(_ kernels: KernelSet.Type) {
        let name = kernels.tierName
        var rng = SplitMix64(seed: 21)
        for count in [1, 7, 16, 17, 33, 64, 65, 127] {
            for trial in 0..<3 {
                // Halves times the scale's inverse land exactly on ties: 0.5, 1.5, 2.5 ...
                var row = (0..<count).map { _ in Float(Int.random(in: -300...300, using: &rng)) / 2 }
                if trial == 2 { row[count / 2] = .nan }
                let mean = (0..<count).map { _ in Float(Int.random(in: -4...4, using: &rng)) }
                let inverse: Float = 0.75
                var expected = [Int8](repeating: 0, count: count)
                var expectedSum: Int32 = 0, expectedFinite = true, expectedMax: Float = 0
                for d in 0..<count {
                    let value = row[d] - mean[d]
                    expectedFinite = expectedFinite && value.isFinite
                    if value.isFinite { expectedMax = max(expectedMax, abs(value)) }
                    let level = value.isNaN ? -127 : max(-127, min(127, (value * inverse).rounded(.toNearestOrEven)))
                    expected[d] = Int8(level)
                    expectedSum += Int32(level)
                }
                do {
                    var levels = [Int8](repeating: 99, count: count)
                    let (sum, finite, largest) = row.withUnsafeBufferPointer { r in mean.withUnsafeBufferPointer { m in
                        levels.withUnsafeMutableBufferPointer { out in
                            let (sum, finite) = kernels.quantizeRow(r.baseAddress!, colStride: 1, mean: m.baseAddress!,
                                                                    inverse: inverse, count: count, into: out.baseAddress!)
                            let largest = kernels.centeredAbsMax(Strided2D(base: r.baseAddress!, rowStride: count, colStride: 1),
                                                                 rows: 0..<1, mean: m.baseAddress!, count: count)
                            return (sum, finite, largest)
                        }
                    }}
                    XCTAssertEqual(finite, expectedFinite, "\(name) count \(count) trial \(trial)")
                    XCTAssertEqual(largest, expectedMax, "\(name) count \(count) trial \(trial)")
                    if expectedFinite {
                        XCTAssertEqual(levels, expected, "\(name) count \(count) trial \(trial)")
                        XCTAssertEqual(sum, expectedSum, "\(name) count \(count) trial \(trial)")
                    }
                }
            }
        }
    }

    /// The int8 paths' fp16 P·V (P [key][64 rows] in fp16, V as fp16 twin
    /// words, fp16 sums per lane) against a plain fp64 twin on the same
    /// fp16-rounded P and V: odd value dims (the 8-, 2- and 1-dim loops) and odd
    /// key counts. The bound is the fp16 accumulation's own: each of the `keys`
    /// fp16 roundings errs by at most 2^-11 of a partial sum no larger than Σ|p·v|.
    #if ATTNKIT_X86
    func testHalfPrecisionValueTileMatchesPlainTwin() throws {
        if attn_shim_cpu_has_avx512_fp16() == 0 { throw XCTSkip("CPU lacks AVX512_FP16: the fp16 P·V tile not run") }
        var rng = SplitMix64(seed: 11)
        func half(_ x: Float) -> Double { Double(Float(Float16(x))) }
        for valueDim in [1, 3, 4, 5, 9, 59, 64] {
            for keys in [1, 2, 7, 63, 64] {
                let probabilities: [Float] = (0..<(keys * 64)).map { _ in Float.random(in: 0...1, using: &rng) }
                let valueRows: [Float] = (0..<(keys * valueDim)).map { _ in Float.random(in: -4...4, using: &rng) }
                let start: [Float] = (0..<(valueDim * 64)).map { _ in Float.random(in: -1...1, using: &rng) }
                let rescale: [Float] = (0..<64).map { _ in Float.random(in: 0.25...1, using: &rng) }
                var valueWords = [UInt32](repeating: 0, count: 64 * valueDim)
                var halfProbabilities = [UInt16](repeating: 0, count: 64 * 64)
                var out = start
                let largest = valueRows.withUnsafeBufferPointer { v in
                    attn_shim_twin_rows_f16(v.baseAddress!, keys, valueDim, &valueWords)
                }
                XCTAssertEqual(largest, valueRows.map { abs($0) }.max()!)
                probabilities.withUnsafeBufferPointer { p in
                    attn_shim_f32_to_f16(p.baseAddress!, &halfProbabilities, keys * 64)
                }
                var poisoned = valueRows
                poisoned[poisoned.count / 2] = valueDim % 2 == 0 ? .nan : -.infinity
                var scratch = valueWords
                XCTAssertEqual(poisoned.withUnsafeBufferPointer { attn_shim_twin_rows_f16($0.baseAddress!, keys, valueDim, &scratch) },
                               .infinity)
                for index in 0..<(keys * valueDim) {   // both halves of a twin word are fp16(v)
                    let bits = Float16(valueRows[index]).bitPattern
                    XCTAssertEqual(valueWords[index], UInt32(bits) | UInt32(bits) << 16)
                }
                attn_shim_pv_f16(&out, valueDim, halfProbabilities, valueWords, keys, rescale)
                for e in 0..<valueDim {
                    for row in 0..<64 {
                        var sum = 0.0, magnitude = 0.0
                        for key in 0..<keys {
                            let term = half(probabilities[key * 64 + row]) * half(valueRows[key * valueDim + e])
                            sum += term
                            magnitude += abs(term)
                        }
                        let expected = Double(rescale[row]) * Double(start[e * 64 + row]) + sum
                        let bound = Double(keys + 2) * 0x1p-11 * magnitude + 1e-6
                        XCTAssertLessThanOrEqual(abs(Double(out[e * 64 + row]) - expected), bound,
                                                 "E\(valueDim) keys \(keys) e \(e) row \(row)")
                    }
                }
            }
        }
    }

    /// The fp16 P·V path's softmax step (P written in fp16 only) against an
    /// fp64 twin of the online-softmax update: masked keys (−inf), rows with no
    /// key yet and rows whose maximum grows, 1 to 4 chunks. m must be exact,
    /// the rescale and l within 1e-5, and P within fp16's half ulp (plus the
    /// exp's 2.6e-6 and 14·2^-24 from rounding t = x·log2(e) where fp16 is
    /// normal, and 2^-25 absolute for fp16 subnormals).
    func testHalfPrecisionSoftmaxMatchesPlainTwin() throws {
        if attn_shim_cpu_has_avx512() == 0 { throw XCTSkip("CPU lacks AVX-512: the fp16 softmax step not run") }
        var rng = SplitMix64(seed: 12)
        for keys in [1, 3, 17, 64] {
            for chunks in 1...4 {
                var scores = [Float](repeating: 0, count: keys * 64)
                for index in scores.indices {
                    scores[index] = Float.random(in: 0...1, using: &rng) < 0.2 ? -.infinity : Float.random(in: -20...5, using: &rng)
                }
                for key in 0..<keys { scores[key * 64 + 5] = -.infinity }   // row 5: no key in this tile
                var rowMax: [Float] = (0..<64).map { _ in Float.random(in: -3...3, using: &rng) }
                var rowSum: [Float] = (0..<64).map { _ in Float.random(in: 1...10, using: &rng) }
                for row in [5, 6] { rowMax[row] = -.infinity; rowSum[row] = 0 }   // row 5: none yet either
                let oldMax = rowMax, oldSum = rowSum
                var rescale = [Float](repeating: 7, count: 64)
                var probabilities = [UInt16](repeating: 0xFFFF, count: keys * 64)
                attn_shim_softmax_f16(scores, keys, chunks, &rowMax, &rowSum, &rescale, &probabilities)
                for row in 0..<64 {
                    if row >= chunks * 16 {
                        XCTAssertEqual(rowMax[row], oldMax[row]); XCTAssertEqual(rescale[row], 7)
                        continue
                    }
                    var newMax = Double(oldMax[row])
                    for key in 0..<keys { newMax = max(newMax, Double(scores[key * 64 + row])) }
                    XCTAssertEqual(Double(rowMax[row]), newMax, "keys \(keys) row \(row)")
                    let noKey = newMax == -.infinity
                    let expectedRescale = noKey ? 0 : Foundation.exp(Double(oldMax[row]) - newMax)
                    XCTAssertEqual(Double(rescale[row]), expectedRescale, accuracy: 1e-5 * expectedRescale,
                                   "keys \(keys) row \(row)")
                    var expectedSum = Double(oldSum[row]) * expectedRescale
                    for key in 0..<keys {
                        let score = Double(scores[key * 64 + row])
                        let p = noKey || score == -.infinity ? 0 : Foundation.exp(score - newMax)
                        expectedSum += p
                        let actual = Double(Float(Float16(bitPattern: probabilities[key * 64 + row])))
                        XCTAssertEqual(actual, p, accuracy: (0x1p-11 + 3.5e-6) * p + 0x1p-25,
                                       "keys \(keys) row \(row) key \(key)")
                    }
                    XCTAssertEqual(Double(rowSum[row]), expectedSum, accuracy: 1e-5 * expectedSum, "keys \(keys) row \(row)")
                }
            }
        }
    }

    #endif

    /// The smoothing mean's column sums (row by row for whole vectors of
    /// contiguous rows, column-wise otherwise) against fp64 sums of the same
    /// values, for both builds: 300 rows of N(0,1)·(1 + 10·column) values, so
    /// the fp32 sums must stay within 300 roundings of the largest partial sum.
    func checkColumnSums(_ kernels: KernelSet.Type) {
        let name = kernels.tierName
        var rng = SplitMix64(seed: 13)
        for (count, colStride) in [(64, 1), (48, 1), (17, 1), (64, 2), (5, 3)] {
            let rows = 300
            let data: [Float] = (0..<(rows * count * colStride)).map { index in
                Float.random(in: -1...1, using: &rng) * Float(1 + 10 * ((index / colStride) % count))
            }
            data.withUnsafeBufferPointer { buffer in
                let source = Strided2D(base: buffer.baseAddress!, rowStride: count * colStride, colStride: colStride)
                do {
                    var totals = [Float](repeating: 0, count: count)
                    totals.withUnsafeMutableBufferPointer {
                        kernels.addRows(source, rows: 0..<rows, count: count, into: $0.baseAddress!)
                    }
                    for d in 0..<count {
                        var exact = 0.0, magnitude = 0.0
                        for j in 0..<rows {
                            let value = Double(buffer[j * count * colStride + d * colStride])
                            exact += value
                            magnitude += abs(value)
                        }
                        XCTAssertEqual(Double(totals[d]), exact, accuracy: Double(rows) * 0x1p-24 * magnitude,
                                       "\(name) count \(count) stride \(colStride) d \(d)")
                    }
                }
            }
        }
    }

    func testKeyFormatLayout() {
        // One VNNI group is four int8 values in 4 bytes; a key row is paddedDim bytes.
        XCTAssertEqual(MemoryLayout<(Int8, Int8, Int8, Int8)>.size, 4)
        XCTAssertEqual(MemoryLayout<Int32>.size, 4)
        XCTAssertEqual(int8KeyFormatVersion, 1)
    }
}
