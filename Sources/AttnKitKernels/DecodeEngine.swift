// Compiled once per ISA tier (see Package.swift). The decode engine: a few
// query rows against a long KV cache, bound by how fast K and V stream in.
#if canImport(Glibc)
import Glibc
#endif
import AttnKitCore
import _AttnKitShims

/// Split-KV decoding (flash-decoding). Each task is one split of one
/// (sequence, KV head): it streams that split's K and V rows once, from a
/// contiguous or a paged cache, and scores them against every query row of the
/// KV head's group at once, so GQA reads each row once per group. It leaves a
/// partial online-softmax state per query row; the caller merges the splits.
package enum DecodeEngine {
    /// Keys scored before their values are accumulated: one rescale per block.
    static let blockKeys = 32

    package static func run<E: AttnStorage>(_ problem: DecodeProblem<E>, tasks: [DecodeTask],
                                            partials: UnsafeMutablePointer<Float>, threads: Int) throws {
        let rows = problem.rowsPerTask
        let scores = try PerWorker<Float>(workers: Swift.max(1, Swift.min(threads, tasks.count)),
                                          count: rows &* blockKeys)
        defer { scores.deallocate() }
        tasks.withUnsafeBufferPointer { list in
            parallelFor(count: list.count, threads: threads) { index, worker in
                runTask(problem, list[index], partials: partials, scores: scores[worker])
            }
        }
    }

    /// The partial state of one task, per query row r: [m, l, acc[0 ..< valueDim]].
    @inline(__always)
    static func stride(_ problem: DecodeProblem<some Any>) -> Int { problem.valueDim &+ 2 }

    static func runTask<E: AttnStorage>(_ p: DecodeProblem<E>, _ task: DecodeTask,
                                        partials: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>) {
        let rows = p.rowsPerTask, width = p.valueDim &+ 2
        let state = partials + task.partial &* rows &* width
        for r in 0..<rows {
            let s = state + r &* width
            s[0] = -.infinity; s[1] = 0
            (s + 2).update(repeating: 0, count: p.valueDim)
        }
        let queryBase = p.queries + (task.sequence &* p.keyHeads &+ task.keyHead) &* rows &* p.headDim
        let keyCount = p.keyCounts[task.sequence], queries = p.queriesPerSequence
        let diagonal = keyCount &- queries
        let leftpad = p.leftpad[task.sequence]
        let keyColumn = p.keyStrides.3, valueColumn = p.valueStrides.3
        var blockStart = task.keyStart
        while blockStart < task.keyEnd {
            let count = Swift.min(blockKeys, task.keyEnd &- blockStart)
            // Scores of the block: scores[r·blockKeys + jj], −inf where excluded.
            for jj in 0..<count {
                let key = blockStart &+ jj
                let keyRow = p.keys + p.rowOffset(sequence: task.sequence, position: leftpad &+ key,
                                                  head: task.keyHead, strides: p.keyStrides)
                if jj &+ 8 < count {   // the row 8 keys ahead, while this one is scored
                    attn_shim_prefetch_l2(UnsafeRawPointer(p.keys + p.rowOffset(
                        sequence: task.sequence, position: leftpad &+ key &+ 8, head: task.keyHead, strides: p.keyStrides)))
                }
                for r in 0..<rows {
                    let i = r % queries, g = r / queries
                    var score = dot(queryBase + r &* p.headDim, keyRow, colStride: keyColumn, count: p.headDim)
                    if p.softcap > 0 { score = p.softcap * tanhf(score / p.softcap) }
                    let distance = i &+ diagonal &- key
                    if !p.slopes.isEmpty {
                        let slope = p.slopes[(task.sequence &* p.keyHeads &+ task.keyHead) &* p.group &+ g]
                        score -= slope * Float(distance.magnitude)
                    }
                    // Excluded: key > i + diagonal + windowRight, or key < i + diagonal − windowLeft.
                    if (p.windowRight >= 0 && -distance > p.windowRight) || (p.windowLeft >= 0 && distance > p.windowLeft) {
                        score = -.infinity
                    }
                    scores[r &* blockKeys &+ jj] = score
                }
            }
            // Online softmax per row: m is the running max, l the running sum of
            // e^(s − m); a larger max rescales l and the accumulator by e^(m_old − m_new).
            for r in 0..<rows {
                let s = state + r &* width, row = scores + r &* blockKeys
                var blockMax = -Float.infinity
                var sawNaN = false
                for jj in 0..<count {
                    let v = row[jj]
                    if v.isNaN { sawNaN = true }
                    blockMax = Swift.max(blockMax, v)
                }
                if sawNaN { blockMax = .nan }
                if blockMax == -.infinity {   // nothing allowed in this block for this row
                    for jj in 0..<count { row[jj] = 0 }
                    continue
                }
                let newMax = s[0].isNaN || blockMax.isNaN ? Float.nan : Swift.max(s[0], blockMax)
                let rescale = s[0] == -.infinity ? 0 : expf(s[0] - newMax)
                var sum: Float = 0
                for jj in 0..<count {
                    let weight = row[jj] == -.infinity ? 0 : expf(row[jj] - newMax)
                    row[jj] = weight
                    sum += weight
                }
                s[0] = newMax
                s[1] = s[1] * rescale + sum
                if rescale != 1 { scale(s + 2, by: rescale, count: p.valueDim) }
            }
            // acc[r] += Σ_jj p[r][jj]·V[jj]
            for jj in 0..<count {
                let key = blockStart &+ jj
                let valueRow = p.values + p.rowOffset(sequence: task.sequence, position: leftpad &+ key,
                                                      head: task.keyHead, strides: p.valueStrides)
                for r in 0..<rows {
                    let weight = scores[r &* blockKeys &+ jj]
                    if weight == 0 { continue }
                    accumulate(state + r &* width + 2, weight: weight, valueRow, colStride: valueColumn, count: p.valueDim)
                }
            }
            blockStart &+= count
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
            var qv = SIMD16<Float>()
            for lane in 0..<n { qv[lane] = q[d &+ lane] }
            acc0 = multiplyAdd(qv, FlashEngine.loadRow16(k + d &* colStride, colStride: colStride, count: n), acc0)
            d &+= n
        }
        return (acc0 + acc1).sum()
    }

    /// acc[e] += weight·v[e].
    @inline(__always)
    static func accumulate<E: AttnStorage>(_ acc: UnsafeMutablePointer<Float>, weight: Float, _ v: UnsafePointer<E>,
                                           colStride: Int, count: Int) {
        let w = SIMD16<Float>(repeating: weight)
        var e = 0
        while e &+ 16 <= count {
            store16(multiplyAdd(w, FlashEngine.loadRow16(v + e &* colStride, colStride: colStride, count: 16), load16(acc + e)),
                    acc + e)
            e &+= 16
        }
        while e < count { acc[e] += weight * E.toFloat(v[e &* colStride]); e &+= 1 }
    }

    @inline(__always)
    static func scale(_ acc: UnsafeMutablePointer<Float>, by factor: Float, count: Int) {
        let f = SIMD16<Float>(repeating: factor)
        var e = 0
        while e &+ 16 <= count { store16(load16(acc + e) * f, acc + e); e &+= 16 }
        while e < count { acc[e] *= factor; e &+= 1 }
    }
}
