import AttnKitCore
#if canImport(Glibc)
import Glibc
#endif

extension EagerAttention {
    /// The plain reference twin of the eager kernel: the spec's math written as
    /// loops, accumulated in Double, one thread, no BLAS. Tests hold the
    /// optimized kernel against it.
    public func reference<E: AttnStorage>(
        q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
        keyMask: StridedTensor<UInt8>? = nil, out: MutableStridedTensor<E>,
        weights: MutableStridedTensor<E>? = nil
    ) throws {
        let p = try validate(q: q, k: k, v: v, keyMask: keyMask, out: out, weights: weights)
        let scale = 1 / Double(p.headDim).squareRoot()
        var probabilities = [Double](repeating: 0, count: p.seqK)
        func element(_ t: StridedTensor<E>, _ index: [Int]) -> Double {
            var offset = 0
            for axis in 0..<index.count { offset += index[axis] * t.strides[axis] }
            return E.toDouble(t.data[offset])
        }
        for b in 0..<p.batch {
            for h in 0..<p.numHeads {
                for i in 0..<p.seqQ {
                    var allowedAny = false
                    var rowMax = -Double.infinity
                    for j in 0..<p.seqK {
                        var allowed = !(p.causal && j > i)
                        if let keyMask, keyMask.data[b * keyMask.strides[0] + j * keyMask.strides[1]] == 0 { allowed = false }
                        if !allowed { probabilities[j] = -.infinity; continue }
                        allowedAny = true
                        var dot = 0.0
                        for d in 0..<p.headDim {
                            dot += element(q, [b, i, h * p.headDim + d]) * element(k, [b, j, h * p.headDim + d])
                        }
                        probabilities[j] = dot * scale
                        if !(probabilities[j] <= rowMax) { rowMax = probabilities[j] }
                    }
                    var sum = 0.0
                    for j in 0..<p.seqK {
                        probabilities[j] = allowedAny && probabilities[j] != -.infinity ? exp(probabilities[j] - rowMax) : 0
                        sum += probabilities[j]
                    }
                    for j in 0..<p.seqK where allowedAny { probabilities[j] /= sum }
                    for d in 0..<p.headDim {
                        var acc = 0.0
                        if allowedAny {
                            for j in 0..<p.seqK {
                                acc += probabilities[j] * element(v, [b, j, h * p.headDim + d])
                            }
                        }
                        let offset = b * out.strides[0] + i * out.strides[1] + (h * p.headDim + d) * out.strides[2]
                        out.data[offset] = E.fromDouble(acc)
                    }
                    if let weights {
                        for j in 0..<p.seqK {
                            let s = weights.strides
                            weights.data[b * s[0] + h * s[1] + i * s[2] + j * s[3]] = E.fromDouble(probabilities[j])
                        }
                    }
                }
            }
        }
    }
}
