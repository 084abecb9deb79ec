import XCTest
import AttnKit

/// The tiled SDPA kernel against its plain reference twin, on sizes that hit
/// every tail: rows (tiles of 64), keys (tiles of 64, groups of 4), dims (groups of 4).
final class SDPATests: XCTestCase {
    static let tolerance = 2e-6

    enum MaskKind: CaseIterable { case none, keep, additive, causal }

    func compare(batch: Int, queryHeads: Int, keyHeads: Int, seqQ: Int, seqK: Int, dim: Int, valueDim: Int,
                 maskKind: MaskKind, dropout: Double = 0, scale: Double? = nil, seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let q: [Float] = randomArray(batch * queryHeads * seqQ * dim, &rng)
        let k: [Float] = randomArray(batch * keyHeads * seqK * dim, &rng)
        let v: [Float] = randomArray(batch * keyHeads * seqK * valueDim, &rng)
        let keep: [UInt8] = (0..<(seqQ * seqK)).map { _ in UInt8.random(in: 0...4, using: &rng) == 0 ? 0 : 1 }
        let bias: [Float] = randomArray(batch * seqK, &rng)
        var fast = [Float](repeating: .nan, count: batch * queryHeads * seqQ * valueDim)
        var slow = fast
        let attention = ScaledDotProductAttention(isCausal: maskKind == .causal, scale: scale,
                                                  enableGQA: queryHeads != keyHeads, dropoutP: dropout, seed: 42)
        let label = "B\(batch) Hq\(queryHeads) Hk\(keyHeads) L\(seqQ) S\(seqK) E\(dim) Ev\(valueDim) \(maskKind) p=\(dropout)"
        try q.withUnsafeBufferPointer { qp in try k.withUnsafeBufferPointer { kp in try v.withUnsafeBufferPointer { vp in
        try keep.withUnsafeBufferPointer { keepPointer in try bias.withUnsafeBufferPointer { biasPointer in
            let query = StridedTensor(contiguous: qp.baseAddress, shape: [batch, queryHeads, seqQ, dim])
            let key = StridedTensor(contiguous: kp.baseAddress, shape: [batch, keyHeads, seqK, dim])
            let value = StridedTensor(contiguous: vp.baseAddress, shape: [batch, keyHeads, seqK, valueDim])
            var mask: SDPAMask<Float>? = nil
            switch maskKind {
            case .keep: mask = .keep(StridedTensor(contiguous: keepPointer.baseAddress, shape: [seqQ, seqK]))
            case .additive: mask = .additive(StridedTensor(base: biasPointer.baseAddress, shape: [batch, 1, 1, seqK],
                                                          strides: [seqK, 0, 0, 1]))
            default: break
            }
            let outShape = [batch, queryHeads, seqQ, valueDim]
            try fast.withUnsafeMutableBufferPointer { o in
                try attention(query: query, key: key, value: value, mask: mask,
                              out: MutableStridedTensor(contiguous: o.baseAddress, shape: outShape), threads: 2)
            }
            try slow.withUnsafeMutableBufferPointer { o in
                try attention.reference(query: query, key: key, value: value, mask: mask,
                                        out: MutableStridedTensor(contiguous: o.baseAddress, shape: outShape))
            }
        }}}}}
        assertClose(fast, slow, tolerance: Self.tolerance, label)
    }

    func testOddSizesAgainstReference() throws {
        var seed: UInt64 = 10
        for (seqQ, seqK) in [(1, 1), (7, 17), (17, 7), (33, 65), (65, 33), (127, 127), (130, 70)] {
            for (dim, valueDim) in [(1, 1), (7, 17), (17, 7), (64, 64), (59, 111)] {
                for maskKind in MaskKind.allCases {
                    seed += 1
                    try compare(batch: 2, queryHeads: 2, keyHeads: 2, seqQ: seqQ, seqK: seqK, dim: dim,
                                valueDim: valueDim, maskKind: maskKind, seed: seed)
                }
            }
        }
    }

    func testGQAAndScale() throws {
        for (queryHeads, keyHeads) in [(4, 2), (8, 1), (6, 3)] {
            try compare(batch: 1, queryHeads: queryHeads, keyHeads: keyHeads, seqQ: 70, seqK: 90, dim: 24,
                        valueDim: 24, maskKind: .causal, scale: 0.37, seed: UInt64(queryHeads * 10 + keyHeads))
        }
    }

    func testDropoutMatchesReferenceDecisions() throws {
        try compare(batch: 1, queryHeads: 2, keyHeads: 2, seqQ: 80, seqK: 100, dim: 16, valueDim: 16,
                    maskKind: .none, dropout: 0.3, seed: 5)
        try compare(batch: 1, queryHeads: 2, keyHeads: 1, seqQ: 80, seqK: 100, dim: 16, valueDim: 16,
                    maskKind: .causal, dropout: 0.5, seed: 6)
    }
}
