import XCTest
import Foundation
import AttnKit

/// The optimized eager kernel against its plain reference twin.
final class EagerTests: XCTestCase {
    static let floatTolerance = 2e-6
    static let doubleTolerance = 1e-12

    /// Runs both paths on one case; `strided` lays q, k and v out with every
    /// other element of a twice-wider buffer, so no BLAS fast path applies.
    func compare<T: AttentionScalar & AttnStorage>(_ type: T.Type, batch: Int, seqQ: Int, seqK: Int, heads: Int, dim: Int,
                                     causal: Bool, masked: Bool, strided: Bool, tolerance: Double,
                                     seed: UInt64) throws where T.RawSignificand: FixedWidthInteger {
        var rng = SplitMix64(seed: seed)
        let width = heads * dim
        let step = strided ? 2 : 1
        let q: [T] = randomArray(batch * seqQ * width * step, &rng)
        let k: [T] = randomArray(batch * seqK * width * step, &rng)
        let v: [T] = randomArray(batch * seqK * width * step, &rng)
        var mask: [UInt8] = (0..<(batch * seqK)).map { _ in UInt8.random(in: 0...3, using: &rng) == 0 ? 0 : 1 }
        if masked && seqK > 0 { for j in 0..<seqK { mask[j] = 0 } } // batch 0: every key masked
        func strides(_ seq: Int) -> [Int] { [seq * width * step, width * step, step] }
        let kernel = EagerAttention(numHeads: heads, headDim: dim, causal: causal)
        var outFast = [T](repeating: .nan, count: batch * seqQ * width)
        var outRef = outFast
        var weightsFast = [T](repeating: .nan, count: batch * heads * seqQ * seqK)
        var weightsRef = weightsFast
        let label = "T=\(T.self) B\(batch) Sq\(seqQ) Sk\(seqK) H\(heads) D\(dim) causal=\(causal) masked=\(masked) strided=\(strided)"
        try q.withUnsafeBufferPointer { qp in
            try k.withUnsafeBufferPointer { kp in
                try v.withUnsafeBufferPointer { vp in
                    try mask.withUnsafeBufferPointer { mp in
                        let qv = StridedTensor(base: qp.baseAddress, shape: [batch, seqQ, width], strides: strides(seqQ))
                        let kv = StridedTensor(base: kp.baseAddress, shape: [batch, seqK, width], strides: strides(seqK))
                        let vv = StridedTensor(base: vp.baseAddress, shape: [batch, seqK, width], strides: strides(seqK))
                        let mv = masked ? StridedTensor(contiguous: mp.baseAddress, shape: [batch, seqK]) : nil
                        try outFast.withUnsafeMutableBufferPointer { o in
                            try weightsFast.withUnsafeMutableBufferPointer { w in
                                try kernel(q: qv, k: kv, v: vv, keyMask: mv,
                                           out: MutableStridedTensor(contiguous: o.baseAddress, shape: [batch, seqQ, width]),
                                           weights: MutableStridedTensor(contiguous: w.baseAddress, shape: [batch, heads, seqQ, seqK]),
                                           threads: 2)
                            }
                        }
                        try outRef.withUnsafeMutableBufferPointer { o in
                            try weightsRef.withUnsafeMutableBufferPointer { w in
                                try kernel.reference(q: qv, k: kv, v: vv, keyMask: mv,
                                                     out: MutableStridedTensor(contiguous: o.baseAddress, shape: [batch, seqQ, width]),
                                                     weights: MutableStridedTensor(contiguous: w.baseAddress, shape: [batch, heads, seqQ, seqK]))
                            }
                        }
                    }
                }
            }
        }
        assertClose(outFast, outRef, tolerance: tolerance, "out " + label)
        assertClose(weightsFast, weightsRef, tolerance: tolerance, "weights " + label)
        if masked && seqQ > 0 {
            // Batch 0 has every key masked: its output rows are exactly 0.
            XCTAssertTrue(outFast[0..<(seqQ * width)].allSatisfy { $0 == 0 }, "fully masked rows " + label)
        }
    }

    func testOddSizesFloat() throws {
        var seed: UInt64 = 1
        for seq in [1, 7, 17, 33, 65, 127] {
            for dim in [1, 7, 17, 59, 64] {
                for causal in [false, true] {
                    for masked in [false, true] {
                        for strided in [false, true] {
                            seed += 1
                            try compare(Float.self, batch: 2, seqQ: seq, seqK: seq, heads: 3, dim: dim, causal: causal,
                                        masked: masked, strided: strided, tolerance: Self.floatTolerance, seed: seed)
                        }
                    }
                }
            }
        }
    }

    func testOddSizesDouble() throws {
        var seed: UInt64 = 1000
        for seq in [1, 17, 65, 130] {
            for dim in [1, 33, 111] {
                for causal in [false, true] {
                    seed += 1
                    try compare(Double.self, batch: 2, seqQ: seq, seqK: seq, heads: 2, dim: dim, causal: causal,
                                masked: true, strided: seq % 2 == 1, tolerance: Self.doubleTolerance, seed: seed)
                }
            }
        }
    }

    func testUnequalLengthsAndEmpty() throws {
        for (seqQ, seqK) in [(5, 17), (17, 5), (0, 4), (4, 0), (300, 7)] {
            for causal in [false, true] {
                try compare(Float.self, batch: 1, seqQ: seqQ, seqK: seqK, heads: 2, dim: 8, causal: causal,
                            masked: false, strided: false, tolerance: Self.floatTolerance, seed: UInt64(seqQ * 31 + seqK))
            }
        }
    }

    func testErrorsNameTheArgument() throws {
        let data = [Float](repeating: 0, count: 64)
        try data.withUnsafeBufferPointer { p in
            var out = [Float](repeating: 0, count: 64)
            try out.withUnsafeMutableBufferPointer { o in
                let kernel = EagerAttention(numHeads: 2, headDim: 4, causal: false)
                let good = StridedTensor(contiguous: p.baseAddress, shape: [1, 8, 8])
                let bad = StridedTensor(contiguous: p.baseAddress, shape: [1, 8, 7])
                let target = MutableStridedTensor(contiguous: o.baseAddress, shape: [1, 8, 8])
                XCTAssertThrowsError(try kernel(q: good, k: bad, v: good, out: target)) { error in
                    XCTAssertEqual(error as? AttnError, .shape(argument: "k.shape[2]",
                                                               rule: "must equal num_heads*head_dim (2*4) (8), got 7"))
                }
                let broadcastOut = MutableStridedTensor(base: o.baseAddress, shape: [1, 8, 8], strides: [64, 0, 1])
                XCTAssertThrowsError(try kernel(q: good, k: good, v: good, out: broadcastOut)) { error in
                    guard case .shape(let argument, _)? = error as? AttnError else { return XCTFail("\(error)") }
                    XCTAssertEqual(argument, "out.strides[1]")
                }
                XCTAssertThrowsError(try EagerAttention(numHeads: 0, headDim: 4, causal: false)(q: good, k: good, v: good, out: target)) { error in
                    XCTAssertEqual(error as? AttnError, .invalidArgument(argument: "num_heads", rule: "must be >= 1, got 0"))
                }
            }
        }
    }

    /// Each tier's vectorized exp (fastExp, and the softmax's clamp-free
    /// softmaxExp on x <= 0) against libm's over its range, then special values.
    func testFastExpMatchesLibmGeneric() throws { try checkExp(tierKernels(.generic)) }
    func testFastExpMatchesLibmAVX2() throws { try checkExp(tierKernels(.avx2)) }
    func testFastExpMatchesLibmAVX512() throws { try checkExp(tierKernels(.avx512)) }
    func testFastExpMatchesLibmAVX512BF16() throws { try checkExp(tierKernels(.avx512bf16)) }

    func checkExp(_ kernels: KernelSet.Type, file: StaticString = #filePath, line: UInt = #line) {
        checkExp("fastExp", kernels.tierName, range: -87...88, { kernels.exp16($0) },
                 specials: [(-.infinity, 0), (.infinity, .infinity), (-100, 0), (100, .infinity), (0, 1)])
        checkExp("softmaxExp", kernels.tierName, range: -87...0, { kernels.softmaxExp16($0) },
                 specials: [(-.infinity, 0), (-100, 0), (-1e30, 0), (-.greatestFiniteMagnitude, 0), (0, 1), (-87.4, 0)])
    }

    func checkExp(_ label: String, _ name: String, range: ClosedRange<Float>, _ exp: (SIMD16<Float>) -> SIMD16<Float>,
                  specials: [(Float, Float)], file: StaticString = #filePath, line: UInt = #line) {
        var worst = 0.0
        var x = range.lowerBound
        while x <= range.upperBound {
            let lanes = SIMD16<Float>((0..<16).map { Swift.min(range.upperBound, x + Float($0) * 0.0007) })
            let result = exp(lanes)
            for lane in 0..<16 {
                let exact = Foundation.exp(Double(lanes[lane]))
                worst = max(worst, abs(Double(result[lane]) - exact) / exact)
            }
            x += 0.0113
        }
        XCTAssertLessThan(worst, 2.5e-7, "relative error of \(label) (\(name))", file: file, line: line)
        XCTAssertTrue(exp(SIMD16<Float>(repeating: .nan))[0].isNaN, "\(label) (\(name)) of NaN", file: file, line: line)
        for (input, expected) in specials {
            XCTAssertEqual(exp(SIMD16<Float>(repeating: input))[0], expected, "\(label) (\(name)) of \(input)",
                           file: file, line: line)
        }
    }

    func testThreadCountDoesNotChangeBits() throws {
        var rng = SplitMix64(seed: 77)
        let (batch, seq, heads, dim) = (2, 45, 4, 24)
        let q: [Float] = randomArray(batch * seq * heads * dim, &rng)
        let kernel = EagerAttention(numHeads: heads, headDim: dim, causal: true)
        var results: [[Float]] = []
        for threads in [1, 2, 3] {
            var out = [Float](repeating: 0, count: q.count)
            try q.withUnsafeBufferPointer { p in
                try out.withUnsafeMutableBufferPointer { o in
                    let view = StridedTensor(contiguous: p.baseAddress, shape: [batch, seq, heads * dim])
                    try kernel(q: view, k: view, v: view,
                               out: MutableStridedTensor(contiguous: o.baseAddress, shape: [batch, seq, heads * dim]),
                               threads: threads)
                }
            }
            results.append(out)
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
    }
}
