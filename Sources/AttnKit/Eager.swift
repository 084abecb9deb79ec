import AttnKitCore
/// Eager attention: the textbook algorithm, with the score matrix
/// materialized for a block of query rows at a time.
///
///     q:       [B, Sq, H*D]
///     k, v:    [B, Sk, H*D]
///     keyMask: [B, Sk]        nonzero = the key may be attended (optional)
///     out:     [B, Sq, H*D]
///     weights: [B, H, Sq, Sk] the softmax probabilities (optional)
///
/// `out = softmax(q·kᵀ/sqrt(D) masked)·v` per (batch, head). Causal masking is
/// top-left: key j is allowed for query i iff j <= i. A query with no allowed
/// key gets 0 in `out` and `weights`.
public struct EagerAttention {
    public var numHeads: Int
    public var headDim: Int
    public var causal: Bool

    public init(numHeads: Int, headDim: Int, causal: Bool) {
        self.numHeads = numHeads; self.headDim = headDim; self.causal = causal
    }

    /// The shapes every eager entry point agrees on, checked once.
    struct Problem {
        let batch, seqQ, seqK, numHeads, headDim: Int
        let causal: Bool
    }

    func validate<T>(q: StridedTensor<T>, k: StridedTensor<T>, v: StridedTensor<T>,
                     keyMask: StridedTensor<UInt8>?, out: MutableStridedTensor<T>,
                     weights: MutableStridedTensor<T>?) throws -> Problem {
        let problem = try validateInputs(q: q, k: k, v: v, keyMask: keyMask)
        let layout = "[batch, seq, num_heads*head_dim]"
        try requireRank("out", out.shape, 3, layout)
        for axis in 0..<3 { try requireExtent("out", out.shape, axis: axis, equals: q.shape[axis], "q.shape[\(axis)]") }
        try validateLayout("out", shape: out.shape, strides: out.strides, hasData: out.base != nil)
        try validateWritable("out", shape: out.shape, strides: out.strides)
        if let weights {
            try validateWeightsShape("weights", weights.shape, weights.strides, hasData: weights.base != nil, problem)
            try validateWritable("weights", shape: weights.shape, strides: weights.strides)
        }
        return problem
    }

    /// A [batch, num_heads, seq_q, seq_k] tensor (weights, or their gradient).
    func validateWeightsShape(_ name: String, _ shape: [Int], _ strides: [Int], hasData: Bool, _ p: Problem) throws {
        try requireRank(name, shape, 4, "[batch, num_heads, seq_q, seq_k]")
        let expected = [p.batch, p.numHeads, p.seqQ, p.seqK]
        let names = ["q.shape[0]", "num_heads", "q.shape[1]", "k.shape[1]"]
        for axis in 0..<4 { try requireExtent(name, shape, axis: axis, equals: expected[axis], names[axis]) }
        try validateLayout(name, shape: shape, strides: strides, hasData: hasData)
    }

    /// q, k, v and the key mask against num_heads and head_dim.
    func validateInputs<T>(q: StridedTensor<T>, k: StridedTensor<T>, v: StridedTensor<T>,
                           keyMask: StridedTensor<UInt8>?) throws -> Problem {
        guard numHeads >= 1 else {
            throw AttnError.invalidArgument(argument: "num_heads", rule: "must be >= 1, got \(numHeads)")
        }
        guard headDim >= 1 else {
            throw AttnError.invalidArgument(argument: "head_dim", rule: "must be >= 1, got \(headDim)")
        }
        let (width, overflow) = numHeads.multipliedReportingOverflow(by: headDim)
        guard !overflow else {
            throw AttnError.overflow(argument: "num_heads*head_dim", rule: "overflows Int64")
        }
        let layout = "[batch, seq, num_heads*head_dim]"
        try requireRank("q", q.shape, 3, layout)
        try requireRank("k", k.shape, 3, layout)
        try requireRank("v", v.shape, 3, layout)
        let batch = q.shape[0], seqQ = q.shape[1], seqK = k.shape[1]
        let widthRule = "num_heads*head_dim (\(numHeads)*\(headDim))"
        try requireExtent("q", q.shape, axis: 2, equals: width, widthRule)
        try requireExtent("k", k.shape, axis: 2, equals: width, widthRule)
        try requireExtent("v", v.shape, axis: 2, equals: width, widthRule)
        try requireExtent("k", k.shape, axis: 0, equals: batch, "q.shape[0]")
        try requireExtent("v", v.shape, axis: 0, equals: batch, "q.shape[0]")
        try requireExtent("v", v.shape, axis: 1, equals: seqK, "k.shape[1]")
        try validateLayout("q", shape: q.shape, strides: q.strides, hasData: q.base != nil)
        try validateLayout("k", shape: k.shape, strides: k.strides, hasData: k.base != nil)
        try validateLayout("v", shape: v.shape, strides: v.strides, hasData: v.base != nil)
        if let keyMask {
            try requireRank("key_mask", keyMask.shape, 2, "[batch, seq_k]")
            try requireExtent("key_mask", keyMask.shape, axis: 0, equals: batch, "q.shape[0]")
            try requireExtent("key_mask", keyMask.shape, axis: 1, equals: seqK, "k.shape[1]")
            try validateLayout("key_mask", shape: keyMask.shape, strides: keyMask.strides, hasData: keyMask.base != nil)
        }
        // BLAS takes 32-bit sizes and leading dimensions.
        guard seqK <= Int(Int32.max), headDim <= Int(Int32.max) else {
            throw AttnError.invalidArgument(argument: "k", rule: "seq_k and head_dim must each fit in Int32 for BLAS")
        }
        return Problem(batch: batch, seqQ: seqQ, seqK: seqK, numHeads: numHeads, headDim: headDim, causal: causal)
    }

    /// Runs the optimized kernel: BLAS GEMMs on blocks of `queryBlock` rows,
    /// parallel over (batch, head).
    /// Storage E is f32, f64, f16 or bf16; f16 and bf16 compute in fp32 (BLAS sgemm).
    @_specialize(where E == Float)
    @_specialize(where E == Double)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    public func callAsFunction<E: AttnStorage>(
        q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
        keyMask: StridedTensor<UInt8>? = nil, out: MutableStridedTensor<E>,
        weights: MutableStridedTensor<E>? = nil, threads: Int = ThreadSettings.numThreads
    ) throws {
        let problem = try validate(q: q, k: k, v: v, keyMask: keyMask, out: out, weights: weights)
        if E.self == Double.self {
            try EagerKernel<Double, E>(problem: problem, q: q, k: k, v: v, keyMask: keyMask, out: out, weights: weights)
                .run(threads: threads)
        } else {
            try EagerKernel<Float, E>(problem: problem, q: q, k: k, v: v, keyMask: keyMask, out: out, weights: weights)
                .run(threads: threads)
        }
    }
}

/// The optimized eager kernel for one call. Every input was validated.
/// T is the compute type (Float or Double), E the storage type of the tensors.
struct EagerKernel<T: AttentionScalar, E: AttnStorage> {
    static var queryBlock: Int { 128 }

    let problem: EagerAttention.Problem
    let q, k, v: StridedTensor<E>
    let keyMask: StridedTensor<UInt8>?
    let out: MutableStridedTensor<E>
    let weights: MutableStridedTensor<E>?

    init(problem: EagerAttention.Problem, q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
         keyMask: StridedTensor<UInt8>?, out: MutableStridedTensor<E>, weights: MutableStridedTensor<E>?) {
        self.problem = problem; self.q = q; self.k = k; self.v = v
        self.keyMask = keyMask; self.out = out; self.weights = weights
    }

    /// Head `head` of `tensor` in batch `batch`: a [seq, D] matrix.
    func headMatrix(_ tensor: StridedTensor<E>, batch: Int, head: Int) -> Strided2D<E> {
        let offset = batch &* tensor.strides[0] &+ head &* problem.headDim &* tensor.strides[2]
        return Strided2D(base: tensor.data + offset, rowStride: tensor.strides[1], colStride: tensor.strides[2])
    }

    func run(threads: Int) throws {
        let p = problem
        let tasks = p.batch &* p.numHeads
        guard tasks > 0, p.seqQ > 0 else { return }
        _ = blasSingleThreaded
        let workers = Swift.max(1, Swift.min(threads, tasks))
        let rowsPerBlock = Swift.min(Self.queryBlock, p.seqQ)
        let kvCount = try checkedProduct(Swift.max(p.seqK, 1), p.headDim, what: "k")
        let scoreCount = try checkedProduct(rowsPerBlock, Swift.max(p.seqK, 1), what: "scores")
        let tileCount = try checkedProduct(rowsPerBlock, p.headDim, what: "q")
        let keys = try PerWorker<T>(workers: workers, count: kvCount)
        defer { keys.deallocate() }
        let values = try PerWorker<T>(workers: workers, count: kvCount)
        defer { values.deallocate() }
        let scores = try PerWorker<T>(workers: workers, count: scoreCount)
        defer { scores.deallocate() }
        let queryTiles = try PerWorker<T>(workers: workers, count: tileCount)
        defer { queryTiles.deallocate() }
        let outTiles = try PerWorker<T>(workers: workers, count: tileCount)
        defer { outTiles.deallocate() }
        let allowed = try PerWorker<UInt8>(workers: workers, count: p.seqK + 16)
        defer { allowed.deallocate() }
        let allowedPrefix = try PerWorker<Int>(workers: workers, count: p.seqK + 1)
        defer { allowedPrefix.deallocate() }

        parallelFor(count: tasks, threads: workers) { task, worker in
            let batch = task / p.numHeads, head = task % p.numHeads
            let scratch = Scratch(keys: keys[worker], values: values[worker], scores: scores[worker],
                                  queryTile: queryTiles[worker], outTile: outTiles[worker],
                                  allowed: allowed[worker], allowedPrefix: allowedPrefix[worker])
            self.runHead(batch: batch, head: head, scratch: scratch)
        }
    }

    struct Scratch {
        let keys, values, scores, queryTile, outTile: UnsafeMutablePointer<T>
        let allowed: UnsafeMutablePointer<UInt8>
        let allowedPrefix: UnsafeMutablePointer<Int>
    }

    /// A [rows, cols] matrix BLAS can read in place (already of the compute type,
    /// unit column stride, leading dimension in 32 bits and at least `cols`), or
    /// a packed, converted contiguous copy in `scratch`.
    func blasOperand(_ matrix: Strided2D<E>, rows: Int, cols: Int,
                     scratch: UnsafeMutablePointer<T>) -> (UnsafePointer<T>, Int) {
        if E.self == T.self && matrix.colStride == 1 && matrix.rowStride >= cols && matrix.rowStride <= Int(Int32.max) {
            return (UnsafeRawPointer(matrix.base).assumingMemoryBound(to: T.self), matrix.rowStride)
        }
        for row in 0..<rows {
            for col in 0..<cols { scratch[row &* cols &+ col] = toCompute(matrix.pointer(row, col).pointee) }
        }
        return (UnsafePointer(scratch), cols)
    }

    @inline(__always) func toCompute(_ value: E) -> T {
        T.self == Double.self ? T(E.toDouble(value)) : T(E.toFloat(value))
    }

    @inline(__always) func toStorage(_ value: T) -> E {
        T.self == Double.self ? E.fromDouble(Double(value)) : E.fromFloat(Float(value))
    }

    func runHead(batch: Int, head: Int, scratch: Scratch) {
        let p = problem
        let dim = p.headDim

        let maskBytes = loadKeyMask(batch: batch, allowed: scratch.allowed, prefix: scratch.allowedPrefix)

        let queries = headMatrix(q, batch: batch, head: head)
        let (keys, ldk) = blasOperand(headMatrix(k, batch: batch, head: head), rows: p.seqK, cols: dim,
                                      scratch: scratch.keys)
        let (values, ldv) = blasOperand(headMatrix(v, batch: batch, head: head), rows: p.seqK, cols: dim,
                                        scratch: scratch.values)
        let outOffset = batch &* out.strides[0] &+ head &* dim &* out.strides[2]
        let outBase = out.data + outOffset
        let outInPlace = E.self == T.self && out.strides[2] == 1 && out.strides[1] >= dim && out.strides[1] <= Int(Int32.max)

        var rowStart = 0
        while rowStart < p.seqQ {
            let rows = Swift.min(EagerKernel.queryBlock, p.seqQ - rowStart)
            // Causal rows in this block never look past key rowStart+rows-1.
            let keyEnd = p.causal ? Swift.min(p.seqK, rowStart + rows) : p.seqK
            let block = Strided2D(base: queries.pointer(rowStart, 0), rowStride: queries.rowStride,
                                  colStride: queries.colStride)
            let (queryTile, ldq) = blasOperand(block, rows: rows, cols: dim, scratch: scratch.queryTile)
            probabilities(rowStart: rowStart, rows: rows, keyEnd: keyEnd, queries: (queryTile, ldq), keys: (keys, ldk),
                          maskBytes: maskBytes, prefix: scratch.allowedPrefix, into: scratch.scores)
            if let weights {
                for r in 0..<rows {
                    writeWeights(scratch.scores + r &* keyEnd, validCount: keyEnd, batch: batch, head: head,
                                 query: rowStart + r, into: weights)
                }
            }
            // out[rows × D] = P·V
            let target = outInPlace
                ? UnsafeMutableRawPointer(outBase + rowStart &* out.strides[1]).assumingMemoryBound(to: T.self)
                : scratch.outTile
            let ldo = outInPlace ? out.strides[1] : dim
            if keyEnd > 0 {
                T.gemm(m: rows, n: dim, k: keyEnd, alpha: 1, a: scratch.scores, lda: keyEnd,
                       b: values, ldb: ldv, transposeB: false, beta: 0, c: target, ldc: ldo)
            } else {
                for r in 0..<rows { (target + r &* ldo).update(repeating: 0, count: dim) }
            }
            // A query with no allowed key is 0 even if v holds NaN or Inf.
            for r in 0..<rows where allowedKeys(query: rowStart + r, hasMask: maskBytes != nil,
                                                prefix: scratch.allowedPrefix) == 0 {
                (target + r &* ldo).update(repeating: 0, count: dim)
            }
            if !outInPlace {
                for r in 0..<rows {
                    let destination = outBase + (rowStart + r) &* out.strides[1]
                    for c in 0..<dim { destination[c &* out.strides[2]] = toStorage(target[r &* dim &+ c]) }
                }
            }
            rowStart += rows
        }
    }

    /// The key mask of `batch` as contiguous 0/1 bytes in `allowed`, and its prefix
    /// counts in `prefix`, so a row's number of allowed keys is one lookup; nil without a mask.
    func loadKeyMask(batch: Int, allowed: UnsafeMutablePointer<UInt8>,
                     prefix: UnsafeMutablePointer<Int>) -> UnsafePointer<UInt8>? {
        guard let keyMask else { return nil }
        let base = keyMask.data + batch &* keyMask.strides[0]
        prefix[0] = 0
        for j in 0..<problem.seqK {
            let bit: UInt8 = base[j &* keyMask.strides[1]] != 0 ? 1 : 0
            allowed[j] = bit
            prefix[j + 1] = prefix[j] + Int(bit)
        }
        return UnsafePointer(allowed)
    }

    /// P for query rows rowStart..<rowStart+rows over keys 0..<keyEnd into `scores`
    /// ([rows × keyEnd]): softmax(Q·Kᵀ/√D) over the allowed keys, 0 elsewhere and on
    /// rows with no allowed key.
    func probabilities(rowStart: Int, rows: Int, keyEnd: Int, queries: (UnsafePointer<T>, Int),
                       keys: (UnsafePointer<T>, Int), maskBytes: UnsafePointer<UInt8>?,
                       prefix: UnsafeMutablePointer<Int>, into scores: UnsafeMutablePointer<T>) {
        let p = problem
        if keyEnd > 0 {
            // scores[rows × keyEnd] = scale · Q·Kᵀ
            T.gemm(m: rows, n: keyEnd, k: p.headDim, alpha: 1 / T(p.headDim).squareRoot(), a: queries.0,
                   lda: queries.1, b: keys.0, ldb: keys.1, transposeB: true, beta: 0, c: scores, ldc: keyEnd)
        }
        for r in 0..<rows {
            let query = rowStart + r
            let row = scores + r &* keyEnd
            let rowEnd = p.causal ? Swift.min(p.seqK, query + 1) : p.seqK
            if allowedKeys(query: query, hasMask: maskBytes != nil, prefix: prefix) == 0 {
                row.update(repeating: 0, count: keyEnd)
            } else {
                T.softmaxRow(row, count: rowEnd, keyAllowed: maskBytes)
                (row + rowEnd).update(repeating: 0, count: keyEnd - rowEnd)
            }
        }
    }

    /// How many keys query `query` may attend.
    @inline(__always)
    func allowedKeys(query: Int, hasMask: Bool, prefix: UnsafeMutablePointer<Int>) -> Int {
        let rowEnd = problem.causal ? Swift.min(problem.seqK, query + 1) : problem.seqK
        return hasMask ? prefix[rowEnd] : rowEnd
    }

    func writeWeights(_ row: UnsafeMutablePointer<T>, validCount: Int, batch: Int, head: Int, query: Int,
                      into weights: MutableStridedTensor<E>) {
        let s = weights.strides
        let offset: Int = batch &* s[0] &+ head &* s[1] &+ query &* s[2]
        let base = weights.data + offset
        for j in 0..<problem.seqK { base[j &* s[3]] = toStorage(j < validCount ? row[j] : 0) }
    }
}
