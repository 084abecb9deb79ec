import AttnKitCore
#if canImport(Glibc)
import Glibc
#endif

extension SparseTopKAttention {
    /// The plain twin of the kernel, in fp64: every allowed score of a row, sorted
    /// (higher first, NaN first, ties to the lower key), the first topK softmaxed.
    public func reference<E: AttnStorage>(
        q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>, keyMask: StridedTensor<UInt8>? = nil,
        out: MutableStridedTensor<E>
    ) throws {
        let p = try validate(q: q, k: k, v: v, keyMask: keyMask, out: out)
        let s = p.shape
        for batch in 0..<s.batch {
            for head in 0..<s.headsQ {
                let queries = headMatrix(q, batch, head), keys = headMatrix(k, batch, head / s.group)
                let values = headMatrix(v, batch, head / s.group)
                for i in 0..<s.seqQ {
                    var candidates: [(score: Double, key: Int)] = []
                    for j in 0..<(p.causal ? Swift.min(s.seqK, i + 1) : s.seqK) {
                        if let keyMask, keyMask.data[batch &* keyMask.strides[0] &+ j &* keyMask.strides[1]] == 0 { continue }
                        var dot = 0.0
                        for c in 0..<s.dim {
                            dot += E.toDouble(queries.pointer(i, c).pointee) * E.toDouble(keys.pointer(j, c).pointee)
                        }
                        // f32/f16/bf16 scores are fp32 in the kernel; rank them as such so ties agree.
                        let score = E.self == Double.self ? dot * p.scale : Double(Float(dot * p.scale))
                        candidates.append((score, j))
                    }
                    candidates.sort { a, b in
                        let ra = a.score.isNaN ? Double.infinity : a.score, rb = b.score.isNaN ? Double.infinity : b.score
                        return ra > rb || (ra == rb && a.key < b.key)
                    }
                    let kept = candidates.prefix(p.topK)
                    var result = [Double](repeating: 0, count: s.valueDim)
                    if !kept.isEmpty {
                        var top = -Double.infinity
                        for c in kept where !(c.score <= top) { top = c.score }
                        if top == -.infinity { top = 0 }
                        let weights = kept.map { exp($0.score - top) }
                        let total = weights.reduce(0, +)
                        for (candidate, weight) in zip(kept, weights) {
                            for c in 0..<s.valueDim {
                                result[c] += weight / total * E.toDouble(values.pointer(candidate.key, c).pointee)
                            }
                        }
                    }
                    let target = out.data + (batch &* out.strides[0] &+ head &* out.strides[1] &+ i &* out.strides[2])
                    for c in 0..<s.valueDim { target[c &* out.strides[3]] = E.fromDouble(result[c]) }
                }
            }
        }
    }
}
