/// A decode call (flash_attn_with_kvcache) as the decode engine sees it, after
/// the validating layer (AttnKit/KVCache.swift) has checked every index the
/// engine will form: key rows come from a contiguous or a paged cache, and
/// queries are already rotated, rounded to the cache dtype and scaled, in fp32.
///
/// Keys are numbered per sequence in "valid" space, j = 0 ..< keyCounts[b]:
/// key j of sequence b is cache position leftpad[b] + j. Query i of a sequence
/// with L queries and S keys may attend key j iff
///     i + (S − L) − windowLeft <= j <= i + (S − L) + windowRight
/// (−1 = unbounded), with softcap and then ALiBi (−slope·|i + S − L − j|) on
/// the scaled score, as in flash attention.
package struct DecodeProblem<E> {
    /// [B][Hk][group·L][D] fp32: query head kvHead·group + g, query i at row g·L + i.
    package let queries: UnsafePointer<Float>
    package let batch, keyHeads, group, queriesPerSequence, headDim, valueDim: Int
    /// K/V caches: element (slot, position, head, d) at slot·s[0] + position·s[1] + head·s[2] + d·s[3].
    package let keys: UnsafePointer<E>, keyStrides: (Int, Int, Int, Int)
    package let values: UnsafePointer<E>, valueStrides: (Int, Int, Int, Int)
    /// Per sequence: the cache slot (batch row of the cache; unused when paged),
    /// the first valid position and the number of valid keys.
    package let slots: [Int], leftpad: [Int], keyCounts: [Int]
    /// Paged caches: position p of sequence b is row p % pageSize of page
    /// pages[b·pagesPerSequence + p / pageSize]; pageSize 0 means not paged.
    package let pageSize: Int
    package let pages: [Int], pagesPerSequence: Int
    /// Per (sequence, query head), or empty: ALiBi slopes.
    package let slopes: [Float]
    package let windowLeft, windowRight: Int
    package let softcap: Float
    /// int8 caches: one fp32 scale per (slot or page, position, head) for K and
    /// for V, at slot·s.0 + position·s.1 + head·s.2; nil for float caches.
    package var keyScales: UnsafePointer<Float>? = nil, keyScaleStrides = (0, 0, 0)
    package var valueScales: UnsafePointer<Float>? = nil, valueScaleStrides = (0, 0, 0)

    package init(queries: UnsafePointer<Float>, batch: Int, keyHeads: Int, group: Int, queriesPerSequence: Int,
                 headDim: Int, valueDim: Int, keys: UnsafePointer<E>, keyStrides: (Int, Int, Int, Int),
                 values: UnsafePointer<E>, valueStrides: (Int, Int, Int, Int), slots: [Int], leftpad: [Int],
                 keyCounts: [Int], pageSize: Int, pages: [Int], pagesPerSequence: Int, slopes: [Float],
                 windowLeft: Int, windowRight: Int, softcap: Float) {
        self.queries = queries; self.batch = batch; self.keyHeads = keyHeads; self.group = group
        self.queriesPerSequence = queriesPerSequence; self.headDim = headDim; self.valueDim = valueDim
        self.keys = keys; self.keyStrides = keyStrides; self.values = values; self.valueStrides = valueStrides
        self.slots = slots; self.leftpad = leftpad; self.keyCounts = keyCounts
        self.pageSize = pageSize; self.pages = pages; self.pagesPerSequence = pagesPerSequence
        self.slopes = slopes; self.windowLeft = windowLeft; self.windowRight = windowRight; self.softcap = softcap
    }

    /// Query rows per (sequence, KV head): the whole group, every query position.
    @inlinable package var rowsPerTask: Int { group &* queriesPerSequence }

    /// The scale offset of (sequence, position, head 0) in a scale tensor with `strides`.
    @inlinable @inline(__always)
    package func scaleOffset(sequence: Int, position: Int, strides: (Int, Int, Int)) -> Int {
        rowOffset(sequence: sequence, position: position, head: 0, strides: (strides.0, strides.1, strides.2, 0))
    }

    /// The element offset of cache position `position` of sequence `sequence`, head `head`.
    @inlinable @inline(__always)
    package func rowOffset(sequence: Int, position: Int, head: Int, strides: (Int, Int, Int, Int)) -> Int {
        if pageSize > 0 {
            let page = pages[sequence &* pagesPerSequence &+ position / pageSize]
            return page &* strides.0 &+ (position % pageSize) &* strides.1 &+ head &* strides.2
        }
        return slots[sequence] &* strides.0 &+ position &* strides.1 &+ head &* strides.2
    }
}

/// One split of the keys of one sequence, for every KV head: keys [keyStart,
/// keyEnd) in valid space. At one cache position the rows of all KV heads sit
/// side by side (…, Hk, D), so a task streams memory in order instead of one
/// row per 4 KiB page. Its partial result goes to block `partial` of the partial
/// buffer: per KV head and query row, (running max m, sum l, Σ p·v over valueDim), fp32.
package struct DecodeTask {
    package let sequence, keyStart, keyEnd, partial: Int
    package init(sequence: Int, keyStart: Int, keyEnd: Int, partial: Int) {
        self.sequence = sequence; self.keyStart = keyStart; self.keyEnd = keyEnd; self.partial = partial
    }
}
