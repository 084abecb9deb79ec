import AttnKitCore
#if canImport(Glibc)
import Glibc
#endif

/// Sparse top-k attention (docs/semantics.md §9): each query keeps the `topK` keys with the
/// highest scaled scores, softmaxes over those only and averages their values.
///
///     q:       [B, Hq, Sq, D]
///     k:       [B, Hk, Sk, D]    Hk divides Hq
///     v:       [B, Hk, Sk, Dv]
///     keyMask: [B, Sk]           nonzero = the key may be attended (optional)
///     out:     [B, Hq, Sq, Dv]
///
/// Ties at the k-th score go to the lower key index; a NaN score ranks above every number
/// (both as torch.topk). Causal is top-left (key j for query i iff j <= i). A query with
/// fewer than topK allowed keys keeps them all; one with none gets 0.
///
/// The kernel streams the keys in tiles of `keyTile` and keeps a running top-k per query
/// (a min-heap whose root is the worst kept key): a score at or below the root is
/// rejected with one compare, and no row of scores longer than a tile is ever stored.
public struct SparseTopKAttention {
    public var topK: Int
    public var causal: Bool
    /// nil: 1/sqrt(D).
    public var scale: Double?

    public init(topK: Int, causal: Bool = false, scale: Double? = nil) {
        self.topK = topK; self.causal = causal; self.scale = scale
    }

    struct Problem {
        let shape: HeadsProblem
        let topK: Int
        let causal: Bool
        let scale: Double
    }

    func validate<E>(q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>, keyMask: StridedTensor<UInt8>?,
                     out: MutableStridedTensor<E>) throws -> Problem {
        let shape = try validateHeads(q: q, k: k, v: v, out: out)
        guard topK >= 1 else {
            throw AttnError.invalidArgument(argument: "top_k", rule: "must be >= 1, got \(topK)")
        }
        guard topK <= shape.seqK else {
            throw AttnError.invalidArgument(argument: "top_k",
                                            rule: "must be <= the key length k.shape[2] (\(shape.seqK)), got \(topK)")
        }
        if let keyMask {
            try requireRank("key_mask", keyMask.shape, 2, "[batch, seq_k]")
            try requireExtent("key_mask", keyMask.shape, axis: 0, equals: shape.batch, "q.shape[0]")
            try requireExtent("key_mask", keyMask.shape, axis: 1, equals: shape.seqK, "k.shape[2]")
            try validateLayout("key_mask", shape: keyMask.shape, strides: keyMask.strides, hasData: keyMask.base != nil)
        }
        let resolved = try resolveScale(scale, dim: shape.dim, fp32: E.self != Double.self)
        return Problem(shape: shape, topK: topK, causal: causal, scale: resolved)
    }

    @_specialize(where E == Float)
    @_specialize(where E == Double)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    public func callAsFunction<E: AttnStorage>(
        q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>, keyMask: StridedTensor<UInt8>? = nil,
        out: MutableStridedTensor<E>, threads: Int = ThreadSettings.numThreads
    ) throws {
        let problem = try validate(q: q, k: k, v: v, keyMask: keyMask, out: out)
        if E.self == Double.self {
            try SparseTopKKernel<Double, E>(p: problem, q: q, k: k, v: v, keyMask: keyMask, out: out).run(threads: threads)
        } else {
            try SparseTopKKernel<Float, E>(p: problem, q: q, k: k, v: v, keyMask: keyMask, out: out).run(threads: threads)
        }
    }
}

/// The tiled kernel for one validated call; T is the compute type (Float, or Double for f64).
struct SparseTopKKernel<T: AttentionScalar, E: AttnStorage> {
    static var rowBlock: Int { 32 }
    static var keyTile: Int { 256 }

    let p: SparseTopKAttention.Problem
    let q, k, v: StridedTensor<E>
    let keyMask: StridedTensor<UInt8>?
    let out: MutableStridedTensor<E>

    struct Scratch {
        let queries, keys, scores, rank, raw, accumulator: UnsafeMutablePointer<T>
        let index: UnsafeMutablePointer<Int>
        let count: UnsafeMutablePointer<Int>
    }

    func run(threads: Int) throws {
        let s = p.shape
        let blocks = (s.seqQ + Self.rowBlock - 1) / Self.rowBlock
        let tasks = try checkedProduct(s.batch, s.headsQ, blocks, what: "q")
        guard tasks > 0, s.valueDim > 0 || s.seqK > 0 else { return }
        _ = blasSingleThreaded
        let workers = Swift.max(1, Swift.min(threads, tasks))
        let heapCount = try checkedProduct(Self.rowBlock, p.topK, what: "k")
        let queries = try PerWorker<T>(workers: workers, count: try checkedProduct(Self.rowBlock, s.dim, what: "q"))
        defer { queries.deallocate() }
        let keys = try PerWorker<T>(workers: workers, count: try checkedProduct(Self.keyTile, s.dim, what: "k"))
        defer { keys.deallocate() }
        let scores = try PerWorker<T>(workers: workers, count: Self.rowBlock * Self.keyTile)
        defer { scores.deallocate() }
        let rank = try PerWorker<T>(workers: workers, count: heapCount)
        defer { rank.deallocate() }
        let raw = try PerWorker<T>(workers: workers, count: heapCount)
        defer { raw.deallocate() }
        let index = try PerWorker<Int>(workers: workers, count: heapCount)
        defer { index.deallocate() }
        let count = try PerWorker<Int>(workers: workers, count: Self.rowBlock)
        defer { count.deallocate() }
        let accumulator = try PerWorker<T>(workers: workers, count: Swift.max(s.valueDim, 1))
        defer { accumulator.deallocate() }

        parallelFor(count: tasks, threads: workers) { task, worker in
            let block = task % blocks, head = (task / blocks) % s.headsQ, batch = task / blocks / s.headsQ
            let scratch = Scratch(queries: queries[worker], keys: keys[worker], scores: scores[worker],
                                  rank: rank[worker], raw: raw[worker], accumulator: accumulator[worker],
                                  index: index[worker], count: count[worker])
            self.runBlock(batch: batch, head: head, rowStart: block * Self.rowBlock, scratch: scratch)
        }
    }

    func runBlock(batch: Int, head: Int, rowStart: Int, scratch: Scratch) {
        let s = p.shape
        let rows = Swift.min(Self.rowBlock, s.seqQ - rowStart)
        let kvHead = head / s.group
        let queryRows = headMatrix(q, batch, head)
        let keyRows = headMatrix(k, batch, kvHead)
        let block = Strided2D(base: queryRows.pointer(rowStart, 0), rowStride: queryRows.rowStride,
                              colStride: queryRows.colStride)
        let (queryTile, ldq) = blasOperand(block, rows: rows, cols: s.dim, scratch: scratch.queries)
        scratch.count.update(repeating: 0, count: rows)
        let keyEnd = p.causal ? Swift.min(s.seqK, rowStart + rows) : s.seqK
        let mask = keyMask.map { ($0.data + batch &* $0.strides[0], $0.strides[1]) }
        let scale = T(p.scale)

        var tileStart = 0
        while tileStart < keyEnd {
            let n = Swift.min(Self.keyTile, keyEnd - tileStart)
            let tile = Strided2D(base: keyRows.pointer(tileStart, 0), rowStride: keyRows.rowStride,
                                 colStride: keyRows.colStride)
            let (keyTile, ldk) = blasOperand(tile, rows: n, cols: s.dim, scratch: scratch.keys)
            if s.dim > 0 {
                T.gemm(m: rows, n: n, k: s.dim, alpha: scale, a: queryTile, lda: ldq, b: keyTile, ldb: ldk,
                       transposeB: true, beta: 0, c: scratch.scores, ldc: n)
            } else {
                scratch.scores.update(repeating: 0, count: rows &* n)
            }
            for r in 0..<rows {
                let limit = p.causal ? Swift.min(n, rowStart + r + 1 - tileStart) : n
                if limit > 0 {
                    offer(row: scratch.scores + r &* n, count: limit, firstKey: tileStart, mask: mask,
                          heap: r, scratch: scratch)
                }
            }
            tileStart += n
        }
        for r in 0..<rows { finish(batch: batch, head: head, kvHead: kvHead, query: rowStart + r, heap: r, scratch: scratch) }
    }

    /// Offers keys firstKey ..< firstKey+count, whose scores are `row`, to heap `heap`.
    @inline(__always)
    func offer(row: UnsafeMutablePointer<T>, count: Int, firstKey: Int,
               mask: (UnsafePointer<UInt8>, Int)?, heap: Int, scratch: Scratch) {
        let capacity = p.topK
        let rank = scratch.rank + heap &* capacity, raw = scratch.raw + heap &* capacity
        let index = scratch.index + heap &* capacity
        var size = scratch.count[heap]
        var j = 0
        // Filling: every allowed key enters until the heap holds topK.
        while j < count && size < capacity {
            if mask.map({ $0.0[(firstKey &+ j) &* $0.1] != 0 }) ?? true {
                push(rank: rank, raw: raw, index: index, size: size, score: row[j], key: firstKey &+ j)
                size += 1
            }
            j += 1
        }
        scratch.count[heap] = size
        guard size == capacity else { return }
        var threshold = rank[0]
        while j < count {
            let score = row[j]
            // Later keys lose ties, so only a strictly better score (or NaN, which ranks first) enters.
            if !(score <= threshold) {
                let key = firstKey &+ j
                let ranked = score.isNaN ? T.infinity : score
                if ranked > threshold && (mask.map { $0.0[key &* $0.1] != 0 } ?? true) {
                    replaceRoot(rank: rank, raw: raw, index: index, size: size, rank: ranked, score: score, key: key)
                    threshold = rank[0]
                }
            }
            j += 1
        }
    }

    /// Heap order: `a` is worse than `b` (nearer the root).
    @inline(__always) static func worse(_ ra: T, _ ia: Int, _ rb: T, _ ib: Int) -> Bool {
        ra < rb || (ra == rb && ia > ib)
    }

    @inline(__always)
    func push(rank: UnsafeMutablePointer<T>, raw: UnsafeMutablePointer<T>, index: UnsafeMutablePointer<Int>,
              size: Int, score: T, key: Int) {
        let ranked = score.isNaN ? T.infinity : score
        var child = size
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.worse(ranked, key, rank[parent], index[parent]) else { break }
            rank[child] = rank[parent]; raw[child] = raw[parent]; index[child] = index[parent]
            child = parent
        }
        rank[child] = ranked; raw[child] = score; index[child] = key
    }

    @inline(__always)
    func replaceRoot(rank: UnsafeMutablePointer<T>, raw: UnsafeMutablePointer<T>, index: UnsafeMutablePointer<Int>,
                     size: Int, rank ranked: T, score: T, key: Int) {
        var parent = 0
        while true {
            var child = 2 &* parent &+ 1
            if child >= size { break }
            if child &+ 1 < size && Self.worse(rank[child &+ 1], index[child &+ 1], rank[child], index[child]) {
                child &+= 1
            }
            guard Self.worse(rank[child], index[child], ranked, key) else { break }
            rank[parent] = rank[child]; raw[parent] = raw[child]; index[parent] = index[child]
            parent = child
        }
        rank[parent] = ranked; raw[parent] = score; index[parent] = key
    }

    /// Softmax over the kept scores and the weighted sum of their values, into out.
    func finish(batch: Int, head: Int, kvHead: Int, query: Int, heap: Int, scratch: Scratch) {
        let s = p.shape
        let size = scratch.count[heap]
        let raw = scratch.raw + heap &* p.topK, index = scratch.index + heap &* p.topK
        let accumulator = scratch.accumulator
        accumulator.update(repeating: 0, count: s.valueDim)
        if size > 0 {
            var rowMax = -T.infinity
            for i in 0..<size where !(raw[i] <= rowMax) { rowMax = raw[i] }   // NaN makes the row NaN
            if rowMax == -T.infinity { rowMax = 0 }
            var sum: T = 0
            let values = headMatrix(v, batch, kvHead)
            for i in 0..<size {
                let weight = T.exponential(raw[i] - rowMax)
                raw[i] = weight
                sum += weight
            }
            for i in 0..<size {
                let weight = raw[i] / sum
                let row = values.pointer(index[i], 0)
                for c in 0..<s.valueDim {
                    accumulator[c] += weight * toCompute(row[c &* values.colStride], as: T.self)
                }
            }
        }
        let target = out.data + (batch &* out.strides[0] &+ head &* out.strides[1] &+ query &* out.strides[2])
        for c in 0..<s.valueDim { target[c &* out.strides[3]] = toStorage(accumulator[c], as: E.self) }
    }
}
