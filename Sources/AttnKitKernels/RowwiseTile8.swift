// Compiled once per ISA tier (see Package.swift). The row-wise tiles
// (RowwiseTile.swift) for the AVX2 and portable tiers: vectors of 8 floats
// along the head dim, the last dims (dim % 8) scalar, so no load reaches past
// a row (the last K and V rows of a tile may end a buffer).
import AttnKitCore

#if !ATTNKIT_AVX512
extension FlashEngine {
    /// Sᵀ[key][row] = Σ_d queryRows[row][d]·K[key][d] for row < rows, over K rows
    /// `keyStride` apart: four keys at a time, one accumulator each.
    static func scoreTileRows(queryRows: UnsafePointer<Float>, rows: Int, dim: Int, paddedDim: Int,
                              keys: UnsafePointer<Float>, keyStride: Int, keyCount: Int,
                              into scores: UnsafeMutablePointer<Float>) {
        let vectorDim = dim & ~7
        for row in 0..<rows {
            let q = queryRows + row &* paddedDim
            var key = 0
            while key + 4 <= keyCount {
                let k0 = keys + key &* keyStride, k1 = k0 + keyStride, k2 = k1 + keyStride, k3 = k2 + keyStride
                var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
                var d = 0
                while d < vectorDim {
                    let qv = load8(q + d)
                    a0 = multiplyAdd8(qv, load8(k0 + d), a0); a1 = multiplyAdd8(qv, load8(k1 + d), a1)
                    a2 = multiplyAdd8(qv, load8(k2 + d), a2); a3 = multiplyAdd8(qv, load8(k3 + d), a3)
                    d += 8
                }
                var s0 = laneSum(a0), s1 = laneSum(a1), s2 = laneSum(a2), s3 = laneSum(a3)
                while d < dim {
                    s0 += q[d] * k0[d]; s1 += q[d] * k1[d]; s2 += q[d] * k2[d]; s3 += q[d] * k3[d]
                    d += 1
                }
                let s = scores + (key &* rowsPerTask &+ row)
                s[0] = s0; s[rowsPerTask] = s1; s[2 &* rowsPerTask] = s2; s[3 &* rowsPerTask] = s3
                key += 4
            }
            while key < keyCount {
                let k0 = keys + key &* keyStride
                var a0 = SIMD8<Float>()
                var d = 0
                while d < vectorDim { a0 = multiplyAdd8(load8(q + d), load8(k0 + d), a0); d += 8 }
                var s0 = laneSum(a0)
                while d < dim { s0 += q[d] * k0[d]; d += 1 }
                scores[key &* rowsPerTask &+ row] = s0
                key += 1
            }
        }
    }

    /// outRows[row][e] = rescale[row]·outRows[row][e] + Σ_key Pᵀ[key][row]·V[key][e]:
    /// 32 value dims (four vectors) at a time, then 8, then single dims.
    static func accumulateValuesRows(outRows: UnsafeMutablePointer<Float>, rows: Int, valueDim: Int,
                                     probabilities: UnsafePointer<Float>, values: UnsafePointer<Float>, keys: Int,
                                     rescale: UnsafePointer<Float>) {
        for row in 0..<rows {
            let o = outRows + row &* valueDim
            let scale = SIMD8<Float>(repeating: rescale[row])
            var e = 0
            while e + 32 <= valueDim {
                var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
                var v = values + e
                for key in 0..<keys {
                    let p = SIMD8<Float>(repeating: probabilities[key &* rowsPerTask &+ row])
                    a0 = multiplyAdd8(p, load8(v), a0); a1 = multiplyAdd8(p, load8(v + 8), a1)
                    a2 = multiplyAdd8(p, load8(v + 16), a2); a3 = multiplyAdd8(p, load8(v + 24), a3)
                    v += valueDim
                }
                let t = o + e
                store8(multiplyAdd8(load8(t), scale, a0), t); store8(multiplyAdd8(load8(t + 8), scale, a1), t + 8)
                store8(multiplyAdd8(load8(t + 16), scale, a2), t + 16); store8(multiplyAdd8(load8(t + 24), scale, a3), t + 24)
                e += 32
            }
            while e + 8 <= valueDim {
                var a0 = SIMD8<Float>()
                var v = values + e
                for key in 0..<keys {
                    a0 = multiplyAdd8(SIMD8<Float>(repeating: probabilities[key &* rowsPerTask &+ row]), load8(v), a0)
                    v += valueDim
                }
                store8(multiplyAdd8(load8(o + e), scale, a0), o + e)
                e += 8
            }
            while e < valueDim {
                var sum = o[e] * rescale[row]
                for key in 0..<keys { sum += probabilities[key &* rowsPerTask &+ row] * values[key &* valueDim &+ e] }
                o[e] = sum
                e += 1
            }
        }
    }
}
#endif
