import AttnKitCore

extension EagerAttention {
    /// The eager backward: dq, dk, dv from the gradients of both eager outputs,
    ///
    ///     dOut:     [B, Sq, H*D]    the gradient of out, or nil (none flows through out)
    ///     dWeights: [B, H, Sq, Sk]  the gradient of weights, or nil
    ///     dQ, dK, dV: the shapes of q, k, v, written (never accumulated into)
    ///
    /// P is recomputed from q and k exactly as the forward computes it, then
    ///
    ///     dP = dOut·Vᵀ + dWeights,   dS = P ∘ (dP − rowsum(P ∘ dP)),
    ///     dq = dS·K/√D,   dk = dSᵀ·Q/√D,   dv = Pᵀ·dOut.
    ///
    /// Masked keys have P = 0 and rows with no allowed key get zero gradient.
    /// Parallel over (batch, head); each task owns its heads' dk and dv columns and
    /// sums over query blocks in order, so the bits do not depend on the thread count.
    @_specialize(where E == Float)
    @_specialize(where E == Double)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    public func backward<E: AttnStorage>(
        dOut: StridedTensor<E>?, dWeights: StridedTensor<E>?,
        q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>, keyMask: StridedTensor<UInt8>? = nil,
        dQ: MutableStridedTensor<E>, dK: MutableStridedTensor<E>, dV: MutableStridedTensor<E>,
        threads: Int = ThreadSettings.numThreads
    ) throws {
        let problem = try validateBackward(dOut: dOut, dWeights: dWeights, q: q, k: k, v: v, keyMask: keyMask,
                                           dQ: dQ, dK: dK, dV: dV)
        if E.self == Double.self {
            try EagerBackwardKernel<Double, E>(
                forward: EagerKernel(problem: problem, q: q, k: k, v: v, keyMask: keyMask, out: dQ, weights: nil),
                dOut: dOut, dWeights: dWeights, dQ: dQ, dK: dK, dV: dV).run(threads: threads)
        } else {
            try EagerBackwardKernel<Float, E>(
                forward: EagerKernel(problem: problem, q: q, k: k, v: v, keyMask: keyMask, out: dQ, weights: nil),
                dOut: dOut, dWeights: dWeights, dQ: dQ, dK: dK, dV: dV).run(threads: threads)
        }
    }

    /// The forward's input rules, then: dq, dk, dv of q's, k's and v's shapes and
    /// writable; dout of out's shape and dweights of weights' shape, any strides.
    func validateBackward<E>(dOut: StridedTensor<E>?, dWeights: StridedTensor<E>?,
                             q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
                             keyMask: StridedTensor<UInt8>?, dQ: MutableStridedTensor<E>,
                             dK: MutableStridedTensor<E>, dV: MutableStridedTensor<E>) throws -> Problem {
        let problem = try validateInputs(q: q, k: k, v: v, keyMask: keyMask)
        var pairs = [("dq", dQ.shape, dQ.strides, dQ.base != nil, "q", q.shape),
                     ("dk", dK.shape, dK.strides, dK.base != nil, "k", k.shape),
                     ("dv", dV.shape, dV.strides, dV.base != nil, "v", v.shape)]
        if let dOut { pairs.append(("dout", dOut.shape, dOut.strides, dOut.base != nil, "out", q.shape)) }
        try AttentionBackward.checkGradients(pairs, writable: [("dq", dQ.shape, dQ.strides),
                                                               ("dk", dK.shape, dK.strides),
                                                               ("dv", dV.shape, dV.strides)])
        if let dWeights {
            try validateWeightsShape("dweights", dWeights.shape, dWeights.strides, hasData: dWeights.base != nil, problem)
        }
        return problem
    }
}

/// The eager backward for one validated call: BLAS GEMMs on blocks of query rows.
/// T is the compute type (Float or Double), E the storage type.
struct EagerBackwardKernel<T: AttentionScalar, E: AttnStorage> {
    /// q, k, v, the key mask, and the forward's softmax (its `out` is unused).
    let forward: EagerKernel<T, E>
    let dOut, dWeights: StridedTensor<E>?
    let dQ, dK, dV: MutableStridedTensor<E>

    struct Scratch {
        let keys, values, dKeys, dValues, scores, dScores, queryTile, dOutTile, dQTile: UnsafeMutablePointer<T>
        let allowed: UnsafeMutablePointer<UInt8>
        let allowedPrefix: UnsafeMutablePointer<Int>
    }

    func run(threads: Int) throws {
        let p = forward.problem
        let tasks = p.batch &* p.numHeads
        // With no query rows and no keys there is no gradient element to write, however many
        // (batch, head) pairs there are: 2^40 empty batches must not take 2^40 steps.
        guard tasks > 0, p.seqQ > 0 || p.seqK > 0 else { return }
        _ = blasSingleThreaded
        let workers = Swift.max(1, Swift.min(threads, tasks))
        let rowsPerBlock = Swift.max(1, Swift.min(EagerKernel<T, E>.queryBlock, p.seqQ))
        let kvCount = try checkedProduct(Swift.max(p.seqK, 1), p.headDim, what: "k")
        let scoreCount = try checkedProduct(rowsPerBlock, Swift.max(p.seqK, 1), what: "scores")
        let tileCount = try checkedProduct(rowsPerBlock, p.headDim, what: "q")
        var buffers: [PerWorker<T>] = []
        defer { for buffer in buffers { buffer.deallocate() } }
        for count in [kvCount, kvCount, kvCount, kvCount, scoreCount, scoreCount, tileCount, tileCount, tileCount] {
            buffers.append(try PerWorker<T>(workers: workers, count: count))
        }
        let allowed = try PerWorker<UInt8>(workers: workers, count: p.seqK + 16)
        defer { allowed.deallocate() }
        let allowedPrefix = try PerWorker<Int>(workers: workers, count: p.seqK + 1)
        defer { allowedPrefix.deallocate() }
        let perWorker = buffers

        parallelFor(count: tasks, threads: workers) { task, worker in
            let b = perWorker.map { $0[worker] }
            let scratch = Scratch(keys: b[0], values: b[1], dKeys: b[2], dValues: b[3], scores: b[4], dScores: b[5],
                                  queryTile: b[6], dOutTile: b[7], dQTile: b[8],
                                  allowed: allowed[worker], allowedPrefix: allowedPrefix[worker])
            self.runHead(batch: task / p.numHeads, head: task % p.numHeads, scratch: scratch)
        }
    }

    func runHead(batch: Int, head: Int, scratch s: Scratch) {
        let p = forward.problem
        let dim = p.headDim
        let scale = 1 / T(dim).squareRoot()
        let maskBytes = forward.loadKeyMask(batch: batch, allowed: s.allowed, prefix: s.allowedPrefix)
        let queries = forward.headMatrix(forward.q, batch: batch, head: head)
        let keys = forward.blasOperand(forward.headMatrix(forward.k, batch: batch, head: head), rows: p.seqK,
                                       cols: dim, scratch: s.keys)
        let values = forward.blasOperand(forward.headMatrix(forward.v, batch: batch, head: head), rows: p.seqK,
                                         cols: dim, scratch: s.values)
        s.dKeys.update(repeating: 0, count: p.seqK &* dim)
        s.dValues.update(repeating: 0, count: p.seqK &* dim)

        var rowStart = 0
        while rowStart < p.seqQ {
            let rows = Swift.min(EagerKernel<T, E>.queryBlock, p.seqQ - rowStart)
            let keyEnd = p.causal ? Swift.min(p.seqK, rowStart + rows) : p.seqK
            let queryTile = forward.blasOperand(rowBlock(queries, from: rowStart), rows: rows, cols: dim,
                                                scratch: s.queryTile)
            let dOutTile = dOut.map {
                forward.blasOperand(rowBlock(forward.headMatrix($0, batch: batch, head: head), from: rowStart),
                                    rows: rows, cols: dim, scratch: s.dOutTile)
            }
            if keyEnd > 0 {
                forward.probabilities(rowStart: rowStart, rows: rows, keyEnd: keyEnd, queries: queryTile, keys: keys,
                                      maskBytes: maskBytes, prefix: s.allowedPrefix, into: s.scores)
                scoreGradient(batch: batch, head: head, rowStart: rowStart, rows: rows, keyEnd: keyEnd,
                              dOutTile: dOutTile, values: values, maskBytes: maskBytes, scratch: s)
                // dq = scale·dS·K;  dk += scale·dSᵀ·Q;  dv += Pᵀ·dO
                T.gemm(m: rows, n: dim, k: keyEnd, alpha: scale, a: s.dScores, lda: keyEnd, b: keys.0, ldb: keys.1,
                       transposeB: false, beta: 0, c: s.dQTile, ldc: dim)
                T.gemmTransposedA(m: keyEnd, n: dim, k: rows, alpha: scale, a: s.dScores, lda: keyEnd,
                                  b: queryTile.0, ldb: queryTile.1, beta: 1, c: s.dKeys, ldc: dim)
                if let dOutTile {
                    T.gemmTransposedA(m: keyEnd, n: dim, k: rows, alpha: 1, a: s.scores, lda: keyEnd,
                                      b: dOutTile.0, ldb: dOutTile.1, beta: 1, c: s.dValues, ldc: dim)
                }
            } else {
                s.dQTile.update(repeating: 0, count: rows &* dim)
            }
            store(s.dQTile, rows: rows, into: dQ, batch: batch, head: head, rowStart: rowStart)
            rowStart += rows
        }
        store(s.dKeys, rows: p.seqK, into: dK, batch: batch, head: head, rowStart: 0)
        store(s.dValues, rows: p.seqK, into: dV, batch: batch, head: head, rowStart: 0)
    }

    /// dS = P ∘ (dP − rowsum(P ∘ dP)) in `scratch.dScores`, with dP = dO·Vᵀ + dWeights.
    /// A row with no allowed key gets 0.
    func scoreGradient(batch: Int, head: Int, rowStart: Int, rows: Int, keyEnd: Int,
                       dOutTile: (UnsafePointer<T>, Int)?, values: (UnsafePointer<T>, Int),
                       maskBytes: UnsafePointer<UInt8>?, scratch s: Scratch) {
        if let dOutTile {
            T.gemm(m: rows, n: keyEnd, k: forward.problem.headDim, alpha: 1, a: dOutTile.0, lda: dOutTile.1,
                   b: values.0, ldb: values.1, transposeB: true, beta: 0, c: s.dScores, ldc: keyEnd)
        } else {
            s.dScores.update(repeating: 0, count: rows &* keyEnd)
        }
        for r in 0..<rows {
            let probabilities = s.scores + r &* keyEnd, gradient = s.dScores + r &* keyEnd
            if forward.allowedKeys(query: rowStart + r, hasMask: maskBytes != nil, prefix: s.allowedPrefix) == 0 {
                gradient.update(repeating: 0, count: keyEnd)
                continue
            }
            if let dWeights {
                let st = dWeights.strides
                let row = dWeights.data + (batch &* st[0] &+ head &* st[1] &+ (rowStart + r) &* st[2])
                for j in 0..<keyEnd { gradient[j] += forward.toCompute(row[j &* st[3]]) }
            }
            var dot: T = 0
            for j in 0..<keyEnd { dot += probabilities[j] * gradient[j] }
            for j in 0..<keyEnd { gradient[j] = probabilities[j] * (gradient[j] - dot) }
        }
    }

    func rowBlock(_ matrix: Strided2D<E>, from row: Int) -> Strided2D<E> {
        Strided2D(base: matrix.pointer(row, 0), rowStride: matrix.rowStride, colStride: matrix.colStride)
    }

    /// Rows rowStart..<rowStart+rows of head `head` of `tensor` ([B, S, H*D]) from a [rows × D] tile.
    func store(_ tile: UnsafePointer<T>, rows: Int, into tensor: MutableStridedTensor<E>, batch: Int, head: Int,
               rowStart: Int) {
        let dim = forward.problem.headDim
        let st = tensor.strides
        let base = tensor.data + (batch &* st[0] &+ rowStart &* st[1] &+ head &* dim &* st[2])
        for r in 0..<rows {
            let row = base + r &* st[1]
            for c in 0..<dim { row[c &* st[2]] = forward.toStorage(tile[r &* dim &+ c]) }
        }
    }
}
