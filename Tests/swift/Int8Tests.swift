import XCTest
import AttnKit
import AttnKitCore
import AttnKitKernels
import AttnKitKernelsPortable

/// The int8 QKᵀ tile (vpdpbusd on AVX-512 VNNI, lane loops in the portable
/// build) against a plain scalar twin: int32 results must be exactly equal.
final class Int8Tests: XCTestCase {
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

    func testTileMatchesScalarTwinExactly() {
        var rng = SplitMix64(seed: 8)
        let builds: [(String, (UnsafePointer<UInt8>, Int, UnsafePointer<Int8>, UnsafePointer<Int32>, Int, UnsafeMutablePointer<Int32>) -> Void)] = [
            ("avx512-vnni", { AttnKitKernels.FlashEngine.int8ScoreTile(queryU8: $0, groups: $1, keys: $2, keySums: $3, keyCount: $4, into: $5) }),
            ("generic", { AttnKitKernelsPortable.FlashEngine.int8ScoreTile(queryU8: $0, groups: $1, keys: $2, keySums: $3, keyCount: $4, into: $5) }),
        ]
        for (name, tile) in builds where name == "generic" || KernelDispatch.isa != .generic {
            for dim in [1, 7, 17, 33, 65, 127] {
                for keyCount in [1, 7, 17, 33, 65, 127] {
                    let groups = (dim + 3) / 4
                    var query = [UInt8](repeating: 128, count: groups * 64 * 4)
                    for row in 0..<64 {
                        for d in 0..<dim { query[((d / 4) * 64 + row) * 4 + d % 4] = UInt8.random(in: 1...255, using: &rng) }
                    }
                    var keys = [Int8](repeating: 0, count: keyCount * groups * 4)
                    for key in 0..<keyCount {
                        for d in 0..<dim { keys[key * groups * 4 + d] = Int8.random(in: -127...127, using: &rng) }
                    }
                    let sums: [Int32] = (0..<keyCount).map { key in (0..<(groups * 4)).reduce(0) { $0 + Int32(keys[key * groups * 4 + $1]) } }
                    var result = [Int32](repeating: -1, count: keyCount * 64)
                    query.withUnsafeBufferPointer { q in keys.withUnsafeBufferPointer { k in sums.withUnsafeBufferPointer { s in
                        result.withUnsafeMutableBufferPointer { r in
                            tile(q.baseAddress!, groups, k.baseAddress!, s.baseAddress!, keyCount, r.baseAddress!)
                        }
                    }}}
                    XCTAssertEqual(result, scalarTwin(queryU8: query, groups: groups, keys: keys, keyCount: keyCount),
                                   "\(name) D\(dim) keys\(keyCount)")
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
