import AttnKitCore

/// Linformer attention (docs/semantics.md §9): K and V projected along the sequence by
/// E and F (each [kp, S_max], sliced to the first Sk columns, plus an optional bias [kp]),
/// then softmax attention over the kp projected keys.
///
///     q:             [B, Hq, Sq, D]
///     k:             [B, Hk, Sk, D]     Hk divides Hq
///     v:             [B, Hk, Sk, Dv]
///     projE, projF:  [kp, S_max]        S_max >= Sk, kp >= 1
///     biasE, biasF:  [kp]               (optional)
///     out:           [B, Hq, Sq, Dv]
///
///     K' = E[:, :Sk]·K + biasE·1ᵀ,  V' = F[:, :Sk]·V + biasF·1ᵀ,  out = softmax(scale·Q·K'ᵀ)·V'
///
/// One pass: the projections of each (batch, kv head) are made once ([kp, D] and [kp, Dv]:
/// small enough to stay in cache), then each block of queries attends them with its
/// scores kept to a [rows, kp] tile.
public struct LinformerAttention {
    /// nil: 1/sqrt(D).
    public var scale: Double?

    public init(scale: Double? = nil) { self.scale = scale }

    struct Problem {
        let shape: HeadsProblem
        let projected: Int
        let scale: Double
    }

    func validate<E>(q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
                     projE: StridedTensor<E>, biasE: StridedTensor<E>?, projF: StridedTensor<E>, biasF: StridedTensor<E>?,
                     out: MutableStridedTensor<E>) throws -> Problem {
        let shape = try validateHeads(q: q, k: k, v: v, out: out)
        try requireRank("proj_e", projE.shape, 2, "[k, max_seq_len]")
        try requireRank("proj_f", projF.shape, 2, "[k, max_seq_len]")
        let projected = projE.shape[0]
        guard projected >= 1 else {
            throw AttnError.shape(argument: "proj_e.shape[0]", rule: "(the projected length k) must be >= 1, got 0")
        }
        try requireExtent("proj_f", projF.shape, axis: 0, equals: projected, "proj_e.shape[0]")
        for (name, matrix) in [("proj_e", projE), ("proj_f", projF)] where matrix.shape[1] < shape.seqK {
            throw AttnError.shape(argument: "\(name).shape[1]",
                                  rule: "(max_seq_len) must be >= the sequence length k.shape[2] (\(shape.seqK)), got \(matrix.shape[1])")
        }
        try validateLayout("proj_e", shape: projE.shape, strides: projE.strides, hasData: projE.base != nil)
        try validateLayout("proj_f", shape: projF.shape, strides: projF.strides, hasData: projF.base != nil)
        for (name, bias) in [("bias_e", biasE), ("bias_f", biasF)] {
            guard let bias else { continue }
            try requireRank(name, bias.shape, 1, "[k]")
            try requireExtent(name, bias.shape, axis: 0, equals: projected, "proj_e.shape[0]")
            try validateLayout(name, shape: bias.shape, strides: bias.strides, hasData: bias.base != nil)
        }
        guard projected <= Int(Int32.max) else {
            throw AttnError.invalidArgument(argument: "proj_e", rule: "shape[0] must fit in Int32 for BLAS")
        }
        let resolved = try resolveScale(scale, dim: shape.dim, fp32: E.self != Double.self)
        return Problem(shape: shape, projected: projected, scale: resolved)
    }

    @_specialize(where E == Float)
    @_specialize(where E == Double)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    public func callAsFunction<E: AttnStorage>(
        q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
        projE: StridedTensor<E>, biasE: StridedTensor<E>? = nil, projF: StridedTensor<E>, biasF: StridedTensor<E>? = nil,
        out: MutableStridedTensor<E>, threads: Int = ThreadSettings.numThreads
    ) throws {
        let p = try validate(q: q, k: k, v: v, projE: projE, biasE: biasE, projF: projF, biasF: biasF, out: out)
        if E.self == Double.self {
            try LinformerKernel<Double, E>(p: p, q: q, k: k, v: v, projections: [(projE, biasE), (projF, biasF)], out: out)
                .run(threads: threads)
        } else {
            try LinformerKernel<Float, E>(p: p, q: q, k: k, v: v, projections: [(projE, biasE), (projF, biasF)], out: out)
                .run(threads: threads)
        }
    }
}

/// The kernel for one validated call; T is the compute type.
struct LinformerKernel<T: AttentionScalar, E: AttnStorage> {
    static var rowBlock: Int { 64 }

    let p: LinformerAttention.Problem
    let q, k, v: StridedTensor<E>
    let projections: [(matrix: StridedTensor<E>, bias: StridedTensor<E>?)]
    let out: MutableStridedTensor<E>

    func run(threads: Int) throws {
        let s = p.shape, kp = p.projected
        let heads = try checkedProduct(s.batch, s.headsK, what: "k")
        let blocks = (s.seqQ + Self.rowBlock - 1) / Self.rowBlock
        let queryTasks = try checkedProduct(s.batch, s.headsQ, blocks, what: "q")
        guard queryTasks > 0, s.valueDim > 0 else { return }
        _ = blasSingleThreaded
        let workers = Swift.max(1, Swift.min(threads, Swift.max(queryTasks, 2 &* heads)))
        // E and F as contiguous compute-type [kp, Sk] matrices, converted once.
        let widths = [s.dim, s.valueDim]
        let packedCount = try checkedProduct(kp, Swift.max(s.seqK, 1), what: "proj_e")
        let packed = try PerWorker<T>(workers: 2, count: packedCount)
        defer { packed.deallocate() }
        var operands: [(UnsafePointer<T>, Int)] = []
        for (which, projection) in projections.enumerated() {
            let matrix = Strided2D(base: projection.matrix.data, rowStride: projection.matrix.strides[0],
                                   colStride: projection.matrix.strides[1])
            operands.append(blasOperand(matrix, rows: kp, cols: s.seqK, scratch: packed[which]))
        }
        // K' and V' of every (batch, kv head): [heads, kp, D] and [heads, kp, Dv].
        let projectedKeys = try Workspace<T>(count: try checkedProduct(heads, kp, Swift.max(s.dim, 1), what: "k"))
        defer { projectedKeys.deallocate() }
        let projectedValues = try Workspace<T>(count: try checkedProduct(heads, kp, s.valueDim, what: "v"))
        defer { projectedValues.deallocate() }
        let sources = try PerWorker<T>(workers: workers,
                                       count: try checkedProduct(Swift.max(s.seqK, 1), Swift.max(s.dim, s.valueDim), what: "k"))
        defer { sources.deallocate() }
        let targets = [projectedKeys.pointer, projectedValues.pointer]
        parallelFor(count: 2 &* heads, threads: workers) { task, worker in
            let which = task % 2, head = task / 2
            let source = headMatrix(which == 0 ? self.k : self.v, head / s.headsK, head % s.headsK)
            let width = widths[which]
            let target = targets[which] + head &* kp &* width
            if s.seqK > 0 && width > 0 {
                let (rows, ld) = blasOperand(source, rows: s.seqK, cols: width, scratch: sources[worker])
                T.gemm(m: kp, n: width, k: s.seqK, alpha: 1, a: operands[which].0, lda: operands[which].1,
                       b: rows, ldb: ld, transposeB: false, beta: 0, c: target, ldc: width)
            } else {
                target.update(repeating: 0, count: kp &* width)
            }
            if let bias = self.projections[which].bias {
                for row in 0..<kp {
                    let b: T = toCompute(bias.data[row &* bias.strides[0]], as: T.self)
                    for c in 0..<width { target[row &* width &+ c] += b }
                }
            }
        }
        // Attention of each block of queries over the kp projected keys.
        let queries = try PerWorker<T>(workers: workers, count: try checkedProduct(Self.rowBlock, Swift.max(s.dim, 1), what: "q"))
        defer { queries.deallocate() }
        let scores = try PerWorker<T>(workers: workers, count: try checkedProduct(Self.rowBlock, kp, what: "proj_e"))
        defer { scores.deallocate() }
        let results = try PerWorker<T>(workers: workers, count: try checkedProduct(Self.rowBlock, s.valueDim, what: "v"))
        defer { results.deallocate() }
        let scale = T(p.scale)
        parallelFor(count: queryTasks, threads: workers) { task, worker in
            let block = task % blocks, head = (task / blocks) % s.headsQ, batch = task / blocks / s.headsQ
            let rowStart = block &* Self.rowBlock, rows = Swift.min(Self.rowBlock, s.seqQ - rowStart)
            let kvIndex = batch &* s.headsK &+ head / s.group
            let queryRows = headMatrix(self.q, batch, head)
            let tile = Strided2D(base: queryRows.pointer(rowStart, 0), rowStride: queryRows.rowStride,
                                 colStride: queryRows.colStride)
            let score = scores[worker], result = results[worker]
            if s.dim > 0 {
                let (queryTile, ldq) = blasOperand(tile, rows: rows, cols: s.dim, scratch: queries[worker])
                T.gemm(m: rows, n: kp, k: s.dim, alpha: scale, a: queryTile, lda: ldq,
                       b: projectedKeys.pointer + kvIndex &* kp &* s.dim, ldb: s.dim, transposeB: true,
                       beta: 0, c: score, ldc: kp)
            } else {
                score.update(repeating: 0, count: rows &* kp)
            }
            for r in 0..<rows { T.softmaxRow(score + r &* kp, count: kp, keyAllowed: nil) }
            T.gemm(m: rows, n: s.valueDim, k: kp, alpha: 1, a: score, lda: kp,
                   b: projectedValues.pointer + kvIndex &* kp &* s.valueDim, ldb: s.valueDim, transposeB: false,
                   beta: 0, c: result, ldc: s.valueDim)
            for r in 0..<rows {
                let target = self.out.data + (batch &* self.out.strides[0] &+ head &* self.out.strides[1]
                    &+ (rowStart &+ r) &* self.out.strides[2])
                for c in 0..<s.valueDim {
                    target[c &* self.out.strides[3]] = toStorage(result[r &* s.valueDim &+ c], as: E.self)
                }
            }
        }
    }
}
