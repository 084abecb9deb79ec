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
                    let dQ = Buffer(filling: .nan, count: q.pointer.count), dK = Buffer(filling: .nan, count: k.pointer.count)
                    let dV = Buffer(filling: .nan, count: v.pointer.count)
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
}

/// An owned fp32 buffer, for tensors views that outlive one closure.
private final class Buffer {
    let pointer: UnsafeMutableBufferPointer<Float>
    init(_ values: [Float]) {
        pointer = .allocate(capacity: Swift.max(values.count, 1))
        _ = pointer.initialize(from: values)
    }
    init(filling value: Float, count: Int) {
        pointer = .allocate(capacity: Swift.max(count, 1))
        pointer.initialize(repeating: value)
    }
    deinit { pointer.deallocate() }
    var array: [Float] { Array(pointer) }
    func view(_ shape: [Int]) -> StridedTensor<Float> { StridedTensor(contiguous: UnsafePointer(pointer.baseAddress), shape: shape) }
    func mutable(_ shape: [Int]) -> MutableStridedTensor<Float> { MutableStridedTensor(contiguous: pointer.baseAddress, shape: shape) }
}
