import AttnKitCore
#if canImport(Glibc)
import Glibc
#endif

extension LinformerAttention {
    /// The plain twin, in fp64: the projections and the softmax written out.
    public func reference<E: AttnStorage>(
        q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
        projE: StridedTensor<E>, biasE: StridedTensor<E>? = nil, projF: StridedTensor<E>, biasF: StridedTensor<E>? = nil,
        out: MutableStridedTensor<E>
    ) throws {
        let p = try validate(q: q, k: k, v: v, projE: projE, biasE: biasE, projF: projF, biasF: biasF, out: out)
        let s = p.shape, kp = p.projected
        func project(_ matrix: StridedTensor<E>, _ bias: StridedTensor<E>?, _ source: Strided2D<E>, width: Int) -> [[Double]] {
            (0..<kp).map { row in
                let b = bias.map { E.toDouble($0.data[row &* $0.strides[0]]) } ?? 0
                return (0..<width).map { c in
                    var sum = b
                    for j in 0..<s.seqK {
                        sum += E.toDouble(matrix.data[row &* matrix.strides[0] &+ j &* matrix.strides[1]])
                            * E.toDouble(source.pointer(j, c).pointee)
                    }
                    return sum
                }
            }
        }
        for batch in 0..<s.batch {
            for kvHead in 0..<s.headsK {
                let keys = project(projE, biasE, headMatrix(k, batch, kvHead), width: s.dim)
                let values = project(projF, biasF, headMatrix(v, batch, kvHead), width: s.valueDim)
                for head in kvHead &* s.group..<(kvHead + 1) &* s.group {
                    let queries = headMatrix(q, batch, head)
                    for i in 0..<s.seqQ {
                        var scores = (0..<kp).map { j in
                            (0..<s.dim).reduce(0.0) { $0 + E.toDouble(queries.pointer(i, $1).pointee) * keys[j][$1] } * p.scale
                        }
                        let top = scores.max() ?? 0
                        scores = scores.map { exp($0 - top) }
                        let total = scores.reduce(0, +)
                        let target = out.data + (batch &* out.strides[0] &+ head &* out.strides[1] &+ i &* out.strides[2])
                        for c in 0..<s.valueDim {
                            var sum = 0.0
                            for j in 0..<kp { sum += scores[j] / total * values[j][c] }
                            target[c &* out.strides[3]] = E.fromDouble(sum)
                        }
                    }
                }
            }
        }
    }
}
