import AttnKitCore
#if canImport(Glibc)
import Glibc
#endif

/// The plain reference twin of BackwardEngine: the gradients of docs/semantics.md §0
/// written as loops in Double, one query row at a time with the whole score
/// row materialized. It recomputes the softmax itself (it never reads the
/// forward's O or lse), so it checks the engine rather than repeating it. It
/// also serves fp64 inputs, for which it is the kernel.
enum BackwardReference {
    @_specialize(where E == Float)
    @_specialize(where E == Double)
    static func run<E: AttnStorage>(_ problem: BackwardProblem<E>, options: AttentionOptions, threads: Int) throws {
        let longest = problem.units.map(\.forward.keys).max() ?? 0
        let dim = options.headDim, valueDim = options.valueDim
        let workers = Swift.max(1, Swift.min(threads, problem.groups.count))
        // Per worker: scores, probabilities, dP, and the group's dK and dV.
        let rowFloats = 3 * (longest + 1)
        let scratch = try PerWorker<Double>(workers: workers,
                                            count: rowFloats + (longest + 1) * (dim + valueDim) + dim + 2 * valueDim)
        defer { scratch.deallocate() }
        problem.units.withUnsafeBufferPointer { units in
            problem.groups.withUnsafeBufferPointer { groups in
                parallelFor(count: groups.count, threads: workers) { index, worker in
                    runGroup(units, group: groups[index], options: options, longest: longest, scratch: scratch[worker])
                }
            }
        }
    }

    static func runGroup<E: AttnStorage>(_ units: UnsafeBufferPointer<BackwardUnit<E>>, group: [Int],
                                         options: AttentionOptions, longest: Int, scratch: UnsafeMutablePointer<Double>) {
        guard let firstIndex = group.first else { return }
        let dim = options.headDim, valueDim = options.valueDim, keys = units[firstIndex].forward.keys
        let scores = scratch, probabilities = scratch + (longest + 1), gradients = scratch + 2 * (longest + 1)
        let dK = scratch + 3 * (longest + 1), dV = dK + (longest + 1) * dim
        let dQ = dV + (longest + 1) * valueDim, output = dQ + dim, dOut = output + valueDim
        dK.update(repeating: 0, count: keys * dim)
        dV.update(repeating: 0, count: keys * valueDim)
        let keepScale = options.dropoutP > 0 ? 1 / (1 - Double(options.dropoutP)) : 1
        let threshold = dropoutThreshold(options.dropoutP)
        for index in group {
            let unit = units[index], forward = unit.forward
            let dropKey = dropoutStreamKey(seed: options.seed, stream: forward.dropoutStream)
            for i in 0..<forward.queries {
                let (rowMax, anyAllowed) = AttentionReference.scoreRow(forward, options: options, row: i, into: scores)
                for d in 0..<dim { dQ[d] = 0 }
                if anyAllowed {
                    var sum = 0.0
                    for j in 0..<keys {
                        probabilities[j] = scores[j] == -.infinity ? 0 : exp(scores[j] - rowMax)
                        sum += probabilities[j]
                    }
                    for e in 0..<valueDim { dOut[e] = E.toDouble(unit.dOut.pointer(i, e).pointee); output[e] = 0 }
                    // p (undropped), the dropped weights' output O, and dP through the keep mask.
                    for j in 0..<keys {
                        probabilities[j] /= sum
                        var keep = keepScale
                        if options.dropoutP > 0 {
                            let bits = dropoutBits(key: dropKey, row: UInt32(truncatingIfNeeded: i),
                                                   col: UInt32(truncatingIfNeeded: j))
                            if bits < threshold { keep = 0 }
                        }
                        var dp = 0.0
                        if probabilities[j] != 0 || probabilities[j].isNaN {
                            for e in 0..<valueDim {
                                let value = E.toDouble(forward.v.pointer(j, e).pointee)
                                output[e] += probabilities[j] * keep * value
                                dp += dOut[e] * value
                            }
                        }
                        gradients[j] = dp * keep
                        // dV_j += p_j·keep·dO_i
                        if probabilities[j] * keep != 0 || probabilities[j].isNaN {
                            for e in 0..<valueDim { dV[j * valueDim + e] += probabilities[j] * keep * dOut[e] }
                        }
                    }
                    var delta = 0.0
                    for e in 0..<valueDim { delta += dOut[e] * output[e] }
                    for j in 0..<keys where probabilities[j] != 0 || probabilities[j].isNaN {
                        var ds = probabilities[j] * (gradients[j] - delta) * options.exactScale
                        if options.exactSoftcap > 0 {
                            var dot = 0.0
                            for d in 0..<dim {
                                dot += E.toDouble(forward.q.pointer(i, d).pointee) * E.toDouble(forward.k.pointer(j, d).pointee)
                            }
                            let t = tanh(dot * options.exactScale / options.exactSoftcap)
                            ds *= 1 - t * t
                        }
                        for d in 0..<dim {
                            dQ[d] += ds * E.toDouble(forward.k.pointer(j, d).pointee)
                            dK[j * dim + d] += ds * E.toDouble(forward.q.pointer(i, d).pointee)
                        }
                    }
                }
                for d in 0..<dim { unit.dQ.pointer(i, d).pointee = E.fromDouble(dQ[d]) }
            }
        }
        let first = units[firstIndex]
        for j in 0..<keys {
            for d in 0..<dim { first.dK.pointer(j, d).pointee = E.fromDouble(dK[j * dim + d]) }
            for e in 0..<valueDim { first.dV.pointer(j, e).pointee = E.fromDouble(dV[j * valueDim + e]) }
        }
    }
}
