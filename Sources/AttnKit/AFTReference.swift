import AttnKitCore
#if canImport(Glibc)
import Glibc
#endif

extension AFTAttention {
    /// The plain twin, in fp64: for each (t, c) the formula over the keys t sees, shifted by
    /// the exact max of W[t,t'] + K[t',c] (0 where t sees no key or every exponent is −inf).
    public func reference<E: AttnStorage>(
        q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>, bias: PositionBias<E> = .none,
        out: MutableStridedTensor<E>
    ) throws {
        let p = try validate(q: q, k: k, v: v, bias: bias, out: out)
        func at(_ x: StridedTensor<E>, _ i: Int, _ j: Int, _ l: Int) -> Double {
            E.toDouble(x.data[i &* x.strides[0] &+ j &* x.strides[1] &+ l &* x.strides[2]])
        }
        func w(_ t: Int, _ key: Int) -> Double {
            switch bias {
            case let .dense(m): return E.toDouble(m.data[t &* m.strides[0] &+ key &* m.strides[1]])
            case let .lowRank(u, f):
                return (0..<u.shape[1]).reduce(0.0) {
                    $0 + E.toDouble(u.data[t &* u.strides[0] &+ $1 &* u.strides[1]])
                        * E.toDouble(f.data[key &* f.strides[0] &+ $1 &* f.strides[1]])
                }
            case .none: return 0
            }
        }
        for b in 0..<p.batch {
            for t in 0..<p.length {
                for c in 0..<p.features {
                    var terms: [(exponent: Double, value: Double)] = []
                    for key in 0..<p.length {
                        let (allowed, biased) = p.sees(t, key)
                        guard allowed else { continue }
                        terms.append(((biased ? w(t, key) : 0) + at(k, b, key, c), at(v, b, key, c)))
                    }
                    var top = -Double.infinity
                    for term in terms where !(term.exponent <= top) { top = term.exponent }
                    var mean = 0.0
                    if top != -.infinity {
                        var numerator = 0.0, denominator = 0.0
                        for term in terms {
                            let e = exp(term.exponent - top)
                            numerator += e * term.value
                            denominator += e
                        }
                        mean = numerator / denominator
                    }
                    let gate = 1 / (1 + exp(-at(q, b, t, c)))
                    out.data[b &* out.strides[0] &+ t &* out.strides[1] &+ c &* out.strides[2]] = E.fromDouble(gate * mean)
                }
            }
        }
    }
}
