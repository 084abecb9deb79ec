import XCTest
import AttnKit

/// The decode engine (KVCacheAttention) against its reference twin: the same
/// keys gathered out of the cache into a packed varlen batch, attended by the
/// flash reference (FlashAttention.varlen with useReference).
final class DecodeTests: XCTestCase {
    struct Case {
        let batch, queries, heads, keyHeads, dim, valueDim: Int
        let lengths: [Int], leftpad: [Int]?, slots: [Int]?
        let pageSize: Int?   // nil: contiguous (batch_cache, capacity, Hk, D)
        let capacity: Int
    }

    func check(_ c: Case, _ attention: KVCacheAttention, slopes: [Float]?, _ label: String) throws {
        var rng = SplitMix64(seed: UInt64(label.count))
        let pagesPerSequence = c.pageSize.map { (c.capacity + $0 - 1) / $0 } ?? 0
        let cacheRows = c.pageSize.map { c.batch * pagesPerSequence * $0 } ?? ((c.slots?.max() ?? (c.batch - 1)) + 1) * c.capacity
        let q: [Float] = randomArray(c.batch * c.queries * c.heads * c.dim, &rng)
        var kCache: [Float] = randomArray(cacheRows * c.keyHeads * c.dim, &rng)
        var vCache: [Float] = randomArray(cacheRows * c.keyHeads * c.valueDim, &rng)
        // Pages in reverse order, so no sequence's pages are adjacent in memory.
        let table = (0..<(c.batch * pagesPerSequence)).reversed().map { $0 }
        let cacheShape = c.pageSize.map { [c.batch * pagesPerSequence, $0] } ?? [cacheRows / c.capacity, c.capacity]
        var out = [Float](repeating: .nan, count: c.batch * c.queries * c.heads * c.valueDim)
        var lse = [Float](repeating: .nan, count: c.batch * c.heads * c.queries)
        try q.withUnsafeBufferPointer { qp in try kCache.withUnsafeMutableBufferPointer { kp in
        try vCache.withUnsafeMutableBufferPointer { vp in try out.withUnsafeMutableBufferPointer { o in
        try lse.withUnsafeMutableBufferPointer { l in try (slopes ?? []).withUnsafeBufferPointer { sp in
            try attention(q: StridedTensor(contiguous: qp.baseAddress, shape: [c.batch, c.queries, c.heads, c.dim]),
                          kCache: MutableStridedTensor(contiguous: kp.baseAddress, shape: cacheShape + [c.keyHeads, c.dim]),
                          vCache: MutableStridedTensor(contiguous: vp.baseAddress, shape: cacheShape + [c.keyHeads, c.valueDim]),
                          cacheSeqlens: c.lengths, cacheBatchIndex: c.slots, cacheLeftpad: c.leftpad,
                          blockTable: c.pageSize == nil ? nil : .init(entries: table, pagesPerSequence: pagesPerSequence),
                          alibiSlopes: slopes == nil ? nil : StridedTensor(contiguous: sp.baseAddress, shape: [c.heads]),
                          out: MutableStridedTensor(contiguous: o.baseAddress, shape: [c.batch, c.queries, c.heads, c.valueDim]),
                          lse: MutableStridedTensor(contiguous: l.baseAddress, shape: [c.batch, c.heads, c.queries]), threads: 2)
        }}}}}}

        // The twin: each sequence's keys gathered into a packed batch, through the flash reference.
        func cacheRow(_ b: Int, _ position: Int) -> Int {
            if let pageSize = c.pageSize { return table[b * pagesPerSequence + position / pageSize] * pageSize + position % pageSize }
            return (c.slots?[b] ?? b) * c.capacity + position
        }
        var packedK: [Float] = [], packedV: [Float] = [], cuK = [0]
        for b in 0..<c.batch {
            for position in (c.leftpad?[b] ?? 0)..<c.lengths[b] {
                let row = cacheRow(b, position)
                packedK += kCache[(row * c.keyHeads * c.dim)..<((row + 1) * c.keyHeads * c.dim)]
                packedV += vCache[(row * c.keyHeads * c.valueDim)..<((row + 1) * c.keyHeads * c.valueDim)]
            }
            cuK.append(packedK.count / (c.keyHeads * c.dim))
        }
        let cuQ = (0...c.batch).map { $0 * c.queries }
        var want = [Float](repeating: .nan, count: out.count)
        var wantLse = [Float](repeating: .nan, count: c.heads * c.batch * c.queries)
        let flash = FlashAttention(causal: attention.causal, softmaxScale: attention.softmaxScale,
                                   windowLeft: attention.windowLeft, windowRight: attention.windowRight,
                                   softcap: attention.softcap)
        try q.withUnsafeBufferPointer { qp in try packedK.withUnsafeBufferPointer { kp in
        try packedV.withUnsafeBufferPointer { vp in try want.withUnsafeMutableBufferPointer { o in
        try wantLse.withUnsafeMutableBufferPointer { l in try (slopes ?? []).withUnsafeBufferPointer { sp in
            try flash.varlen(q: StridedTensor(contiguous: qp.baseAddress, shape: [c.batch * c.queries, c.heads, c.dim]),
                             k: StridedTensor(contiguous: kp.baseAddress, shape: [cuK.last!, c.keyHeads, c.dim]),
                             v: StridedTensor(contiguous: vp.baseAddress, shape: [cuK.last!, c.keyHeads, c.valueDim]),
                             cuSeqlensQ: cuQ, cuSeqlensK: cuK, maxSeqlenQ: c.queries, maxSeqlenK: c.capacity,
                             alibiSlopes: slopes == nil ? nil : StridedTensor(contiguous: sp.baseAddress, shape: [c.heads]),
                             out: MutableStridedTensor(contiguous: o.baseAddress, shape: [c.batch * c.queries, c.heads, c.valueDim]),
                             lse: MutableStridedTensor(contiguous: l.baseAddress, shape: [c.heads, c.batch * c.queries]),
                             threads: 1, useReference: true)
        }}}}}}
        assertClose(out, want, tolerance: 2e-6, "out " + label)
        for b in 0..<c.batch {
            for h in 0..<c.heads {
                for i in 0..<c.queries {
                    let ours = lse[(b * c.heads + h) * c.queries + i], theirs = wantLse[h * c.batch * c.queries + b * c.queries + i]
                    XCTAssertEqual(ours.isInfinite, theirs.isInfinite, "empty row \(label)")
                    if theirs.isFinite { XCTAssertEqual(ours, theirs, accuracy: 2e-5 * max(1, abs(theirs)), "lse \(label)") }
                }
            }
        }
    }

    func testContiguousCacheWithLeftpadAndBatchIndexAgainstTwin() throws {
        let c = Case(batch: 3, queries: 3, heads: 8, keyHeads: 2, dim: 59, valueDim: 17, lengths: [0, 65, 700],
                     leftpad: [0, 3, 17], slots: [2, 0, 3], pageSize: nil, capacity: 720)
        try check(c, KVCacheAttention(causal: true), slopes: nil, "causal")
        try check(c, KVCacheAttention(causal: true, windowLeft: 40, numSplits: 3), slopes: nil, "window, 3 splits")
        try check(c, KVCacheAttention(softmaxScale: 0.3, softcap: 4), slopes: (0..<8).map { Float($0 + 1) / 16 }, "softcap, alibi")
    }

    func testPagedCacheAgainstTwin() throws {
        for pageSize in [1, 7, 64] {
            let c = Case(batch: 2, queries: 1, heads: 4, keyHeads: 1, dim: 64, valueDim: 64, lengths: [1, 600],
                         leftpad: nil, slots: nil, pageSize: pageSize, capacity: 640)
            try check(c, KVCacheAttention(causal: true), slopes: nil, "paged \(pageSize)")
            try check(c, KVCacheAttention(windowLeft: 100, windowRight: 0), slopes: nil, "paged \(pageSize), window")
        }
    }

    func testMergeOfSplitsIsTheSameForEveryThreadCount() throws {
        // Split points come from the shapes, never the thread count: 1, 2 and 5 threads give the same bits.
        let c = Case(batch: 1, queries: 1, heads: 8, keyHeads: 2, dim: 128, valueDim: 128, lengths: [3000],
                     leftpad: nil, slots: nil, pageSize: nil, capacity: 3000)
        var rng = SplitMix64(seed: 5)
        let q: [Float] = randomArray(c.heads * c.dim, &rng)
        var k: [Float] = randomArray(c.capacity * c.keyHeads * c.dim, &rng)
        var v: [Float] = randomArray(c.capacity * c.keyHeads * c.dim, &rng)
        var results: [[Float]] = []
        for threads in [1, 2, 5] {
            var out = [Float](repeating: 0, count: c.heads * c.dim)
            try q.withUnsafeBufferPointer { qp in try k.withUnsafeMutableBufferPointer { kp in
            try v.withUnsafeMutableBufferPointer { vp in try out.withUnsafeMutableBufferPointer { o in
                try KVCacheAttention()(q: StridedTensor(contiguous: qp.baseAddress, shape: [1, 1, c.heads, c.dim]),
                                       kCache: MutableStridedTensor(contiguous: kp.baseAddress, shape: [1, c.capacity, c.keyHeads, c.dim]),
                                       vCache: MutableStridedTensor(contiguous: vp.baseAddress, shape: [1, c.capacity, c.keyHeads, c.dim]),
                                       cacheSeqlens: [3000],
                                       out: MutableStridedTensor(contiguous: o.baseAddress, shape: [1, 1, c.heads, c.dim]),
                                       threads: threads)
            }}}}
            results.append(out)
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
    }
}
