import AttnKitCore
#if canImport(Glibc)
import Glibc
#endif

/// The plain reference twin of FlashEngine: docs/semantics.md §0 written as loops
/// in Double, one query row at a time, with the whole score row materialized.
/// It also serves fp64 inputs, for which it is the kernel.
enum AttentionReference {
    @_specialize(where E == Float)
    @_specialize(where E == Double)
    static func run<E: AttnStorage>(units: [AttentionUnit<E>], options: AttentionOptions, threads: Int) throws {
        let longest = units.map(\.keys).max() ?? 0
        let workers = Swift.max(1, Swift.min(threads, units.count))
        let rowsScratch = try PerWorker<Double>(workers: workers, count: longest + 1)
        defer { rowsScratch.deallocate() }
        units.withUnsafeBufferPointer { list in
            parallelFor(count: list.count, threads: workers) { index, worker in
                runUnit(list[index], options: options, scores: rowsScratch[worker])
            }
        }
    }

    /// Row i's scores over every key (softcap, ALiBi, the additive mask, then
    /// the masks that exclude keys as −inf, docs/semantics.md §0) and their maximum;
    /// anyAllowed is false when every key is excluded. A NaN score makes the
    /// maximum NaN.
    static func scoreRow<E: AttnStorage>(_ unit: AttentionUnit<E>, options: AttentionOptions, row i: Int,
                                         into scores: UnsafeMutablePointer<Double>) -> (max: Double, anyAllowed: Bool) {
        let range = options.keyRange(row: i, diagonal: unit.diagonal, keys: unit.keys)
        var rowMax = -Double.infinity
        var anyAllowed = false
        for j in 0..<unit.keys {
            var allowed = j >= range.lo && j <= range.hi
            if case .keep(let keep) = unit.mask, keep.pointer(i, j).pointee == 0 { allowed = false }
            if !allowed { scores[j] = -.infinity; continue }
            var dot = 0.0
            for d in 0..<options.headDim {
                dot += E.toDouble(unit.q.pointer(i, d).pointee) * E.toDouble(unit.k.pointer(j, d).pointee)
            }
            var s = dot * options.exactScale
            if options.exactSoftcap > 0 { s = options.exactSoftcap * tanh(s / options.exactSoftcap) }
            if unit.alibiSlope != 0 { s -= Double(unit.alibiSlope) * Double(abs(i + unit.diagonal - j)) }
            if case .additive(let bias) = unit.mask { s += E.toDouble(bias.pointer(i, j).pointee) }
            scores[j] = s
            if s == -.infinity { continue }   // an additive −inf excludes the key like a mask
            anyAllowed = true
            if !(s <= rowMax) { rowMax = s }   // NaN makes the max NaN
        }
        return (rowMax, anyAllowed)
    }

    static func runUnit<E: AttnStorage>(_ unit: AttentionUnit<E>, options: AttentionOptions,
                                        scores: UnsafeMutablePointer<Double>) {
        let dropKey = dropoutStreamKey(seed: options.seed, stream: unit.dropoutStream)
        let threshold = dropoutThreshold(options.dropoutP)
        for i in 0..<unit.queries {
            let (rowMax, anyAllowed) = scoreRow(unit, options: options, row: i, into: scores)
            var sum = 0.0
            for j in 0..<unit.keys {
                scores[j] = anyAllowed && scores[j] != -.infinity ? exp(scores[j] - rowMax) : 0
                sum += scores[j]
            }
            for e in 0..<options.valueDim {
                var acc = 0.0
                if anyAllowed {
                    for j in 0..<unit.keys where scores[j] != 0 || scores[j].isNaN {
                        var p = scores[j] / sum
                        if options.dropoutP > 0 {
                            let bits = dropoutBits(key: dropKey, row: UInt32(truncatingIfNeeded: i), col: UInt32(truncatingIfNeeded: j))
                            p = bits < threshold ? 0 : p / (1 - Double(options.dropoutP))
                        }
                        acc += p * E.toDouble(unit.v.pointer(j, e).pointee)
                    }
                }
                unit.out.pointer(i, e).pointee = E.fromDouble(acc)
            }
            if let lse = unit.lse {
                lse[i &* unit.lseStride] = anyAllowed ? Float(rowMax + log(sum)) : options.emptyRowLSE
            }
        }
    }
}
