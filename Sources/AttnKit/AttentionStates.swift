import AttnKitCore
#if canImport(Glibc)
import Glibc
#endif

/// Partial attention results over disjoint key sets, and their merge: the
/// split-KV decode merges its splits with it, and merge_attention_states
/// exposes it (cascade and prefix caching, context parallelism).
public enum AttentionStates {
    /// Merges `count` online-softmax states [m, l, acc[valueDim]], `stateStride`
    /// floats apart from `first` (m the max score, l the sum of e^(s − m), acc the
    /// unnormalized Σ e^(s − m)·v), in order: with M the largest m, out = Σ acc·e^(m − M)
    /// / Σ l·e^(m − M) and lse = M + log Σ l·e^(m − M). With no key at all, out is 0
    /// and lse +inf. The weighted sum is gathered in the first state's acc (the
    /// states are scratch), so nothing is allocated per row.
    static func mergePartials<E: AttnStorage>(first: UnsafeMutablePointer<Float>, count: Int, stateStride: Int,
                                             valueDim: Int, into out: UnsafeMutablePointer<E>, colStride: Int) -> Float {
        var top = -Float.infinity
        var sawNaN = false
        for index in 0..<count {
            let state = first + index &* stateStride
            guard state[1] > 0 || state[0].isNaN else { continue }
            if state[0].isNaN { sawNaN = true } else { top = Swift.max(top, state[0]) }
        }
        if sawNaN {
            for e in 0..<valueDim { out[e &* colStride] = E.fromFloat(.nan) }
            return .nan
        }
        if top == -.infinity {   // no key attended: out 0, lse +inf (flash attention's convention)
            for e in 0..<valueDim { out[e &* colStride] = E.fromFloat(0) }
            return .infinity
        }
        // total[e] = Σ over states with keys of acc[e]·e^(m − M), in state order, into first's acc.
        var sum: Float = 0
        let total = first + 2
        for index in 0..<count {
            let state = first + index &* stateStride
            let weight: Float = state[1] > 0 ? expf(state[0] - top) : 0
            sum += state[1] * weight
            if index == 0 {
                for e in 0..<valueDim { total[e] = weight != 0 ? state[2 &+ e] * weight : 0 }
            } else if weight != 0 {
                for e in 0..<valueDim { total[e] += state[2 &+ e] * weight }
            }
        }
        let inverse = 1 / sum
        for e in 0..<valueDim { out[e &* colStride] = E.fromFloat(total[e] * inverse) }
        return top + logf(sum)
    }

    /// merge_attention_states: combines (outA, lseA) and (outB, lseB), attention
    /// over two disjoint key sets, into attention over their union.
    ///
    ///     fixed:  out (B, S, H, D)  lse (B, H, S)
    ///     varlen: out (T, H, D)     lse (H, T)
    ///
    /// An empty part has lse +inf (as the flash functions return it) or −inf
    /// and counts for nothing; with both empty, out is 0 and lse +inf. The
    /// merge is computed in fp64 (fp32 lse, outputs in their dtype).
    public static func merge<E: AttnStorage>(outA: StridedTensor<E>, lseA: StridedTensor<Float>,
                                             outB: StridedTensor<E>, lseB: StridedTensor<Float>,
                                             out: MutableStridedTensor<E>, lse: MutableStridedTensor<Float>?,
                                             threads: Int = ThreadSettings.numThreads) throws {
        let rank = outA.rank
        guard rank == 3 || rank == 4 else {
            throw AttnError.shape(argument: "out_a", rule: "must have rank 4 (batch, seq, heads, head_dim) or 3 (total, heads, head_dim), got rank \(rank)")
        }
        let lseRank = rank - 1
        let lseShape = rank == 4 ? [outA.shape[0], outA.shape[2], outA.shape[1]] : [outA.shape[1], outA.shape[0]]
        let lseLayout = rank == 4 ? "(batch, heads, seq)" : "(heads, total)"
        try requireRank("out_b", outB.shape, rank, "(the rank of out_a)")
        try requireRank("out", out.shape, rank, "(the rank of out_a)")
        for axis in 0..<rank {
            try requireExtent("out_b", outB.shape, axis: axis, equals: outA.shape[axis], "out_a.shape[\(axis)]")
            try requireExtent("out", out.shape, axis: axis, equals: outA.shape[axis], "out_a.shape[\(axis)]")
        }
        for (name, tensorShape) in [("lse_a", lseA.shape), ("lse_b", lseB.shape)] + (lse.map { [("lse", $0.shape)] } ?? []) {
            try requireRank(name, tensorShape, lseRank, lseLayout)
            for axis in 0..<lseRank { try requireExtent(name, tensorShape, axis: axis, equals: lseShape[axis], lseLayout) }
        }
        try validateLayout("out_a", shape: outA.shape, strides: outA.strides, hasData: outA.base != nil)
        try validateLayout("out_b", shape: outB.shape, strides: outB.strides, hasData: outB.base != nil)
        try validateLayout("lse_a", shape: lseA.shape, strides: lseA.strides, hasData: lseA.base != nil)
        try validateLayout("lse_b", shape: lseB.shape, strides: lseB.strides, hasData: lseB.base != nil)
        try validateLayout("out", shape: out.shape, strides: out.strides, hasData: out.base != nil)
        try validateWritable("out", shape: out.shape, strides: out.strides)
        if let lse {
            try validateLayout("lse", shape: lse.shape, strides: lse.strides, hasData: lse.base != nil)
            try validateWritable("lse", shape: lse.shape, strides: lse.strides)
        }
        guard !out.shape.contains(0) || !(lse?.shape.contains(0) ?? true) else { return }

        // Rows: (batch, seq, head) or (total, head); lse index for each.
        let outerCount = rank == 4 ? outA.shape[0] * outA.shape[1] : outA.shape[0]
        let heads = outA.shape[rank - 2], dim = outA.shape[rank - 1]
        parallelFor(count: outerCount, threads: threads) { outer, _ in
            for head in 0..<heads {
                func rowOffset(_ strides: [Int]) -> Int {
                    rank == 4 ? (outer / outA.shape[1]) * strides[0] + (outer % outA.shape[1]) * strides[1] + head * strides[2]
                              : outer * strides[0] + head * strides[1]
                }
                func lseOffset(_ strides: [Int]) -> Int {
                    rank == 4 ? (outer / outA.shape[1]) * strides[0] + head * strides[1] + (outer % outA.shape[1]) * strides[2]
                              : head * strides[0] + outer * strides[1]
                }
                let a = Double(lseA.data[lseOffset(lseA.strides)]), b = Double(lseB.data[lseOffset(lseB.strides)])
                let emptyA = a.isInfinite, emptyB = b.isInfinite
                let target = out.data + rowOffset(out.strides)
                let column = out.strides[rank - 1]
                let rowA = outA.data + rowOffset(outA.strides), rowB = outB.data + rowOffset(outB.strides)
                var merged: Double
                if a.isNaN || b.isNaN {
                    merged = .nan
                    for d in 0..<dim { target[d * column] = E.fromDouble(.nan) }
                } else if emptyA && emptyB {
                    merged = .infinity
                    for d in 0..<dim { target[d * column] = E.fromDouble(0) }
                } else {
                    let top = emptyA ? b : emptyB ? a : Swift.max(a, b)
                    let weightA = emptyA ? 0 : Glibc.exp(a - top), weightB = emptyB ? 0 : Glibc.exp(b - top)
                    let total = weightA + weightB
                    merged = top + Glibc.log(total)
                    for d in 0..<dim {
                        var value = 0.0
                        if weightA != 0 { value += weightA * E.toDouble(rowA[d * outA.strides[rank - 1]]) }
                        if weightB != 0 { value += weightB * E.toDouble(rowB[d * outB.strides[rank - 1]]) }
                        target[d * column] = E.fromDouble(value / total)
                    }
                }
                if let lse { lse.data[lseOffset(lse.strides)] = Float(merged) }
            }
        }
    }
}
