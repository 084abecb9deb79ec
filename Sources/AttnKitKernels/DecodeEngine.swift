// Compiled once per ISA tier (see Package.swift). The decode engine: a few
// query rows against a long KV cache, bound by how fast K and V stream in.
#if canImport(Glibc)
import Glibc
#endif
import AttnKitCore
import _AttnKitShims

/// Split-KV decoding (flash-decoding). Each task is one split of one
/// sequence's keys: it streams that split's K and V rows once, position by
/// position (all KV heads of a position are adjacent in the cache), from a
/// contiguous or a paged cache, and scores each KV head's row against every
/// query row of its group, so GQA reads each row once. It leaves a partial
/// online-softmax state per (KV head, query row); the caller merges the splits.
package enum DecodeEngine {
    /// Keys scored before their values are accumulated: one rescale per block.
    static let blockKeys = 32

    @_specialize(where E == Float)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    @_specialize(where E == Int8)
    package static func run<E: AttnStorage>(_ problem: DecodeProblem<E>, tasks: [DecodeTask],
                                            partials: UnsafeMutablePointer<Float>, threads: Int) throws {
        let rows = problem.keyHeads &* problem.rowsPerTask
        let workers = Swift.max(1, Swift.min(threads, tasks.count))
        let scores = try PerWorker<Float>(workers: workers, count: rows &* blockKeys)
        defer { scores.deallocate() }
        let offsets = try PerWorker<Int>(workers: workers, count: 2 &* blockKeys)
        defer { offsets.deallocate() }
        tasks.withUnsafeBufferPointer { list in
            parallelFor(count: list.count, threads: threads) { index, worker in
                runTask(problem, list[index], partials: partials, scores: scores[worker], offsets: offsets[worker])
            }
        }
    }

    /// One task: every KV head of one split of one sequence. Its partial state,
    /// per (KV head, query row) R = kvHead·rowsPerTask + r: [m, l, acc[0 ..< valueDim]].
    @inline(__always)
    static func runTask<E: AttnStorage>(_ p: DecodeProblem<E>, _ task: DecodeTask, partials: UnsafeMutablePointer<Float>,
                                        scores: UnsafeMutablePointer<Float>, offsets: UnsafeMutablePointer<Int>) {
        let valueOffsets = offsets, valueScaleOffsets = offsets + blockKeys
        let rowsPerHead = p.rowsPerTask, rows = p.keyHeads &* rowsPerHead, width = p.valueDim &+ 2
        let state = partials + task.partial &* rows &* width
        for r in 0..<rows {
            let s = state + r &* width
            s[0] = -.infinity; s[1] = 0
            (s + 2).update(repeating: 0, count: p.valueDim)
        }
        let queryBase = p.queries + task.sequence &* rows &* p.headDim
        let keyCount = p.keyCounts[task.sequence], queries = p.queriesPerSequence
        let diagonal = keyCount &- queries
        let leftpad = p.leftpad[task.sequence]
        let keyColumn = p.keyStrides.3, valueColumn = p.valueStrides.3, keyHeadStride = p.keyStrides.2
        let valueHeadStride = p.valueStrides.2
        let hasSlopes = !p.slopes.isEmpty, softcap = p.softcap
        let windowLeft = p.windowLeft, windowRight = p.windowRight
        // Whether the window excludes any (row, key) of this split; if not, and
        // without softcap or ALiBi, a score is just the scaled dot.
        let windowed = task.keyStart < task.keyEnd
            && ((windowRight >= 0 && task.keyEnd &- 1 &- diagonal > windowRight)
                || (windowLeft >= 0 && queries &- 1 &+ diagonal &- task.keyStart > windowLeft))
        let plain = !(softcap > 0) && !hasSlopes && !windowed
        var blockStart = task.keyStart
        while blockStart < task.keyEnd {
            let count = Swift.min(blockKeys, task.keyEnd &- blockStart)
            // Scores of the block: scores[R·blockKeys + jj], −inf where excluded.
            for jj in 0..<count {
                let key = blockStart &+ jj
                let position = leftpad &+ key
                let keyRows = p.keys + p.rowOffset(sequence: task.sequence, position: position, head: 0, strides: p.keyStrides)
                // The hardware prefetchers lose the stream at page boundaries (a
                // position's heads span a page, and a paged cache jumps): ask for this
                // position's V rows, read after the block's scores, and for the K rows
                // one block ahead.
                if key &+ blockKeys < task.keyEnd {
                    prefetchHeads(p.values + p.rowOffset(sequence: task.sequence, position: position &+ blockKeys, head: 0,
                                                         strides: p.valueStrides),
                                  heads: p.keyHeads, headStride: valueHeadStride, colStride: valueColumn, width: p.valueDim)
                    prefetchHeads(p.keys + p.rowOffset(sequence: task.sequence, position: position &+ blockKeys, head: 0,
                                                       strides: p.keyStrides),
                                  heads: p.keyHeads, headStride: keyHeadStride, colStride: keyColumn, width: p.headDim)
                }
                // int8 caches: this position's K scales, head by head.
                let keyScales = p.keyScales.map { $0 + p.scaleOffset(sequence: task.sequence, position: position,
                                                                      strides: p.keyScaleStrides) }
                for kvHead in 0..<p.keyHeads {
                    let keyRow = keyRows + kvHead &* keyHeadStride
                    let firstRow = kvHead &* rowsPerHead
                    // Softcap, ALiBi, then the window: row r = g·queries + i of this head, key `key`.
                    // (i, g) are counted, not divided out: an integer division per score cost more than the dot.
                    let keyScale = keyScales.map { $0[kvHead &* p.keyScaleStrides.2] } ?? 1
                    @inline(__always) func store(_ raw: Float, _ r: Int, _ i: Int, _ g: Int) {
                        var score = keyScales == nil ? raw : raw * keyScale
                        if plain { scores[(firstRow &+ r) &* blockKeys &+ jj] = score; return }
                        if softcap > 0 { score = softcap * tanhf(score / softcap) }
                        let distance = i &+ diagonal &- key
                        if hasSlopes {
                            let slope = p.slopes[(task.sequence &* p.keyHeads &+ kvHead) &* p.group &+ g]
                            score -= slope * Float(distance.magnitude)
                        }
                        // Excluded: key > i + diagonal + windowRight, or key < i + diagonal − windowLeft.
                        if (windowRight >= 0 && -distance > windowRight) || (windowLeft >= 0 && distance > windowLeft) {
                            score = -.infinity
                        }
                        scores[(firstRow &+ r) &* blockKeys &+ jj] = score
                    }
                    var r = 0, i = 0, g = 0
                    @inline(__always) func next() { r &+= 1; i &+= 1; if i == queries { i = 0; g &+= 1 } }
                    while r &+ 4 <= rowsPerHead {   // four query rows share each loaded K chunk
                        let s = dot4(queryBase + (firstRow &+ r) &* p.headDim, rowStride: p.headDim, keyRow,
                                     colStride: keyColumn, count: p.headDim)
                        store(s[0], r, i, g); next()
                        store(s[1], r, i, g); next()
                        store(s[2], r, i, g); next()
                        store(s[3], r, i, g); next()
                    }
                    while r < rowsPerHead {
                        store(dot(queryBase + (firstRow &+ r) &* p.headDim, keyRow, colStride: keyColumn, count: p.headDim),
                              r, i, g)
                        next()
                    }
                }
            }
            // Online softmax per row: m is the running max, l the running sum of
            // e^(s − m); a larger max rescales l and the accumulator by e^(m_old − m_new).
            // The block's scores past `count` are −inf, so whole vectors can be used.
            let chunks = (count &+ 15) >> 4
            for r in 0..<rows {
                let s = state + r &* width, row = scores + r &* blockKeys
                for jj in count..<(chunks &* 16) { row[jj] = -.infinity }
                var top = SIMD16<Float>(repeating: -.infinity)
                var nan = SIMDMask<SIMD16<Int32>>()
                for chunk in 0..<chunks {
                    let x = load16(row + chunk &* 16)
                    nan .|= x .!= x
                    top.replace(with: x, where: x .> top)   // a compare and a blend (pointwiseMax is per lane)
                }
                var blockMax = laneMax(top)
                if any(nan) { blockMax = .nan }
                if blockMax == -.infinity {   // nothing allowed in this block for this row
                    for jj in 0..<count { row[jj] = 0 }
                    continue
                }
                let newMax = s[0].isNaN || blockMax.isNaN ? Float.nan : Swift.max(s[0], blockMax)
                let rescale = s[0] == -.infinity ? 0 : (s[0] == newMax ? 1 : expf(s[0] - newMax))
                let shift = SIMD16<Float>(repeating: newMax)
                var sums = SIMD16<Float>()
                for chunk in 0..<chunks {
                    let weights = softmaxExp(load16(row + chunk &* 16) - shift)
                    store16(weights, row + chunk &* 16)
                    sums += weights
                }
                s[0] = newMax
                s[1] = s[1] * rescale + horizontalSum(sums)
                if rescale != 1 { scale(s + 2, by: rescale, count: p.valueDim) }
            }
            // acc[R] += Σ_jj p[R][jj]·V[jj] of R's KV head: per KV head and four rows,
            // 16 value dims at a time stay in registers across the block's keys, so
            // the accumulator is loaded and stored once per block, not once per key.
            // The block's V rows of one head (blockKeys·valueDim elements) stay in L1
            // across the dim chunks.
            for jj in 0..<count {
                let position = leftpad &+ blockStart &+ jj
                valueOffsets[jj] = p.rowOffset(sequence: task.sequence, position: position, head: 0, strides: p.valueStrides)
                valueScaleOffsets[jj] = p.valueScales == nil ? 0
                    : p.scaleOffset(sequence: task.sequence, position: position, strides: p.valueScaleStrides)
            }
            for kvHead in 0..<p.keyHeads {
                let firstRow = kvHead &* rowsPerHead
                let headValues = p.values + kvHead &* valueHeadStride
                if let valueScales = p.valueScales {
                    // int8 V: each key's scale folds into its nonzero weights (zero stays zero, even for a NaN scale).
                    let headScales = valueScales + kvHead &* p.valueScaleStrides.2
                    for r in 0..<rowsPerHead {
                        let row = scores + (firstRow &+ r) &* blockKeys
                        for jj in 0..<count where row[jj] != 0 { row[jj] *= headScales[valueScaleOffsets[jj]] }
                    }
                }
                var r = 0
                while r < rowsPerHead {
                    let rowCount = Swift.min(4, rowsPerHead &- r)
                    accumulateBlock(state + (firstRow &+ r) &* width + 2, rowStride: width, rows: rowCount,
                                    weights: scores + (firstRow &+ r) &* blockKeys, keys: count,
                                    values: headValues, offsets: valueOffsets, colStride: valueColumn, count: p.valueDim)
                    r &+= rowCount
                }
            }
            blockStart &+= count
        }
    }

    /// Asks for the cache lines of `elements` elements from `start` to come into L2.
    @inline(__always)
    static func prefetch<E>(_ start: UnsafePointer<E>, elements: Int) {
        let bytes = elements &* MemoryLayout<E>.stride
        let base = UnsafeRawPointer(start)
        var offset = 0
        while offset < bytes { attn_shim_prefetch_l2(base + offset); offset &+= 64 }
    }

    /// Prefetches the rows of `heads` heads of one position (unit-stride rows only).
    @inline(__always)
    static func prefetchHeads<E>(_ row: UnsafePointer<E>, heads: Int, headStride: Int, colStride: Int, width: Int) {
        guard colStride == 1 else { return }
        if headStride == width {
            prefetch(row, elements: heads &* width)
        } else {
            for head in 0..<heads { prefetch(row + head &* headStride, elements: width) }
        }
    }

    /// Σ_d q[d]·k[d], the query in fp32, the key row in the cache dtype.
    @inline(__always)
    static func dot<E: AttnStorage>(_ q: UnsafePointer<Float>, _ k: UnsafePointer<E>, colStride: Int, count: Int) -> Float {
        var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
        var d = 0
        while d &+ 32 <= count {
            acc0 = multiplyAdd(load16(q + d), FlashEngine.loadRow16(k + d &* colStride, colStride: colStride, count: 16), acc0)
            acc1 = multiplyAdd(load16(q + (d &+ 16)), FlashEngine.loadRow16(k + (d &+ 16) &* colStride, colStride: colStride,
                                                                            count: 16), acc1)
            d &+= 32
        }
        while d < count {
            let n = Swift.min(16, count &- d)
            acc0 = multiplyAdd(partialLoad(q + d, n), FlashEngine.loadRow16(k + d &* colStride, colStride: colStride, count: n),
                               acc0)
            d &+= n
        }
        return horizontalSum(acc0 + acc1)
    }

    /// The dots of four query rows (`rowStride` apart) with one key row, each K chunk loaded once.
    @inline(__always)
    static func dot4<E: AttnStorage>(_ q: UnsafePointer<Float>, rowStride: Int, _ k: UnsafePointer<E>, colStride: Int,
                                     count: Int) -> SIMD4<Float> {
        var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
        let q1 = q + rowStride, q2 = q1 + rowStride, q3 = q2 + rowStride
        var d = 0
        while d &+ 16 <= count {
            let kv = FlashEngine.loadRow16(k + d &* colStride, colStride: colStride, count: 16)
            a0 = multiplyAdd(load16(q + d), kv, a0); a1 = multiplyAdd(load16(q1 + d), kv, a1)
            a2 = multiplyAdd(load16(q2 + d), kv, a2); a3 = multiplyAdd(load16(q3 + d), kv, a3)
            d &+= 16
        }
        if d < count {
            let n = count &- d
            let kv = FlashEngine.loadRow16(k + d &* colStride, colStride: colStride, count: n)
            a0 = multiplyAdd(partialLoad(q + d, n), kv, a0); a1 = multiplyAdd(partialLoad(q1 + d, n), kv, a1)
            a2 = multiplyAdd(partialLoad(q2 + d, n), kv, a2); a3 = multiplyAdd(partialLoad(q3 + d, n), kv, a3)
        }
        // Reduce the four vectors together by halvings, pairing lanes: a vector add per
        // step for all four rows instead of a lane-by-lane sum each (SIMD16.sum() adds
        // the lanes one by one, in order: 15 dependent adds).
        let t0 = SIMD16(lowHalf: a0.lowHalf + a0.highHalf, highHalf: a1.lowHalf + a1.highHalf)
        let t1 = SIMD16(lowHalf: a2.lowHalf + a2.highHalf, highHalf: a3.lowHalf + a3.highHalf)
        let u = SIMD16(lowHalf: t0.evenHalf + t0.oddHalf, highHalf: t1.evenHalf + t1.oddHalf)   // 4 lanes per row
        let w = u.evenHalf + u.oddHalf                                                          // 2 lanes per row
        return w.evenHalf + w.oddHalf
    }

    /// Σ of the lanes as a tree of halvings (SIMD16.sum() adds the lanes one by one, in order).
    @inline(__always)
    static func horizontalSum(_ v: SIMD16<Float>) -> Float {
        let eight = v.lowHalf + v.highHalf, four = eight.lowHalf + eight.highHalf, two = four.lowHalf + four.highHalf
        return two[0] + two[1]
    }

    /// `count` (< 16) floats, zero past them: no load reaches past a row.
    @inline(__always)
    static func partialLoad(_ p: UnsafePointer<Float>, _ count: Int) -> SIMD16<Float> {
        var v = SIMD16<Float>()
        for lane in 0..<count { v[lane] = p[lane] }
        return v
    }

    /// acc[t][e] += Σ_jj weights[t·blockKeys + jj]·value[offsets[jj] + e·colStride] for t < rows (1...4),
    /// keys in order. Sixteen dims of the rows' accumulators stay in registers across
    /// the keys. A zero weight skips its row, so an excluded key's NaN or Inf value
    /// never reaches it; keys every row weighs take the branch-free loop.
    @inline(__always)
    static func accumulateBlock<E: AttnStorage>(_ acc: UnsafeMutablePointer<Float>, rowStride: Int, rows: Int,
                                                weights: UnsafePointer<Float>, keys: Int, values: UnsafePointer<E>,
                                                offsets: UnsafePointer<Int>, colStride: Int, count: Int) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 4 &* blockKeys) { buffer in
            withUnsafeTemporaryAllocation(of: Bool.self, capacity: blockKeys) { denseBuffer in
                // The rows' weights side by side per key, zero for rows past `rows`.
                let w = buffer.baseAddress!, dense = denseBuffer.baseAddress!
                var anyWeight = false
                for jj in 0..<keys {
                    var all = true
                    for t in 0..<4 {
                        let x: Float = t < rows ? weights[t &* blockKeys &+ jj] : 0
                        w[jj &* 4 &+ t] = x
                        if t < rows { all = all && x != 0; anyWeight = anyWeight || x != 0 }
                    }
                    dense[jj] = all
                }
                if !anyWeight { return }
                let acc1 = acc + (rows > 1 ? rowStride : 0), acc2 = acc + (rows > 2 ? 2 &* rowStride : 0)
                let acc3 = acc + (rows > 3 ? 3 &* rowStride : 0)
                var e = 0
                // The loop is written once and instantiated for unit-stride rows (a plain
                // vector load per key, no stride test in the loop) and for any stride.
                @inline(__always) func chunks(_ stride: Int) {
                    while e &+ 16 <= count {
                        var a0 = load16(acc + e), a1 = load16(acc1 + e), a2 = load16(acc2 + e), a3 = load16(acc3 + e)
                        for jj in 0..<keys {
                            let v = FlashEngine.loadRow16(values + (offsets[jj] &+ e &* stride), colStride: stride, count: 16)
                            let x = w + jj &* 4
                            if dense[jj] {
                                a0 = multiplyAdd(SIMD16(repeating: x[0]), v, a0)
                                a1 = multiplyAdd(SIMD16(repeating: x[1]), v, a1)
                                a2 = multiplyAdd(SIMD16(repeating: x[2]), v, a2)
                                a3 = multiplyAdd(SIMD16(repeating: x[3]), v, a3)
                            } else {
                                if x[0] != 0 { a0 = multiplyAdd(SIMD16(repeating: x[0]), v, a0) }
                                if x[1] != 0 { a1 = multiplyAdd(SIMD16(repeating: x[1]), v, a1) }
                                if x[2] != 0 { a2 = multiplyAdd(SIMD16(repeating: x[2]), v, a2) }
                                if x[3] != 0 { a3 = multiplyAdd(SIMD16(repeating: x[3]), v, a3) }
                            }
                        }
                        // Rows past `rows` alias row 0 and are stored first, so row 0's store wins.
                        if rows > 3 { store16(a3, acc3 + e) }
                        if rows > 2 { store16(a2, acc2 + e) }
                        if rows > 1 { store16(a1, acc1 + e) }
                        store16(a0, acc + e)
                        e &+= 16
                    }
                }
                if colStride == 1 { chunks(1) } else { chunks(colStride) }
                while e < count {
                    let targets = (acc + e, acc1 + e, acc2 + e, acc3 + e)
                    for jj in 0..<keys {
                        let v = E.toFloat(values[offsets[jj] &+ e &* colStride])
                        let x = w + jj &* 4
                        if x[0] != 0 { targets.0.pointee += x[0] * v }
                        if rows > 1 && x[1] != 0 { targets.1.pointee += x[1] * v }
                        if rows > 2 && x[2] != 0 { targets.2.pointee += x[2] * v }
                        if rows > 3 && x[3] != 0 { targets.3.pointee += x[3] * v }
                    }
                    e &+= 1
                }
            }
        }
    }

    @inline(__always)
    static func scale(_ acc: UnsafeMutablePointer<Float>, by factor: Float, count: Int) {
        let f = SIMD16<Float>(repeating: factor)
        var e = 0
        while e &+ 16 <= count { store16(load16(acc + e) * f, acc + e); e &+= 16 }
        while e < count { acc[e] *= factor; e &+= 1 }
    }
}
