import XCTest
import AttnKit

/// Flash attention on a block of a longer sequence (FlashAttention.diagonal, the C ABI's
/// attn_flash_block_*): the engine against its reference twin for diagonals that put the
/// band left of, across and right of the block, and blocks merged through their lse
/// against the whole sequence.
final class FlashBlockTests: XCTestCase {
    let (heads, keyHeads, dim) = (4, 2, 19)

    func testBlocksAgainstReference() throws {
        var rng = SplitMix64(seed: 21)
        let (rows, keys) = (37, 53)
        let q = Buffer(randomArray(rows * heads * dim, &rng)), k = Buffer(randomArray(keys * keyHeads * dim, &rng))
        let v = Buffer(randomArray(keys * keyHeads * dim, &rng)), dOut = Buffer(randomArray(rows * heads * dim, &rng))
        let slopes = Buffer((0..<heads).map { Float($0 + 1) * 0.05 })
        let shapeQ = [1, rows, heads, dim], shapeK = [1, keys, keyHeads, dim]
        let settings: [FlashAttention] = [
            FlashAttention(), FlashAttention(causal: true), FlashAttention(windowLeft: 9, windowRight: 4),
            FlashAttention(causal: true, windowLeft: 30),
        ]
        for diagonal in [-90, -20, 0, 7, 53, 89, 200] {
            for (index, base) in settings.enumerated() {
                for useSlopes in [false, true] {
                    var attention = base
                    attention.diagonal = diagonal
                    let alibi = useSlopes ? slopes.view([heads]) : nil
                    let label = "diagonal \(diagonal) setting \(index) alibi=\(useSlopes)"
                    func forward(useReference: Bool) throws -> (Buffer, Buffer) {
                        let out = Buffer(filling: .nan, count: q.count), lse = Buffer(filling: .nan, count: heads * rows)
                        try attention.batched(q: q.view(shapeQ), k: k.view(shapeK), v: v.view(shapeK), alibiSlopes: alibi,
                                              out: out.mutable(shapeQ), lse: lse.mutable([1, heads, rows]),
                                              threads: 2, useReference: useReference)
                        return (out, lse)
                    }
                    let (out, lse) = try forward(useReference: false)
                    let (outSlow, lseSlow) = try forward(useReference: true)
                    assertClose(out.array, outSlow.array, tolerance: 2e-6, "out " + label)
                    XCTAssertEqual(lse.array.map(\.isInfinite), lseSlow.array.map(\.isInfinite), "empty rows " + label)
                    let finite = zip(lse.array, lseSlow.array).filter { $0.1.isFinite }
                    assertClose(finite.map(\.0), finite.map(\.1), tolerance: 2e-6, "lse " + label)
                    func gradients(useReference: Bool) throws -> [[Float]] {
                        let dQ = Buffer(filling: .nan, count: q.count), dK = Buffer(filling: .nan, count: k.count)
                        let dV = Buffer(filling: .nan, count: v.count)
                        try attention.batchedBackward(dOut: dOut.view(shapeQ), q: q.view(shapeQ), k: k.view(shapeK),
                                                      v: v.view(shapeK), out: out.view(shapeQ), lse: lse.view([1, heads, rows]),
                                                      alibiSlopes: alibi, dQ: dQ.mutable(shapeQ), dK: dK.mutable(shapeK),
                                                      dV: dV.mutable(shapeK), threads: 2, useReference: useReference)
                        return [dQ.array, dK.array, dV.array]
                    }
                    for (name, pair) in zip(["dq", "dk", "dv"], zip(try gradients(useReference: false),
                                                                     try gradients(useReference: true))) {
                        assertClose(pair.0, pair.1, tolerance: 2e-5, name + " " + label)
                    }
                }
            }
        }
    }

    /// Query rows [40, 150) of a 150-token sequence, attended to key blocks [0, 70) and
    /// [70, 150) with their own diagonals and merged through the lse in fp64, give the
    /// whole-sequence call's rows (causal with a window and ALiBi, where the blocks split
    /// every row's keys).
    func testMergedBlocksGiveTheWholeSequence() throws {
        var rng = SplitMix64(seed: 5)
        let length = 150, first = 40, split = 70
        let q = Buffer(randomArray(length * heads * dim, &rng)), k = Buffer(randomArray(length * keyHeads * dim, &rng))
        let v = Buffer(randomArray(length * keyHeads * dim, &rng))
        let slopes = Buffer((0..<heads).map { Float($0 + 1) * 0.02 })
        let attention = FlashAttention(causal: true, windowLeft: 45)
        let whole = Buffer(filling: .nan, count: q.count), wholeLse = Buffer(filling: .nan, count: heads * length)
        let shape = [1, length, heads, dim], keyShape = [1, length, keyHeads, dim]
        try attention.batched(q: q.view(shape), k: k.view(keyShape), v: v.view(keyShape), alibiSlopes: slopes.view([heads]),
                              out: whole.mutable(shape), lse: wholeLse.mutable([1, heads, length]))
        let rows = length - first
        let qRows = StridedTensor(base: UnsafePointer(q.pointer.baseAddress! + first * heads * dim),
                                  shape: [1, rows, heads, dim], strides: [length * heads * dim, heads * dim, dim, 1])
        var parts: [(out: [Float], lse: [Float])] = []
        for (start, end) in [(0, split), (split, length)] {
            var block = attention
            block.diagonal = first - start
            let count = end - start
            func keysView(_ buffer: Buffer) -> StridedTensor<Float> {
                StridedTensor(base: UnsafePointer(buffer.pointer.baseAddress! + start * keyHeads * dim),
                              shape: [1, count, keyHeads, dim], strides: [length * keyHeads * dim, keyHeads * dim, dim, 1])
            }
            let out = Buffer(filling: .nan, count: rows * heads * dim), lse = Buffer(filling: .nan, count: heads * rows)
            try block.batched(q: qRows, k: keysView(k), v: keysView(v), alibiSlopes: slopes.view([heads]),
                              out: out.mutable([1, rows, heads, dim]), lse: lse.mutable([1, heads, rows]))
            parts.append((out.array, lse.array))
        }
        var merged = [Float](), mergedLse = [Float](), expected = [Float](), expectedLse = [Float]()
        for row in 0..<rows {
            for head in 0..<heads {
                let (a, b) = (Double(parts[0].lse[head * rows + row]), Double(parts[1].lse[head * rows + row]))
                // lse +inf: no keys in that block, which then counts for nothing.
                let top = Swift.max(a.isInfinite ? -.infinity : a, b.isInfinite ? -.infinity : b)
                let ea = a.isInfinite ? 0 : Foundation.exp(a - top), eb = b.isInfinite ? 0 : Foundation.exp(b - top)
                mergedLse.append(Float(top + Foundation.log(ea + eb)))
                expectedLse.append(wholeLse.pointer[head * length + first + row])
                for d in 0..<dim {
                    let index = (row * heads + head) * dim + d
                    let x = ea * Double(parts[0].out[index]) + eb * Double(parts[1].out[index])
                    merged.append(Float(x / (ea + eb)))
                    expected.append(whole.pointer[((first + row) * heads + head) * dim + d])
                }
            }
        }
        assertClose(merged, expected, tolerance: 2e-6, "merged blocks against the whole sequence")
        assertClose(mergedLse, expectedLse, tolerance: 4e-6, "merged lse against the whole sequence")
    }

    func testDiagonalOutOfRangeIsRejected() {
        var attention = FlashAttention()
        attention.diagonal = (1 << 30) + 1
        let q = Buffer(filling: 0, count: heads * dim), out = Buffer(filling: 0, count: heads * dim)
        XCTAssertThrowsError(try attention.batched(q: q.view([1, 1, heads, dim]), k: q.view([1, 1, heads, dim]),
                                                   v: q.view([1, 1, heads, dim]), out: out.mutable([1, 1, heads, dim]))) {
            XCTAssertEqual($0 as? AttnError, .invalidArgument(argument: "diagonal", rule: "must be within [-2^30, 2^30], got 1073741825"))
        }
    }
}
