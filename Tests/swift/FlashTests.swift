import XCTest
import AttnKit

/// The tiled engine against its reference twin on flash-attn's options:
/// bottom-right causal, windows, ALiBi, softcap, GQA, varlen with empty sequences.
final class FlashTests: XCTestCase {
    func testVarlenOptionsAgainstReference() throws {
        var rng = SplitMix64(seed: 99)
        let lengthsQ = [1, 0, 70, 130, 17], lengthsK = [9, 5, 0, 129, 200]
        let cuQ = [0] + lengthsQ.reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1) }
        let cuK = [0] + lengthsK.reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1) }
        let (heads, keyHeads, dim, valueDim) = (4, 2, 33, 17)
        let q: [Float] = randomArray(cuQ.last! * heads * dim, &rng)
        let k: [Float] = randomArray(cuK.last! * keyHeads * dim, &rng)
        let v: [Float] = randomArray(cuK.last! * keyHeads * valueDim, &rng)
        let slopes: [Float] = (0..<heads).map { Float($0 + 1) * 0.1 }
        let settings: [FlashAttention] = [
            FlashAttention(),
            FlashAttention(causal: true),
            FlashAttention(windowLeft: 7, windowRight: 3),
            FlashAttention(causal: true, windowLeft: 20),
            FlashAttention(softcap: 2.5),
            FlashAttention(causal: true, softmaxScale: 0.4, softcap: 4, dropoutP: 0.2, seed: 9),
        ]
        for (index, attention) in settings.enumerated() {
            for useSlopes in [false, true] {
                func run(useReference: Bool) throws -> (out: [Float], lse: [Float]) {
                    var out = [Float](repeating: .nan, count: cuQ.last! * heads * valueDim)
                    var lse = [Float](repeating: .nan, count: heads * cuQ.last!)
                    try q.withUnsafeBufferPointer { qp in try k.withUnsafeBufferPointer { kp in
                    try v.withUnsafeBufferPointer { vp in try slopes.withUnsafeBufferPointer { sp in
                    try out.withUnsafeMutableBufferPointer { o in try lse.withUnsafeMutableBufferPointer { l in
                        try attention.varlen(q: StridedTensor(contiguous: qp.baseAddress, shape: [cuQ.last!, heads, dim]),
                                             k: StridedTensor(contiguous: kp.baseAddress, shape: [cuK.last!, keyHeads, dim]),
                                             v: StridedTensor(contiguous: vp.baseAddress, shape: [cuK.last!, keyHeads, valueDim]),
                                             cuSeqlensQ: cuQ, cuSeqlensK: cuK, maxSeqlenQ: 130, maxSeqlenK: 200,
                                             alibiSlopes: useSlopes ? StridedTensor(contiguous: sp.baseAddress, shape: [heads]) : nil,
                                             out: MutableStridedTensor(contiguous: o.baseAddress, shape: [cuQ.last!, heads, valueDim]),
                                             lse: MutableStridedTensor(contiguous: l.baseAddress, shape: [heads, cuQ.last!]),
                                             threads: 2, useReference: useReference)
                    }}}}}}
                    return (out, lse)
                }
                let (fast, lseFast) = try run(useReference: false)
                let (slow, lseSlow) = try run(useReference: true)
                let label = "setting \(index) alibi=\(useSlopes)"
                assertClose(fast, slow, tolerance: 2e-6, "out " + label)
                let finite = zip(lseFast, lseSlow).filter { $0.1.isFinite }
                XCTAssertEqual(zip(lseFast, lseSlow).filter { $0.0.isInfinite }.count,
                               zip(lseFast, lseSlow).filter { $0.1.isInfinite }.count, "empty rows " + label)
                assertClose(finite.map(\.0), finite.map(\.1), tolerance: 2e-6, "lse " + label)
            }
        }
    }

    func testMalformedCuSeqlensIsRejected() {
        XCTAssertThrowsError(try SequenceOffsets("cu_seqlens_q", values: [0, 5, 3], total: 3, maxLength: 9, maxName: "m")) {
            XCTAssertEqual($0 as? AttnError, .invalidArgument(argument: "cu_seqlens_q",
                                                              rule: "must be non-decreasing (index 2: 3 < 5)"))
        }
        XCTAssertThrowsError(try SequenceOffsets("cu", values: [0, 5], total: 6, maxLength: 9, maxName: "m"))
        XCTAssertThrowsError(try SequenceOffsets("cu", values: [0, 5], total: 5, maxLength: 4, maxName: "m"))
    }
}
