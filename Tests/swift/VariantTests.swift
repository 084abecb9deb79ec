import XCTest
import AttnKit

/// The attention guide's variants (sparse top-k, AFT, Linformer): each kernel against its
/// plain fp64 reference twin, on odd sizes, strided input and every option.
final class VariantTests: XCTestCase {
    static let floatTolerance = 5e-6
    static let doubleTolerance = 1e-12

    /// A tensor of `shape` filled from `rng` (values in ±scale), laid out with every other
    /// element of a twice-wider buffer when `strided`, so no BLAS fast path applies.
    final class Buffer<T: BinaryFloatingPoint & AttnStorage> where T.RawSignificand: FixedWidthInteger {
        let storage: UnsafeMutableBufferPointer<T>
        let shape: [Int]
        let strides: [Int]

        init(_ shape: [Int], strided: Bool, scale: Double = 2, _ rng: inout SplitMix64) {
            let step = strided ? 2 : 1
            var strides = [Int](repeating: step, count: shape.count)
            for axis in stride(from: shape.count - 2, through: 0, by: -1) {
                strides[axis] = strides[axis + 1] * max(shape[axis + 1], 1)
            }
            self.shape = shape; self.strides = strides
            let count = max(shape.reduce(1, *), 1) * step
            storage = .allocate(capacity: count)
            for i in 0..<count { storage[i] = T(Double.random(in: -scale...scale, using: &rng)) }
        }

        deinit { storage.deallocate() }

        func view() -> StridedTensor<T> {
            StridedTensor(base: UnsafePointer(storage.baseAddress), shape: shape, strides: strides)
        }
    }

    /// Output arrays for the kernel and the twin.
    func outputs<T: BinaryFloatingPoint>(_ shape: [Int], _ body: (MutableStridedTensor<T>, MutableStridedTensor<T>) throws -> Void)
        rethrows -> ([T], [T]) {
        var fast = [T](repeating: .nan, count: shape.reduce(1, *)), reference = fast
        try fast.withUnsafeMutableBufferPointer { f in
            try reference.withUnsafeMutableBufferPointer { r in
                try body(MutableStridedTensor(contiguous: f.baseAddress, shape: shape),
                         MutableStridedTensor(contiguous: r.baseAddress, shape: shape))
            }
        }
        return (fast, reference)
    }

    func tolerance<T>(_: T.Type) -> Double { T.self == Double.self ? Self.doubleTolerance : Self.floatTolerance }

    // MARK: sparse top-k

    func sparse<T: AttentionScalar & AttnStorage>(_ type: T.Type, batch: Int, heads: (Int, Int), seq: (Int, Int),
                                                   dim: Int, topK: Int, causal: Bool, masked: Bool, strided: Bool,
                                                   seed: UInt64) throws where T.RawSignificand: FixedWidthInteger {
        var rng = SplitMix64(seed: seed)
        let q = Buffer<T>([batch, heads.0, seq.0, dim], strided: strided, &rng)
        let k = Buffer<T>([batch, heads.1, seq.1, dim], strided: strided, &rng)
        let v = Buffer<T>([batch, heads.1, seq.1, dim + 3], strided: strided, &rng)
        let mask: [UInt8] = (0..<(batch * seq.1)).map { _ in UInt8.random(in: 0...3, using: &rng) == 0 ? 0 : 1 }
        let kernel = SparseTopKAttention(topK: topK, causal: causal)
        let (fast, reference) = try mask.withUnsafeBufferPointer { m in
            let maskView = masked ? StridedTensor(contiguous: m.baseAddress, shape: [batch, seq.1]) : nil
            return try outputs([batch, heads.0, seq.0, dim + 3]) { (a: MutableStridedTensor<T>, b: MutableStridedTensor<T>) in
                try kernel(q: q.view(), k: k.view(), v: v.view(), keyMask: maskView, out: a, threads: 2)
                try kernel.reference(q: q.view(), k: k.view(), v: v.view(), keyMask: maskView, out: b)
            }
        }
        assertClose(fast, reference, tolerance: tolerance(T.self),
                    "sparse \(T.self) B\(batch) H\(heads) S\(seq) D\(dim) k\(topK) causal=\(causal) masked=\(masked) strided=\(strided)")
    }

    func testSparseTopKMatchesTwin() throws {
        var seed: UInt64 = 1
        for (seq, topK) in [((1, 1), 1), ((7, 7), 3), ((33, 300), 17), ((65, 513), 64), ((17, 17), 17), ((130, 1100), 40)] {
            for causal in [false, true] where !causal || seq.0 == seq.1 {
                for masked in [false, true] {
                    try sparse(Float.self, batch: 2, heads: (4, 2), seq: seq, dim: 11, topK: topK, causal: causal,
                               masked: masked, strided: seed % 2 == 0, seed: seed)
                    try sparse(Double.self, batch: 1, heads: (2, 1), seq: seq, dim: 5, topK: topK, causal: causal,
                               masked: masked, strided: seed % 3 == 0, seed: seed)
                    seed += 1
                }
            }
        }
    }

    func testSparseTopKTiesGoToLowerKeys() throws {
        // Every key equal: the kept ones must be keys 0..<k, whose values are their indices.
        let seq = 600, topK = 5
        let q = [Float](repeating: 1, count: seq), k = [Float](repeating: 1, count: seq)
        let v = (0..<seq).map { Float($0) }
        var out = [Float](repeating: .nan, count: 1)
        try q.withUnsafeBufferPointer { qp in
            try k.withUnsafeBufferPointer { kp in
                try v.withUnsafeBufferPointer { vp in
                    try out.withUnsafeMutableBufferPointer { o in
                        try SparseTopKAttention(topK: topK)(
                            q: StridedTensor(contiguous: qp.baseAddress, shape: [1, 1, 1, 1]),
                            k: StridedTensor(contiguous: kp.baseAddress, shape: [1, 1, seq, 1]),
                            v: StridedTensor(contiguous: vp.baseAddress, shape: [1, 1, seq, 1]),
                            out: MutableStridedTensor(contiguous: o.baseAddress, shape: [1, 1, 1, 1]))
                    }
                }
            }
        }
        XCTAssertEqual(out[0], 2, accuracy: 1e-6, "mean of keys 0...4 (a later tie would raise it)")
    }

    // MARK: AFT

    func aft<T: AttentionScalar & AttnStorage>(_ type: T.Type, variant: AFTAttention.Variant, lowRank: Bool, causal: Bool,
                                                batch: Int, length: Int, features: Int, scale: Double, strided: Bool,
                                                seed: UInt64) throws where T.RawSignificand: FixedWidthInteger {
        var rng = SplitMix64(seed: seed)
        let q = Buffer<T>([batch, length, features], strided: strided, &rng)
        let k = Buffer<T>([batch, length, features], strided: strided, scale: scale, &rng)
        let v = Buffer<T>([batch, length, features], strided: strided, &rng)
        let w = Buffer<T>([length + 2, length + 1], strided: strided, scale: scale, &rng)
        let u = Buffer<T>([length, 3], strided: strided, scale: scale.squareRoot(), &rng)
        let f = Buffer<T>([length + 1, 3], strided: strided, scale: scale.squareRoot(), &rng)
        let kernel = AFTAttention(variant: variant, causal: causal)
        let bias: AFTAttention.PositionBias<T>
        if case .simple = variant { bias = .none } else { bias = lowRank ? .lowRank(u: u.view(), w: f.view()) : .dense(w.view()) }
        let (fast, reference) = try outputs([batch, length, features]) { (a: MutableStridedTensor<T>, b: MutableStridedTensor<T>) in
            try kernel(q: q.view(), k: k.view(), v: v.view(), bias: bias, out: a, threads: 2)
            try kernel.reference(q: q.view(), k: k.view(), v: v.view(), bias: bias, out: b)
        }
        assertClose(fast, reference, tolerance: tolerance(T.self),
                    "aft \(T.self) \(variant) lowRank=\(lowRank) causal=\(causal) T\(length) d\(features) ±\(scale) strided=\(strided)")
    }

    func testAFTMatchesTwin() throws {
        var seed: UInt64 = 100
        let variants: [AFTAttention.Variant] = [.full, .local(context: 5, zeroBiasOutside: false),
                                                .local(context: 5, zeroBiasOutside: true), .local(context: 200, zeroBiasOutside: false),
                                                .simple]
        for variant in variants {
            for (length, features) in [(1, 3), (17, 7), (130, 33)] {
                for causal in [false, true] {
                    for lowRank in [false, true] {
                        // ±100 in K and W: e^100 overflows fp32 without the shifts.
                        for scale in [2.0, 100.0] {
                            try aft(Float.self, variant: variant, lowRank: lowRank, causal: causal, batch: 2, length: length,
                                    features: features, scale: scale, strided: seed % 2 == 0, seed: seed)
                            try aft(Double.self, variant: variant, lowRank: lowRank, causal: causal, batch: 1, length: length,
                                    features: features, scale: scale, strided: seed % 3 == 0, seed: seed)
                            seed += 1
                        }
                    }
                }
            }
        }
    }

    // MARK: Linformer

    func linformer<T: AttentionScalar & AttnStorage>(_ type: T.Type, heads: (Int, Int), seq: Int, dim: Int, projected: Int,
                                                      biased: Bool, strided: Bool, seed: UInt64) throws
    where T.RawSignificand: FixedWidthInteger {
        var rng = SplitMix64(seed: seed)
        let q = Buffer<T>([2, heads.0, seq + 1, dim], strided: strided, &rng)
        let k = Buffer<T>([2, heads.1, seq, dim], strided: strided, &rng)
        let v = Buffer<T>([2, heads.1, seq, dim + 2], strided: strided, &rng)
        let e = Buffer<T>([projected, seq + 9], strided: strided, scale: 0.3, &rng)
        let f = Buffer<T>([projected, seq + 9], strided: strided, scale: 0.3, &rng)
        let be = Buffer<T>([projected], strided: strided, &rng), bf = Buffer<T>([projected], strided: strided, &rng)
        let kernel = LinformerAttention()
        let (fast, reference) = try outputs([2, heads.0, seq + 1, dim + 2]) { (a: MutableStridedTensor<T>, b: MutableStridedTensor<T>) in
            try kernel(q: q.view(), k: k.view(), v: v.view(), projE: e.view(), biasE: biased ? be.view() : nil,
                       projF: f.view(), biasF: biased ? bf.view() : nil, out: a, threads: 2)
            try kernel.reference(q: q.view(), k: k.view(), v: v.view(), projE: e.view(), biasE: biased ? be.view() : nil,
                                 projF: f.view(), biasF: biased ? bf.view() : nil, out: b)
        }
        assertClose(fast, reference, tolerance: tolerance(T.self),
                    "linformer \(T.self) H\(heads) S\(seq) D\(dim) kp\(projected) biased=\(biased) strided=\(strided)")
    }

    func testLinformerMatchesTwin() throws {
        var seed: UInt64 = 200
        for (seq, projected) in [(1, 1), (7, 3), (65, 17), (127, 33)] {
            for biased in [false, true] {
                try linformer(Float.self, heads: (4, 2), seq: seq, dim: 59, projected: projected, biased: biased,
                              strided: seed % 2 == 0, seed: seed)
                try linformer(Double.self, heads: (2, 2), seq: seq, dim: 7, projected: projected, biased: biased,
                              strided: seed % 2 == 1, seed: seed)
                seed += 1
            }
        }
    }

    func testErrorsNameTheArgument() throws {
        var rng = SplitMix64(seed: 9)
        let x = Buffer<Float>([1, 1, 4, 2], strided: false, &rng)
        var out = [Float](repeating: 0, count: 8)
        try out.withUnsafeMutableBufferPointer { o in
            let target = MutableStridedTensor(contiguous: o.baseAddress, shape: [1, 1, 4, 2])
            XCTAssertThrowsError(try SparseTopKAttention(topK: 5)(q: x.view(), k: x.view(), v: x.view(), out: target)) {
                XCTAssertTrue("\($0)".hasPrefix("top_k must be <= the key length"), "\($0)")
            }
            let projection = Buffer<Float>([2, 3], strided: false, &rng)
            XCTAssertThrowsError(try LinformerAttention()(q: x.view(), k: x.view(), v: x.view(), projE: projection.view(),
                                                         projF: projection.view(), out: target)) {
                XCTAssertTrue("\($0)".hasPrefix("proj_e.shape[1]"), "\($0)")
            }
        }
    }
}
