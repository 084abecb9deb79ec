import AttnKitCore
#if canImport(Glibc)
import Glibc
#endif

extension EagerAttention {
    /// The plain reference twin of the eager backward: the chain rule written as
    /// loops over one (batch, head, query) at a time, in Double, one thread, no BLAS.
    public func backwardReference<E: AttnStorage>(
        dOut: StridedTensor<E>?, dWeights: StridedTensor<E>?,
        q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>, keyMask: StridedTensor<UInt8>? = nil,
        dQ: MutableStridedTensor<E>, dK: MutableStridedTensor<E>, dV: MutableStridedTensor<E>
    ) throws {
        let p = try validateBackward(dOut: dOut, dWeights: dWeights, q: q, k: k, v: v, keyMask: keyMask,
                                     dQ: dQ, dK: dK, dV: dV)
        let scale = 1 / Double(p.headDim).squareRoot()
        func offset(_ strides: [Int], _ index: [Int]) -> Int {
            var total = 0
            for axis in 0..<index.count { total += index[axis] * strides[axis] }
            return total
        }
        func element(_ t: StridedTensor<E>, _ index: [Int]) -> Double { E.toDouble(t.data[offset(t.strides, index)]) }
        let width = p.numHeads * p.headDim
        var gradQ = [Double](repeating: 0, count: p.batch * p.seqQ * width)
        var gradK = [Double](repeating: 0, count: p.batch * p.seqK * width)
        var gradV = [Double](repeating: 0, count: p.batch * p.seqK * width)
        var probabilities = [Double](repeating: 0, count: p.seqK)
        var dScores = [Double](repeating: 0, count: p.seqK)
        for b in 0..<p.batch {
            for h in 0..<p.numHeads {
                let column = h * p.headDim
                for i in 0..<p.seqQ {
                    // P for row i, as the reference forward computes it.
                    var allowedAny = false
                    var rowMax = -Double.infinity
                    for j in 0..<p.seqK {
                        var allowed = !(p.causal && j > i)
                        if let keyMask, keyMask.data[b * keyMask.strides[0] + j * keyMask.strides[1]] == 0 { allowed = false }
                        if !allowed { probabilities[j] = -.infinity; continue }
                        allowedAny = true
                        var dot = 0.0
                        for d in 0..<p.headDim { dot += element(q, [b, i, column + d]) * element(k, [b, j, column + d]) }
                        probabilities[j] = dot * scale
                        if !(probabilities[j] <= rowMax) { rowMax = probabilities[j] }
                    }
                    guard allowedAny else { continue }   // zero gradient
                    var sum = 0.0
                    for j in 0..<p.seqK {
                        probabilities[j] = probabilities[j] == -.infinity ? 0 : exp(probabilities[j] - rowMax)
                        sum += probabilities[j]
                    }
                    for j in 0..<p.seqK { probabilities[j] /= sum }
                    // dP, then dS = P ∘ (dP − Σ P·dP), over the allowed keys.
                    var rowDot = 0.0
                    for j in 0..<p.seqK {
                        var gradient = 0.0
                        if let dOut {
                            for d in 0..<p.headDim { gradient += element(dOut, [b, i, column + d]) * element(v, [b, j, column + d]) }
                        }
                        if let dWeights { gradient += element(dWeights, [b, h, i, j]) }
                        dScores[j] = probabilities[j] == 0 ? 0 : gradient
                        rowDot += probabilities[j] * dScores[j]
                    }
                    for j in 0..<p.seqK where probabilities[j] != 0 {
                        let dS = probabilities[j] * (dScores[j] - rowDot)
                        for d in 0..<p.headDim {
                            gradQ[(b * p.seqQ + i) * width + column + d] += scale * dS * element(k, [b, j, column + d])
                            gradK[(b * p.seqK + j) * width + column + d] += scale * dS * element(q, [b, i, column + d])
                            if let dOut {
                                gradV[(b * p.seqK + j) * width + column + d] += probabilities[j] * element(dOut, [b, i, column + d])
                            }
                        }
                    }
                }
            }
        }
        func write(_ values: [Double], _ tensor: MutableStridedTensor<E>, rows: Int) {
            for b in 0..<p.batch {
                for s in 0..<rows {
                    for c in 0..<width {
                        tensor.data[offset(tensor.strides, [b, s, c])] = E.fromDouble(values[(b * rows + s) * width + c])
                    }
                }
            }
        }
        write(gradQ, dQ, rows: p.seqQ)
        write(gradK, dK, rows: p.seqK)
        write(gradV, dV, rows: p.seqK)
    }
}
