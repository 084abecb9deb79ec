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
/// The kernel streams the keys in tiles and keeps a running top-k per query: a min-heap of
/// the kept keys whose root, the worst of them, is the threshold. A vector scan rejects every
/// score at or below it; a better one replaces the root and sinks. No row of scores longer
/// than a tile is stored.
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

/// One kept key: its rank (the score, NaN ranked as +inf, −0 as +0), its score and its index.
/// For fp32, `order` packs (rank, −key) into one integer that sorts as the pair, so the heap
/// compares with one integer compare instead of two data-dependent branches.
struct TopKCandidate<T: AttentionScalar> {
    var rank: T
    var score: T
    var key: Int
    var order: UInt64

    @inline(__always) init(score: T, key: Int) {
        let rank = score.isNaN ? T.infinity : score + 0
        self.rank = rank; self.score = score; self.key = key
        if T.self == Float.self {
            let bits = unsafeBitCast(Float(rank), to: UInt32.self)
            let sortable = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
            order = UInt64(sortable) << 32 | UInt64(~UInt32(truncatingIfNeeded: key))
        } else {
            order = 0
        }
    }
}

/// The tiled kernel for one validated call; T is the compute type (Float, or Double for f64).
struct SparseTopKKernel<T: AttentionScalar, E: AttnStorage> {
    static var rowBlock: Int { 128 }
    static var keyTile: Int { 512 }

    let p: SparseTopKAttention.Problem
    let q, k, v: StridedTensor<E>
    let keyMask: StridedTensor<UInt8>?
    let out: MutableStridedTensor<E>

    /// Keys kept per query row.
    var capacity: Int { p.topK }

    struct Scratch {
        let queries, keys, scores, accumulator, thresholds: UnsafeMutablePointer<T>
        let candidates: UnsafeMutablePointer<TopKCandidate<T>>
        /// Per row: how many keys the heap holds.
        let count: UnsafeMutablePointer<Int>
        /// The positions a tile's vector scan found.
        let positions: UnsafeMutablePointer<Int32>
    }

    func run(threads: Int) throws {
        let s = p.shape
        let blocks = (s.seqQ + Self.rowBlock - 1) / Self.rowBlock
        let tasks = try checkedProduct(s.batch, s.headsQ, blocks, what: "q")
        guard tasks > 0, s.valueDim > 0 || s.seqK > 0 else { return }
        _ = blasSingleThreaded
        let workers = Swift.max(1, Swift.min(threads, tasks))
        let queries = try PerWorker<T>(workers: workers, count: try checkedProduct(Self.rowBlock, s.dim, what: "q"))
        defer { queries.deallocate() }
        let keys = try PerWorker<T>(workers: workers, count: try checkedProduct(Self.keyTile, s.dim, what: "k"))
        defer { keys.deallocate() }
        let scores = try PerWorker<T>(workers: workers, count: Self.rowBlock * Self.keyTile)
        defer { scores.deallocate() }
        let candidates = try PerWorker<TopKCandidate<T>>(workers: workers,
                                                         count: try checkedProduct(Self.rowBlock, capacity, what: "top_k"))
        defer { candidates.deallocate() }
        let rowState = try PerWorker<Int>(workers: workers, count: Self.rowBlock)
        defer { rowState.deallocate() }
        let positions = try PerWorker<Int32>(workers: workers, count: Self.keyTile)
        defer { positions.deallocate() }
        let vectors = try PerWorker<T>(workers: workers, count: Swift.max(s.valueDim, 1) &+ Self.rowBlock)
        defer { vectors.deallocate() }

        parallelFor(count: tasks, threads: workers) { task, worker in
            let block = task % blocks, head = (task / blocks) % s.headsQ, batch = task / blocks / s.headsQ
            let scratch = Scratch(queries: queries[worker], keys: keys[worker], scores: scores[worker],
                                  accumulator: vectors[worker], thresholds: vectors[worker] + Swift.max(s.valueDim, 1),
                                  candidates: candidates[worker], count: rowState[worker],
                                  positions: positions[worker])
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
                    offer(row: scratch.scores + r &* n, count: limit, firstKey: tileStart, mask: mask, slot: r,
                          scratch: scratch)
                }
            }
            tileStart += n
        }
        for r in 0..<rows { finish(batch: batch, head: head, kvHead: kvHead, query: rowStart + r, slot: r, scratch: scratch) }
    }

    /// Offers keys firstKey ..< firstKey+count, whose scores are `row`, to the heap of row `slot`.
    @inline(__always)
    func offer(row: UnsafeMutablePointer<T>, count: Int, firstKey: Int,
               mask: (UnsafePointer<UInt8>, Int)?, slot: Int, scratch: Scratch) {
        let heap = scratch.candidates + slot &* capacity
        var size = scratch.count[slot]
        var j = 0
        // Filling: every allowed key enters (even one scored −inf) until the heap holds topK.
        while j < count && size < capacity {
            let key = firstKey &+ j
            if mask.map({ $0.0[key &* $0.1] != 0 }) ?? true {
                let score = row[j]
                Self.push(heap, size: size, TopKCandidate(score: score, key: key))
                size &+= 1
            }
            j &+= 1
        }
        scratch.count[slot] = size
        guard size == capacity else { return }
        // The vector scan finds the scores above the root as it stands at the tile's start; each is
        // checked again against the root as it rises. Later keys lose ties, so only a strictly
        // better score (or NaN, which ranks first) enters.
        let found = collectAbove(UnsafePointer(row + j), count: count &- j, threshold: heap[0].rank,
                                 into: scratch.positions)
        for i in 0..<found {
            let at = j &+ Int(scratch.positions[i]), key = firstKey &+ at
            let entry = TopKCandidate(score: row[at], key: key)
            if entry.rank > heap[0].rank && (mask.map { $0.0[key &* $0.1] != 0 } ?? true) {
                Self.replaceRoot(heap, size: size, entry)
            }
        }
    }

    /// `a` ranks after `b` (nearer the heap's root): a lower score, or the same and a higher key.
    @inline(__always) static func worse(_ a: TopKCandidate<T>, _ b: TopKCandidate<T>) -> Bool {
        if T.self == Float.self { return a.order < b.order }
        return (a.rank < b.rank) || (a.rank == b.rank && a.key > b.key)
    }

    @inline(__always)
    static func push(_ heap: UnsafeMutablePointer<TopKCandidate<T>>, size: Int, _ entry: TopKCandidate<T>) {
        var child = size
        while child > 0 {
            let parent = (child &- 1) >> 1
            guard worse(entry, heap[parent]) else { break }
            heap[child] = heap[parent]
            child = parent
        }
        heap[child] = entry
    }

    /// Replaces the root (the worst kept key) by a better entry and lets it sink.
    @inline(__always)
    static func replaceRoot(_ heap: UnsafeMutablePointer<TopKCandidate<T>>, size: Int, _ entry: TopKCandidate<T>) {
        var parent = 0
        while true {
            let left = 2 &* parent &+ 1
            if left >= size { break }
            // The worse child, chosen without a branch on the data (setcc and add).
            var child = left
            if left &+ 1 < size { child &+= worse(heap[left &+ 1], heap[left]) ? 1 : 0 }
            guard worse(heap[child], entry) else { break }
            heap[parent] = heap[child]
            parent = child
        }
        heap[parent] = entry
    }

    /// Softmax over the kept scores and the weighted sum of their values, into out.
    func finish(batch: Int, head: Int, kvHead: Int, query: Int, slot: Int, scratch: Scratch) {
        let s = p.shape
        let buffer = scratch.candidates + slot &* capacity
        let size = scratch.count[slot]
        let accumulator = scratch.accumulator
        accumulator.update(repeating: 0, count: s.valueDim)
        if size > 0 {
            var rowMax = -T.infinity
            for i in 0..<size where !(buffer[i].score <= rowMax) { rowMax = buffer[i].score }   // NaN makes the row NaN
            if rowMax == -T.infinity { rowMax = 0 }
            var sum: T = 0
            for i in 0..<size {
                let weight = T.exponential(buffer[i].score - rowMax)
                buffer[i].rank = weight
                sum += weight
            }
            let values = headMatrix(v, batch, kvHead)
            for i in 0..<size {
                let weight = buffer[i].rank / sum
                let row = values.pointer(buffer[i].key, 0)
                for c in 0..<s.valueDim {
                    accumulator[c] += weight * toCompute(row[c &* values.colStride], as: T.self)
                }
            }
        }
        let target = out.data + (batch &* out.strides[0] &+ head &* out.strides[1] &+ query &* out.strides[2])
        for c in 0..<s.valueDim { target[c &* out.strides[3]] = toStorage(accumulator[c], as: E.self) }
    }
}
