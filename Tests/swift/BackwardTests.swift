import XCTest
import AttnKit

/// The backward engine against its fp64 reference twin (which recomputes the
/// softmax itself), on flash-attn's options, varlen with empty sequences, GQA
/// and dropout; and the same bits on one thread and two.
final class BackwardTests: XCTestCase {
    func testVarlenBackwardAgainstReference() throws {
        var rng = SplitMix64(seed: 7)
        let lengthsQ = [1, 0, 70, 130, 17], lengthsK = [9, 5, 0, 129, 200]
        let cuQ = [0] + lengthsQ.reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1) }
        let cuK = [0] + lengthsK.reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1) }
        let (heads, keyHeads, dim, valueDim) = (4, 2, 33, 17)
        let (totalQ, totalK) = (cuQ.last!, cuK.last!)
        let q = Buffer(randomArray(totalQ * heads * dim, &rng)), k = Buffer(randomArray(totalK * keyHeads * dim, &rng))
        let v = Buffer(randomArray(totalK * keyHeads * valueDim, &rng))
        let dOut = Buffer(randomArray(totalQ * heads * valueDim, &rng))
        let slopes = Buffer((0..<heads).map { Float($0 + 1) * 0.1 })
        let settings: [FlashAttention] = [
            FlashAttention(),
            FlashAttention(causal: true),
            FlashAttention(windowLeft: 7, windowRight: 3),
            FlashAttention(softcap: 2.5),
            FlashAttention(causal: true, softmaxScale: 0.4, softcap: 4, dropoutP: 0.2, seed: 9),
        ]
        let shapeQ = [totalQ, heads, dim], shapeK = [totalK, keyHeads, dim], shapeV = [totalK, keyHeads, valueDim]
        let shapeO = [totalQ, heads, valueDim]
        for (index, attention) in settings.enumerated() {
            for useSlopes in [false, true] {
                let out = Buffer(filling: .nan, count: totalQ * heads * valueDim)
                let lse = Buffer(filling: .nan, count: heads * totalQ)
                let alibi = useSlopes ? slopes.view([heads]) : nil
                try attention.varlen(q: q.view(shapeQ), k: k.view(shapeK), v: v.view(shapeV), cuSeqlensQ: cuQ, cuSeqlensK: cuK,
                                     maxSeqlenQ: 130, maxSeqlenK: 200, alibiSlopes: alibi, out: out.mutable(shapeO),
                                     lse: lse.mutable([heads, totalQ]))
                func gradients(useReference: Bool, threads: Int) throws -> [[Float]] {
                    let dQ = Buffer(filling: .nan, count: q.count), dK = Buffer(filling: .nan, count: k.count)
                    let dV = Buffer(filling: .nan, count: v.count)
                    try attention.varlenBackward(
                        dOut: dOut.view(shapeO), q: q.view(shapeQ), k: k.view(shapeK), v: v.view(shapeV), out: out.view(shapeO),
                        lse: lse.view([heads, totalQ]), boundariesQ: SequenceBoundaries(cuQ), boundariesK: SequenceBoundaries(cuK),
                        maxSeqlenQ: 130, maxSeqlenK: 200, alibiSlopes: alibi, dQ: dQ.mutable(shapeQ), dK: dK.mutable(shapeK),
                        dV: dV.mutable(shapeV), threads: threads, useReference: useReference)
                    return [dQ.array, dK.array, dV.array]
                }
                let fast = try gradients(useReference: false, threads: 2)
                let slow = try gradients(useReference: true, threads: 1)
                let single = try gradients(useReference: false, threads: 1)
                for (name, pair) in zip(["dq", "dk", "dv"], zip(fast, slow)) {
                    assertClose(pair.0, pair.1, tolerance: 2e-5, "\(name) setting \(index) alibi=\(useSlopes)")
                }
                XCTAssertEqual(fast, single, "one thread and two give the same bits, setting \(index)")
            }
        }
    }

    /// The eager backward (gradients through out and/or weights) against its fp64 twin,
    /// with key masks that empty a batch, causal, odd and empty lengths.
    func testEagerBackwardAgainstReference() throws {
        var rng = SplitMix64(seed: 11)
        let cases = [(2, 7, 7, 3, 5), (1, 130, 33, 2, 17), (2, 17, 0, 1, 8), (1, 0, 9, 2, 4), (2, 129, 129, 2, 59)]
        for (batch, seqQ, seqK, heads, dim) in cases {
            let width = heads * dim
            let shapeQ = [batch, seqQ, width], shapeK = [batch, seqK, width], shapeW = [batch, heads, seqQ, seqK]
            let q = Buffer(randomArray(batch * seqQ * width, &rng)), k = Buffer(randomArray(batch * seqK * width, &rng))
            let v = Buffer(randomArray(batch * seqK * width, &rng)), dOut = Buffer(randomArray(batch * seqQ * width, &rng))
            let dWeights = Buffer(randomArray(batch * heads * seqQ * seqK, &rng))
            var mask: [UInt8] = (0..<(batch * seqK)).map { $0 % 3 == 1 ? 0 : 1 }
            for j in 0..<seqK { mask[j] = 0 }   // batch 0: nothing to attend
            for causal in [false, true] {
                for masked in [false, true] {
                    for (useOut, useWeights) in [(true, true), (true, false), (false, true)] {
                        let kernel = EagerAttention(numHeads: heads, headDim: dim, causal: causal)
                        func gradients(reference: Bool, threads: Int) throws -> [[Float]] {
                            let dQ = Buffer(filling: .nan, count: q.count)
                            let dK = Buffer(filling: .nan, count: k.count)
                            let dV = Buffer(filling: .nan, count: v.count)
                            try mask.withUnsafeBufferPointer { bytes in
                                let keyMask = masked ? StridedTensor(contiguous: bytes.baseAddress, shape: [batch, seqK]) : nil
                                let o = useOut ? dOut.view(shapeQ) : nil, w = useWeights ? dWeights.view(shapeW) : nil
                                if reference {
                                    try kernel.backwardReference(dOut: o, dWeights: w, q: q.view(shapeQ), k: k.view(shapeK),
                                                                 v: v.view(shapeK), keyMask: keyMask, dQ: dQ.mutable(shapeQ),
                                                                 dK: dK.mutable(shapeK), dV: dV.mutable(shapeK))
                                } else {
                                    try kernel.backward(dOut: o, dWeights: w, q: q.view(shapeQ), k: k.view(shapeK),
                                                        v: v.view(shapeK), keyMask: keyMask, dQ: dQ.mutable(shapeQ),
                                                        dK: dK.mutable(shapeK), dV: dV.mutable(shapeK), threads: threads)
                                }
                            }
                            return [dQ.array, dK.array, dV.array]
                        }
                        let label = "B\(batch) Sq\(seqQ) Sk\(seqK) H\(heads) D\(dim) causal=\(causal) masked=\(masked) " +
                            "dout=\(useOut) dweights=\(useWeights)"
                        let fast = try gradients(reference: false, threads: 2)
                        let slow = try gradients(reference: true, threads: 1)
                        for (name, pair) in zip(["dq", "dk", "dv"], zip(fast, slow)) {
                            assertClose(pair.0, pair.1, tolerance: 2e-5, "\(name) " + label)
                        }
                        XCTAssertEqual(fast, try gradients(reference: false, threads: 1), "thread count changed bits: " + label)
                        if masked && seqQ > 0 && seqK > 0 {
                            XCTAssertTrue(fast[0][0..<(seqQ * width)].allSatisfy { $0 == 0 }, "empty rows: " + label)
                        }
                    }
                }
            }
        }
    }
}

/// An owned fp32 buffer, for tensors views that outlive one closure.
final class Buffer {
    let pointer: UnsafeMutableBufferPointer<Float>
    /// The elements a tensor view covers (the allocation has at least one, so empty tensors get a real pointer).
    let count: Int
    init(_ values: [Float]) {
        count = values.count
        pointer = .allocate(capacity: Swift.max(values.count, 1))
        _ = pointer.initialize(from: values)
    }
    init(filling value: Float, count: Int) {
        self.count = count
        pointer = .allocate(capacity: Swift.max(count, 1))
        pointer.initialize(repeating: value)
    }
    deinit { pointer.deallocate() }
    var array: [Float] { Array(pointer.prefix(count)) }
    func view(_ shape: [Int]) -> StridedTensor<Float> { StridedTensor(contiguous: UnsafePointer(pointer.baseAddress), shape: shape) }
    func mutable(_ shape: [Int]) -> MutableStridedTensor<Float> { MutableStridedTensor(contiguous: pointer.baseAddress, shape: shape) }
}
