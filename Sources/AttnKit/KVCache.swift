import AttnKitCore

/// flash_attn_with_kvcache (flash-attn 2.8) on the CPU: appends new keys and
/// values to a KV cache in place, then attends the queries to the cache.
///
///     q:       (B, Sq, Hq, D)
///     kCache:  (Bc, Sc, Hk, D)   or, paged, (blocks, pageSize, Hk, D)   written where k is appended
///     vCache:  (Bc, Sc, Hk, Dv)  or, paged, (blocks, pageSize, Hk, Dv)
///     k, v:    (B, Snew, Hk, D), (B, Snew, Hk, Dv): appended at positions cacheSeqlens[b] ..<
///     rotaryCos, rotarySin: (seqlenRo, rotaryDim / 2), applied to the new k and to q when k is given
///     out:     (B, Sq, Hq, Dv)    lse: (B, Hq, Sq) fp32
///
/// Sequence b reads cache row cacheBatchIndex[b] (default b), or the pages
/// blockTable[b] lists. Its keys are cache positions cacheLeftpad[b] ..<
/// cacheSeqlens[b] + Snew. Masks are flash attention's over those keys (causal
/// bottom-right, window, softcap, ALiBi). Rotary positions are cache positions:
/// new key t sits at cacheSeqlens[b] + t; query i at cacheSeqlens[b] + i when
/// causal or windowed, else every query at cacheSeqlens[b] (as flash-attn).
/// Every argument is checked before the first byte is appended.
public struct KVCacheAttention {
    public var causal: Bool
    /// nil: 1/sqrt(D).
    public var softmaxScale: Double?
    public var windowLeft: Int
    public var windowRight: Int
    public var softcap: Double
    /// GPT-J (pairs 2i, 2i+1) if true, GPT-NeoX (i, i + rotaryDim/2) if false.
    public var rotaryInterleaved: Bool
    /// Splits of each sequence's keys: 0 picks a fixed split size, n > 0 cuts
    /// the keys into n. Either way the split points depend on the shapes only,
    /// never on the thread count.
    public var numSplits: Int

    public init(causal: Bool = false, softmaxScale: Double? = nil, windowLeft: Int = -1, windowRight: Int = -1,
                softcap: Double = 0, rotaryInterleaved: Bool = true, numSplits: Int = 0) {
        self.causal = causal; self.softmaxScale = softmaxScale; self.windowLeft = windowLeft
        self.windowRight = windowRight; self.softcap = softcap; self.rotaryInterleaved = rotaryInterleaved
        self.numSplits = numSplits
    }

    /// A paged cache's page table: pagesPerSequence entries per sequence, row-major.
    public struct BlockTable {
        public let entries: [Int]
        public let pagesPerSequence: Int
        public init(entries: [Int], pagesPerSequence: Int) { self.entries = entries; self.pagesPerSequence = pagesPerSequence }
    }

    /// Keys per split when numSplits is 0 and the group has few query rows.
    static let automaticSplitKeys = 512

    public func callAsFunction<E: AttnStorage>(
        q: StridedTensor<E>, kCache: MutableStridedTensor<E>, vCache: MutableStridedTensor<E>,
        k: StridedTensor<E>? = nil, v: StridedTensor<E>? = nil,
        rotaryCos: StridedTensor<E>? = nil, rotarySin: StridedTensor<E>? = nil,
        cacheSeqlens: [Int], cacheBatchIndex: [Int]? = nil, cacheLeftpad: [Int]? = nil, blockTable: BlockTable? = nil,
        alibiSlopes: FlashAttention.Slopes? = nil, out: MutableStridedTensor<E>, lse: MutableStridedTensor<Float>? = nil,
        threads: Int = ThreadSettings.numThreads
    ) throws {
        let plan = try check(q: q, kCache: kCache, vCache: vCache, k: k, v: v, rotaryCos: rotaryCos, rotarySin: rotarySin,
                             cacheSeqlens: cacheSeqlens, cacheBatchIndex: cacheBatchIndex, cacheLeftpad: cacheLeftpad,
                             blockTable: blockTable, alibiSlopes: alibiSlopes, out: out, lse: lse)
        if let k, let v { append(plan, k: k, v: v, kCache: kCache, vCache: vCache, rotaryCos: rotaryCos, rotarySin: rotarySin) }
        try DecodeAttention.run(plan, q: q, kCache: kCache.readOnly, vCache: vCache.readOnly,
                                rotary: k == nil ? nil : rotaryCos.flatMap { cos in rotarySin.map { (cos, $0) } },
                                options: self, out: out, lse: lse, threads: threads)
    }

    /// The same call on an int8 cache: symmetric levels with one fp32 scale per
    /// (slot or page, position, KV head) for K and for V,
    ///     kScale, vScale: (Bc, Sc, Hk), or paged (blocks, pageSize, Hk)
    /// New tokens (q's dtype) are rotated in fp32, then quantized on append
    /// (scale = absmax/127 per token and head, levels rounded to nearest even);
    /// the engine dequantizes K and V rows on the fly.
    public func int8Cache<E: AttnStorage>(
        q: StridedTensor<E>, kCache: MutableStridedTensor<Int8>, kScale: MutableStridedTensor<Float>,
        vCache: MutableStridedTensor<Int8>, vScale: MutableStridedTensor<Float>,
        k: StridedTensor<E>? = nil, v: StridedTensor<E>? = nil,
        rotaryCos: StridedTensor<E>? = nil, rotarySin: StridedTensor<E>? = nil,
        cacheSeqlens: [Int], cacheBatchIndex: [Int]? = nil, cacheLeftpad: [Int]? = nil, blockTable: BlockTable? = nil,
        alibiSlopes: FlashAttention.Slopes? = nil, out: MutableStridedTensor<E>, lse: MutableStridedTensor<Float>? = nil,
        threads: Int = ThreadSettings.numThreads
    ) throws {
        let plan = try check(q: q, kCache: kCache, vCache: vCache, k: k, v: v, rotaryCos: rotaryCos, rotarySin: rotarySin,
                             cacheSeqlens: cacheSeqlens, cacheBatchIndex: cacheBatchIndex, cacheLeftpad: cacheLeftpad,
                             blockTable: blockTable, alibiSlopes: alibiSlopes, out: out, lse: lse)
        for (name, scale) in [("k_scale", kScale), ("v_scale", vScale)] {
            try requireRank(name, scale.shape, 3, blockTable == nil ? "(batch_cache, seq_cache, heads_k)" : "(num_blocks, page_block_size, heads_k)")
            for axis in 0..<3 { try requireExtent(name, scale.shape, axis: axis, equals: kCache.shape[axis], "k_cache.shape[\(axis)]") }
            try validateLayout(name, shape: scale.shape, strides: scale.strides, hasData: scale.base != nil)
            if plan.newTokens > 0 && plan.batch > 0 { try validateWritable(name, shape: scale.shape, strides: scale.strides) }
        }
        if let k, let v {
            appendQuantized(plan, k, into: kCache, scales: kScale, rotaryCos: rotaryCos, rotarySin: rotarySin)
            appendQuantized(plan, v, into: vCache, scales: vScale, rotaryCos: nil, rotarySin: nil)
        }
        try DecodeAttention.run(plan, q: q, kCache: kCache.readOnly, vCache: vCache.readOnly,
                                scales: (kScale.readOnly, vScale.readOnly),
                                rotary: k == nil ? nil : rotaryCos.flatMap { cos in rotarySin.map { (cos, $0) } },
                                options: self, out: out, lse: lse, threads: threads)
    }

    /// Quantizes new rows (rotated first when tables are given) into an int8 cache:
    /// per (token, head) scale = absmax/127 (1 for an all-zero row), levels rounded.
    func appendQuantized<E: AttnStorage>(_ plan: Plan, _ source: StridedTensor<E>, into cache: MutableStridedTensor<Int8>,
                                         scales: MutableStridedTensor<Float>, rotaryCos: StridedTensor<E>?,
                                         rotarySin: StridedTensor<E>?) {
        guard plan.newTokens > 0 else { return }
        let width = source.shape[3]
        var row = [Float](repeating: 0, count: width)
        for b in 0..<plan.batch {
            for t in 0..<plan.newTokens {
                let position = plan.seqlens[b] + t
                for h in 0..<plan.keyHeads {
                    let from = source.data + (b * source.strides[0] + t * source.strides[1] + h * source.strides[2])
                    for d in 0..<width { row[d] = E.toFloat(from[d * source.strides[3]]) }
                    if let cos = rotaryCos, let sin = rotarySin {
                        rotate(&row, position: position, rotaryDim: plan.rotaryDim, cos: cos, sin: sin)
                    }
                    var largest: Float = 0
                    for d in 0..<width { largest = row[d].isNaN ? .nan : Swift.max(largest, abs(row[d])) }
                    let scale: Float = largest == 0 ? 1 : largest / 127
                    let target = cache.data + Self.cacheOffset(plan, sequence: b, position: position, head: h, strides: cache.strides)
                    for d in 0..<width { target[d * cache.strides[3]] = Int8.fromFloat(row[d] / scale) }
                    let scaleStrides = [scales.strides[0], scales.strides[1], scales.strides[2]]
                    scales.data[Self.cacheOffset(plan, sequence: b, position: position, head: h, strides: scaleStrides)] = scale
                }
            }
        }
    }

    /// What the checks establish, for the append and the attention.
    struct Plan {
        let batch, queries, queryHeads, keyHeads, headDim, valueDim, newTokens: Int
        let slots, leftpad, seqlens: [Int]
        let pageSize: Int
        let blockTable: BlockTable?
        let rotaryDim: Int
        let scale: Double
        let slopes: [Float]
    }

    func check<E: AttnStorage, C>(
        q: StridedTensor<E>, kCache: MutableStridedTensor<C>, vCache: MutableStridedTensor<C>,
        k: StridedTensor<E>?, v: StridedTensor<E>?, rotaryCos: StridedTensor<E>?, rotarySin: StridedTensor<E>?,
        cacheSeqlens: [Int], cacheBatchIndex: [Int]?, cacheLeftpad: [Int]?, blockTable: BlockTable?,
        alibiSlopes: FlashAttention.Slopes?, out: MutableStridedTensor<E>, lse: MutableStridedTensor<Float>?
    ) throws -> Plan {
        guard E.self != Double.self else {
            throw AttnError.dtype(argument: "q.dtype", rule: "must be f32, f16 or bf16 for the KV-cache path (as flash-attn), got f64")
        }
        let layout = "(batch, seq, heads, head_dim)"
        try requireRank("q", q.shape, 4, layout)
        let cacheLayout = blockTable == nil ? "(batch_cache, seq_cache, heads_k, head_dim)" : "(num_blocks, page_block_size, heads_k, head_dim)"
        try requireRank("k_cache", kCache.shape, 4, cacheLayout)
        try requireRank("v_cache", vCache.shape, 4, cacheLayout)
        try requireRank("out", out.shape, 4, layout)
        let batch = q.shape[0], queries = q.shape[1], queryHeads = q.shape[2], headDim = q.shape[3]
        let keyHeads = kCache.shape[2], valueDim = vCache.shape[3]
        guard headDim >= 1 else { throw AttnError.shape(argument: "q.shape[3]", rule: "must be >= 1, got \(headDim)") }
        guard valueDim >= 1 else { throw AttnError.shape(argument: "v_cache.shape[3]", rule: "must be >= 1, got \(valueDim)") }
        try requireExtent("k_cache", kCache.shape, axis: 3, equals: headDim, "q.shape[3]")
        for axis in 0..<3 { try requireExtent("v_cache", vCache.shape, axis: axis, equals: kCache.shape[axis], "k_cache.shape[\(axis)]") }
        guard keyHeads >= 1, queryHeads % keyHeads == 0 else {
            throw AttnError.shape(argument: "k_cache.shape[2]", rule: "must divide the query heads (\(queryHeads)), got \(keyHeads)")
        }
        for (axis, expected, why) in [(0, batch, "q.shape[0]"), (1, queries, "q.shape[1]"), (2, queryHeads, "q.shape[2]"),
                                      (3, valueDim, "v_cache.shape[3]")] {
            try requireExtent("out", out.shape, axis: axis, equals: expected, why)
        }
        try validateLayout("q", shape: q.shape, strides: q.strides, hasData: q.base != nil)
        try validateLayout("k_cache", shape: kCache.shape, strides: kCache.strides, hasData: kCache.base != nil)
        try validateLayout("v_cache", shape: vCache.shape, strides: vCache.strides, hasData: vCache.base != nil)
        try validateLayout("out", shape: out.shape, strides: out.strides, hasData: out.base != nil)
        try validateWritable("out", shape: out.shape, strides: out.strides)
        if let lse {
            try requireRank("softmax_lse", lse.shape, 3, "(batch, heads, seq_q)")
            for (axis, expected, why) in [(0, batch, "q.shape[0]"), (1, queryHeads, "q.shape[2]"), (2, queries, "q.shape[1]")] {
                try requireExtent("softmax_lse", lse.shape, axis: axis, equals: expected, why)
            }
            try validateLayout("softmax_lse", shape: lse.shape, strides: lse.strides, hasData: lse.base != nil)
            try validateWritable("softmax_lse", shape: lse.shape, strides: lse.strides)
        }
        guard queries < Int(Int32.max) / 2 else { throw AttnError.invalidArgument(argument: "q", rule: "seq must be below 2^30") }

        // New tokens.
        guard (k == nil) == (v == nil) else {
            throw AttnError.invalidArgument(argument: k == nil ? "k" : "v", rule: "must be given together with \(k == nil ? "v" : "k")")
        }
        var newTokens = 0
        if let k, let v {
            try requireRank("k", k.shape, 4, layout)
            try requireRank("v", v.shape, 4, layout)
            newTokens = k.shape[1]
            for (axis, expected, why) in [(0, batch, "q.shape[0]"), (2, keyHeads, "k_cache.shape[2]"), (3, headDim, "q.shape[3]")] {
                try requireExtent("k", k.shape, axis: axis, equals: expected, why)
            }
            for (axis, expected, why) in [(0, batch, "q.shape[0]"), (1, newTokens, "k.shape[1]"), (2, keyHeads, "k_cache.shape[2]"),
                                          (3, valueDim, "v_cache.shape[3]")] {
                try requireExtent("v", v.shape, axis: axis, equals: expected, why)
            }
            try validateLayout("k", shape: k.shape, strides: k.strides, hasData: k.base != nil)
            try validateLayout("v", shape: v.shape, strides: v.strides, hasData: v.base != nil)
            if newTokens > 0 && batch > 0 {
                try validateWritable("k_cache", shape: kCache.shape, strides: kCache.strides)
                try validateWritable("v_cache", shape: vCache.shape, strides: vCache.strides)
            }
        }

        // Per-sequence indices.
        guard cacheSeqlens.count == batch else {
            throw AttnError.shape(argument: "cache_seqlens", rule: "must have one entry per batch row (\(batch)), got \(cacheSeqlens.count)")
        }
        let pageSize = blockTable == nil ? 0 : kCache.shape[1]
        let capacity: Int
        if let blockTable {
            guard cacheBatchIndex == nil else {
                throw AttnError.invalidArgument(argument: "cache_batch_idx", rule: "must be None with block_table (as flash-attn)")
            }
            guard cacheLeftpad == nil else {
                throw AttnError.invalidArgument(argument: "cache_leftpad", rule: "must be None with block_table (as flash-attn)")
            }
            guard pageSize >= 1 else { throw AttnError.shape(argument: "k_cache.shape[1]", rule: "(page_block_size) must be >= 1, got 0") }
            guard blockTable.pagesPerSequence >= 0, blockTable.entries.count == batch * blockTable.pagesPerSequence else {
                throw AttnError.shape(argument: "block_table", rule: "must have shape (batch (\(batch)), max_num_blocks_per_seq)")
            }
            capacity = try checkedProduct(blockTable.pagesPerSequence, pageSize, what: "block_table")
        } else {
            capacity = kCache.shape[1]
        }
        var slots = Array(0..<batch)
        if let cacheBatchIndex {
            guard cacheBatchIndex.count == batch else {
                throw AttnError.shape(argument: "cache_batch_idx", rule: "must have one entry per batch row (\(batch)), got \(cacheBatchIndex.count)")
            }
            for (b, slot) in cacheBatchIndex.enumerated() where slot < 0 || slot >= kCache.shape[0] {
                throw AttnError.invalidArgument(argument: "cache_batch_idx",
                                                rule: "entries must be in [0, \(kCache.shape[0])) (k_cache.shape[0]), got \(slot) at \(b)")
            }
            slots = cacheBatchIndex
        } else if blockTable == nil && batch > kCache.shape[0] && (queries > 0 || newTokens > 0) {
            throw AttnError.shape(argument: "k_cache.shape[0]", rule: "must be >= the batch (\(batch)) without cache_batch_idx, got \(kCache.shape[0])")
        }
        let leftpad = cacheLeftpad ?? [Int](repeating: 0, count: batch)
        guard leftpad.count == batch else {
            throw AttnError.shape(argument: "cache_leftpad", rule: "must have one entry per batch row (\(batch)), got \(leftpad.count)")
        }
        for b in 0..<batch {
            let length = cacheSeqlens[b]
            guard length >= 0 else {
                throw AttnError.invalidArgument(argument: "cache_seqlens", rule: "entries must be >= 0, got \(length) at \(b)")
            }
            guard length <= capacity, newTokens <= capacity - length else {
                throw AttnError.invalidArgument(argument: "cache_seqlens",
                    rule: "entry \(b) (\(length)) plus the new tokens (\(newTokens)) must fit the cache capacity (\(capacity))")
            }
            guard leftpad[b] >= 0 && leftpad[b] <= length else {
                throw AttnError.invalidArgument(argument: "cache_leftpad", rule: "entry \(b) must be in [0, cache_seqlens[\(b)] = \(length)], got \(leftpad[b])")
            }
            if let blockTable {
                let used = (length + newTokens + pageSize - 1) / pageSize
                var seen = Set<Int>()
                for page in 0..<used {
                    let entry = blockTable.entries[b * blockTable.pagesPerSequence + page]
                    guard entry >= 0 && entry < kCache.shape[0] else {
                        throw AttnError.invalidArgument(argument: "block_table",
                            rule: "entry [\(b), \(page)] must be in [0, \(kCache.shape[0])) (k_cache.shape[0]), got \(entry)")
                    }
                    guard seen.insert(entry).inserted else {
                        throw AttnError.invalidArgument(argument: "block_table",
                            rule: "row \(b) lists page \(entry) twice (a page may hold only one part of a sequence)")
                    }
                }
            }
        }

        // Rotary tables (used only when new keys are given, as flash-attn).
        var rotaryDim = 0
        if (rotaryCos == nil) != (rotarySin == nil) {
            throw AttnError.invalidArgument(argument: rotaryCos == nil ? "rotary_cos" : "rotary_sin",
                                            rule: "must be given together with \(rotaryCos == nil ? "rotary_sin" : "rotary_cos")")
        }
        if let cos = rotaryCos, let sin = rotarySin {
            try requireRank("rotary_cos", cos.shape, 2, "(seqlen_ro, rotary_dim / 2)")
            try requireRank("rotary_sin", sin.shape, 2, "(seqlen_ro, rotary_dim / 2)")
            for axis in 0..<2 { try requireExtent("rotary_sin", sin.shape, axis: axis, equals: cos.shape[axis], "rotary_cos.shape[\(axis)]") }
            try validateLayout("rotary_cos", shape: cos.shape, strides: cos.strides, hasData: cos.base != nil)
            try validateLayout("rotary_sin", shape: sin.shape, strides: sin.strides, hasData: sin.base != nil)
            rotaryDim = cos.shape[1] * 2
            guard rotaryDim >= 2 && rotaryDim <= headDim else {
                throw AttnError.shape(argument: "rotary_cos.shape[1]", rule: "(rotary_dim / 2) must be in [1, head_dim / 2 = \(headDim / 2)], got \(cos.shape[1])")
            }
            if k != nil {
                let local = causal || windowLeft >= 0 || windowRight >= 0
                for b in 0..<batch {
                    let lastKey = cacheSeqlens[b] + newTokens - 1
                    let lastQuery = cacheSeqlens[b] + (local ? Swift.max(queries - 1, 0) : 0)
                    let needed = Swift.max(lastKey, queries > 0 ? lastQuery : -1) + 1
                    guard needed <= cos.shape[0] else {
                        throw AttnError.shape(argument: "rotary_cos.shape[0]",
                                              rule: "(seqlen_ro) must cover position \(needed - 1) of batch row \(b), got \(cos.shape[0])")
                    }
                }
            }
        }

        // Options, as every flash entry checks them.
        guard softcap >= 0 && softcap.isFinite else {
            throw AttnError.invalidArgument(argument: "softcap", rule: "must be finite and >= 0, got \(softcap)")
        }
        guard windowLeft >= -1, windowRight >= -1 else {
            throw AttnError.invalidArgument(argument: "window_size", rule: "entries must be >= -1, got (\(windowLeft), \(windowRight))")
        }
        guard numSplits >= 0 else { throw AttnError.invalidArgument(argument: "num_splits", rule: "must be >= 0, got \(numSplits)") }
        let scale = softmaxScale ?? 1 / Double(headDim).squareRoot()
        try AttentionOptions.validateScale(scale, argument: "softmax_scale", computesInFloat: true)
        let slopes = try FlashAttention.SlopeTable(alibiSlopes, batch: batch, heads: queryHeads)
        var slopeValues: [Float] = []
        if alibiSlopes != nil && !out.shape.contains(0) {
            slopeValues.reserveCapacity(batch * queryHeads)
            for b in 0..<batch { for h in 0..<queryHeads { slopeValues.append(try slopes[b, h]) } }
        }
        return Plan(batch: batch, queries: queries, queryHeads: queryHeads, keyHeads: keyHeads, headDim: headDim,
                    valueDim: valueDim, newTokens: newTokens, slots: slots, leftpad: leftpad, seqlens: cacheSeqlens,
                    pageSize: pageSize, blockTable: blockTable, rotaryDim: rotaryDim, scale: scale, slopes: slopeValues)
    }

    /// Element offset of (sequence, cache position, head) in a cache.
    static func cacheOffset(_ plan: Plan, sequence: Int, position: Int, head: Int, strides: [Int]) -> Int {
        if let table = plan.blockTable {
            let page = table.entries[sequence * table.pagesPerSequence + position / plan.pageSize]
            return page * strides[0] + (position % plan.pageSize) * strides[1] + head * strides[2]
        }
        return plan.slots[sequence] * strides[0] + position * strides[1] + head * strides[2]
    }

    /// Writes k and v at cache positions cacheSeqlens[b] ..< + Snew, rotating k.
    /// Sequential, so duplicate cache_batch_idx entries end with the last row's tokens.
    func append<E: AttnStorage>(_ plan: Plan, k: StridedTensor<E>, v: StridedTensor<E>,
                                kCache: MutableStridedTensor<E>, vCache: MutableStridedTensor<E>,
                                rotaryCos: StridedTensor<E>?, rotarySin: StridedTensor<E>?) {
        guard plan.newTokens > 0 else { return }
        var row = [Float](repeating: 0, count: plan.headDim)
        for b in 0..<plan.batch {
            for t in 0..<plan.newTokens {
                let position = plan.seqlens[b] + t
                for h in 0..<plan.keyHeads {
                    let kSource = k.data + (b * k.strides[0] + t * k.strides[1] + h * k.strides[2])
                    let kTarget = kCache.data + Self.cacheOffset(plan, sequence: b, position: position, head: h, strides: kCache.strides)
                    for d in 0..<plan.headDim { row[d] = E.toFloat(kSource[d * k.strides[3]]) }
                    if let cos = rotaryCos, let sin = rotarySin {
                        rotate(&row, position: position, rotaryDim: plan.rotaryDim, cos: cos, sin: sin)
                        for d in 0..<plan.headDim {
                            kTarget[d * kCache.strides[3]] = d < plan.rotaryDim ? E.fromFloat(row[d]) : kSource[d * k.strides[3]]
                        }
                    } else {
                        for d in 0..<plan.headDim { kTarget[d * kCache.strides[3]] = kSource[d * k.strides[3]] }
                    }
                    let vSource = v.data + (b * v.strides[0] + t * v.strides[1] + h * v.strides[2])
                    let vTarget = vCache.data + Self.cacheOffset(plan, sequence: b, position: position, head: h, strides: vCache.strides)
                    for e in 0..<plan.valueDim { vTarget[e * vCache.strides[3]] = vSource[e * v.strides[3]] }
                }
            }
        }
    }

    /// Rotary embedding of the first `rotaryDim` dims of `row` at `position`, in
    /// fp32 as flash-attn computes it (x·cos − y·sin, x·sin + y·cos, unfused).
    func rotate<E: AttnStorage>(_ row: inout [Float], position: Int, rotaryDim: Int,
                                cos: StridedTensor<E>, sin: StridedTensor<E>) {
        let half = rotaryDim / 2
        for index in 0..<half {
            let c = E.toFloat(cos.data[position * cos.strides[0] + index * cos.strides[1]])
            let s = E.toFloat(sin.data[position * sin.strides[0] + index * sin.strides[1]])
            let (first, second) = rotaryInterleaved ? (2 * index, 2 * index + 1) : (index, index + half)
            let x = row[first], y = row[second]
            let xc = x * c, ys = y * s, xs = x * s, yc = y * c
            row[first] = xc - ys
            row[second] = xs + yc
        }
    }
}
