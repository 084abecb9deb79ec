import AttnKitCore
#if canImport(Glibc)
import Glibc
#endif

/// flash-attn's S_dmask (return_attn_probs with dropout): each unit's attention
/// probabilities with the dropout pattern in the sign bit.
///
///     target[i][j] = ±P[i][j] for i < queries, j < keys; 0 past them
///     P[i][j] = exp(s[i][j] − max_j s) / Σ_j exp(s[i][j] − max_j s)
///
/// P is normalized, unlike flash-attn's CUDA kernel (which writes exp(s − m)
/// against a running block maximum and documents that the scaling may be off).
/// The sign is negative exactly where the forward pass dropped that element,
/// since both read the same counter-based pattern (seed, unit, row, key); an
/// excluded key is ±0. Scores are computed in fp64 as AttentionReference does:
/// this is a testing aid, O(queries·keys·D) per unit.
enum AttentionProbabilities {
    /// Fills each unit's target ([rows][columns]).
    static func write<E: AttnStorage>(_ jobs: [(unit: AttentionUnit<E>, target: MutableStrided2D<E>)], rows: Int,
                                      columns: Int, options: AttentionOptions, threads: Int) throws {
        let longest = jobs.map(\.unit.keys).max() ?? 0
        let workers = Swift.max(1, Swift.min(threads, jobs.count))
        let scratch = try PerWorker<Double>(workers: workers, count: longest + 1)
        defer { scratch.deallocate() }
        jobs.withUnsafeBufferPointer { list in
            parallelFor(count: list.count, threads: workers) { index, worker in
                writeUnit(list[index].unit, into: list[index].target, rows: rows, columns: columns, options: options,
                          scores: scratch[worker])
            }
        }
    }

    static func writeUnit<E: AttnStorage>(_ unit: AttentionUnit<E>, into target: MutableStrided2D<E>, rows: Int,
                                          columns: Int, options: AttentionOptions, scores: UnsafeMutablePointer<Double>) {
        let dropKey = dropoutStreamKey(seed: options.seed, stream: unit.dropoutStream)
        let threshold = dropoutThreshold(options.dropoutP)
        for i in 0..<rows {
            guard i < unit.queries else {
                for j in 0..<columns { target.pointer(i, j).pointee = E.fromDouble(0) }
                continue
            }
            let (rowMax, anyAllowed) = AttentionReference.scoreRow(unit, options: options, row: i, into: scores)
            var sum = 0.0
            for j in 0..<unit.keys {
                scores[j] = anyAllowed && scores[j] != -.infinity ? exp(scores[j] - rowMax) : 0
                sum += scores[j]
            }
            for j in 0..<columns {
                guard j < unit.keys else { target.pointer(i, j).pointee = E.fromDouble(0); continue }
                var p = anyAllowed ? scores[j] / sum : 0
                if options.dropoutP > 0
                    && dropoutBits(key: dropKey, row: UInt32(truncatingIfNeeded: i), col: UInt32(truncatingIfNeeded: j)) < threshold {
                    p = -p   // dropped: the sign bit, as flash-attn encodes it (−0 for an excluded key)
                }
                target.pointer(i, j).pointee = E.fromDouble(p)
            }
        }
    }
}
