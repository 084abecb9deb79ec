// Compiled once per ISA (see Package.swift); AttnKit dispatches at run time.
import AttnKitCore

/// The engine's fp32 tiles: Sᵀ = Q·Kᵀ and Oᵀ += P·V on blocks held
/// transposed (16 rows per SIMD16 chunk), for four chunks (64 rows) or one
/// (blocks of at most 16 rows), and the NaN-safe P·V for tiles whose V is not
/// all finite.
extension FlashEngine {
    #if ATTNKIT_AVX512
    // The AVX-512 blocking; the other tiers use FloatTiles8.swift.
    /// Sᵀ[key][row] = Σ_d Qᵀ[d][row]·K[key][d] over a packed tile: four keys by
    /// 64 rows per step, 16 accumulators.
    @inline(__always)
    static func scoreTile(queryT: UnsafeMutablePointer<Float>, realDim: Int, keys: UnsafePointer<Float>,
                          keyCount: Int, into scores: UnsafeMutablePointer<Float>) {
        var key = 0
        while key + 4 <= keyCount {
            let k0 = keys + key &* realDim, k1 = k0 + realDim, k2 = k1 + realDim, k3 = k2 + realDim
            var a00 = SIMD16<Float>(), a01 = SIMD16<Float>(), a02 = SIMD16<Float>(), a03 = SIMD16<Float>()
            var a10 = SIMD16<Float>(), a11 = SIMD16<Float>(), a12 = SIMD16<Float>(), a13 = SIMD16<Float>()
            var a20 = SIMD16<Float>(), a21 = SIMD16<Float>(), a22 = SIMD16<Float>(), a23 = SIMD16<Float>()
            var a30 = SIMD16<Float>(), a31 = SIMD16<Float>(), a32 = SIMD16<Float>(), a33 = SIMD16<Float>()
            for d in 0..<realDim {
                let qRow = queryT + d &* rowsPerTask
                let q0 = load16(qRow), q1 = load16(qRow + 16), q2 = load16(qRow + 32), q3 = load16(qRow + 48)
                let b0 = SIMD16<Float>(repeating: k0[d])
                a00 = multiplyAdd(q0, b0, a00); a01 = multiplyAdd(q1, b0, a01)
                a02 = multiplyAdd(q2, b0, a02); a03 = multiplyAdd(q3, b0, a03)
                let b1 = SIMD16<Float>(repeating: k1[d])
                a10 = multiplyAdd(q0, b1, a10); a11 = multiplyAdd(q1, b1, a11)
                a12 = multiplyAdd(q2, b1, a12); a13 = multiplyAdd(q3, b1, a13)
                let b2 = SIMD16<Float>(repeating: k2[d])
                a20 = multiplyAdd(q0, b2, a20); a21 = multiplyAdd(q1, b2, a21)
                a22 = multiplyAdd(q2, b2, a22); a23 = multiplyAdd(q3, b2, a23)
                let b3 = SIMD16<Float>(repeating: k3[d])
                a30 = multiplyAdd(q0, b3, a30); a31 = multiplyAdd(q1, b3, a31)
                a32 = multiplyAdd(q2, b3, a32); a33 = multiplyAdd(q3, b3, a33)
            }
            let s = scores + key &* rowsPerTask
            store16(a00, s); store16(a01, s + 16); store16(a02, s + 32); store16(a03, s + 48)
            store16(a10, s + 64); store16(a11, s + 80); store16(a12, s + 96); store16(a13, s + 112)
            store16(a20, s + 128); store16(a21, s + 144); store16(a22, s + 160); store16(a23, s + 176)
            store16(a30, s + 192); store16(a31, s + 208); store16(a32, s + 224); store16(a33, s + 240)
            key += 4
        }
        while key < keyCount {
            let k0 = keys + key &* realDim
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            for d in 0..<realDim {
                let qRow = queryT + d &* rowsPerTask
                let b = SIMD16<Float>(repeating: k0[d])
                a0 = multiplyAdd(load16(qRow), b, a0); a1 = multiplyAdd(load16(qRow + 16), b, a1)
                a2 = multiplyAdd(load16(qRow + 32), b, a2); a3 = multiplyAdd(load16(qRow + 48), b, a3)
            }
            let s = scores + key &* rowsPerTask
            store16(a0, s); store16(a1, s + 16); store16(a2, s + 32); store16(a3, s + 48)
            key += 1
        }
    }

    /// scoreTile for the first 16 rows only (chunk 0): eight keys per step, so
    /// eight independent accumulators still cover the FMA latency.
    @inline(__always)
    static func scoreTileNarrow(queryT: UnsafeMutablePointer<Float>, realDim: Int, keys: UnsafePointer<Float>,
                                keyCount: Int, into scores: UnsafeMutablePointer<Float>) {
        var key = 0
        while key + 8 <= keyCount {
            let k0 = keys + key &* realDim
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            var a4 = SIMD16<Float>(), a5 = SIMD16<Float>(), a6 = SIMD16<Float>(), a7 = SIMD16<Float>()
            for d in 0..<realDim {
                let q = load16(queryT + d &* rowsPerTask)
                let k = k0 + d
                a0 = multiplyAdd(q, SIMD16(repeating: k[0]), a0)
                a1 = multiplyAdd(q, SIMD16(repeating: k[realDim]), a1)
                a2 = multiplyAdd(q, SIMD16(repeating: k[2 &* realDim]), a2)
                a3 = multiplyAdd(q, SIMD16(repeating: k[3 &* realDim]), a3)
                a4 = multiplyAdd(q, SIMD16(repeating: k[4 &* realDim]), a4)
                a5 = multiplyAdd(q, SIMD16(repeating: k[5 &* realDim]), a5)
                a6 = multiplyAdd(q, SIMD16(repeating: k[6 &* realDim]), a6)
                a7 = multiplyAdd(q, SIMD16(repeating: k[7 &* realDim]), a7)
            }
            let s = scores + key &* rowsPerTask
            store16(a0, s); store16(a1, s + 64); store16(a2, s + 128); store16(a3, s + 192)
            store16(a4, s + 256); store16(a5, s + 320); store16(a6, s + 384); store16(a7, s + 448)
            key += 8
        }
        while key < keyCount {
            let k0 = keys + key &* realDim
            var a0 = SIMD16<Float>()
            for d in 0..<realDim { a0 = multiplyAdd(load16(queryT + d &* rowsPerTask), SIMD16(repeating: k0[d]), a0) }
            store16(a0, scores + key &* rowsPerTask)
            key += 1
        }
    }

    /// accumulateValues for the first 16 rows only (chunk 0): eight value dims
    /// per step.
    @inline(__always)
    static func accumulateValuesNarrow(outT: UnsafeMutablePointer<Float>, valueDim: Int,
                                       probabilities: UnsafeMutablePointer<Float>, values: UnsafePointer<Float>,
                                       keys: Int, rescale rescalePointer: UnsafeMutablePointer<Float>) {
        let rescale = load16(rescalePointer)
        var e = 0
        while e + 8 <= valueDim {
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            var a4 = SIMD16<Float>(), a5 = SIMD16<Float>(), a6 = SIMD16<Float>(), a7 = SIMD16<Float>()
            var vRow = values + e
            for key in 0..<keys {
                let p = load16(probabilities + key &* rowsPerTask)
                a0 = multiplyAdd(p, SIMD16(repeating: vRow[0]), a0); a1 = multiplyAdd(p, SIMD16(repeating: vRow[1]), a1)
                a2 = multiplyAdd(p, SIMD16(repeating: vRow[2]), a2); a3 = multiplyAdd(p, SIMD16(repeating: vRow[3]), a3)
                a4 = multiplyAdd(p, SIMD16(repeating: vRow[4]), a4); a5 = multiplyAdd(p, SIMD16(repeating: vRow[5]), a5)
                a6 = multiplyAdd(p, SIMD16(repeating: vRow[6]), a6); a7 = multiplyAdd(p, SIMD16(repeating: vRow[7]), a7)
                vRow += valueDim
            }
            let o = outT + e &* rowsPerTask
            store16(multiplyAdd(load16(o), rescale, a0), o); store16(multiplyAdd(load16(o + 64), rescale, a1), o + 64)
            store16(multiplyAdd(load16(o + 128), rescale, a2), o + 128); store16(multiplyAdd(load16(o + 192), rescale, a3), o + 192)
            store16(multiplyAdd(load16(o + 256), rescale, a4), o + 256); store16(multiplyAdd(load16(o + 320), rescale, a5), o + 320)
            store16(multiplyAdd(load16(o + 384), rescale, a6), o + 384); store16(multiplyAdd(load16(o + 448), rescale, a7), o + 448)
            e += 8
        }
        while e < valueDim {
            var a0 = SIMD16<Float>()
            var vRow = values + e
            for key in 0..<keys {
                a0 = multiplyAdd(load16(probabilities + key &* rowsPerTask), SIMD16(repeating: vRow[0]), a0)
                vRow += valueDim
            }
            let o = outT + e &* rowsPerTask
            store16(multiplyAdd(load16(o), rescale, a0), o)
            e += 1
        }
    }

    /// Oᵀ[e][rows] = rescale·Oᵀ[e][rows] + Σ_key v[key][e]·Pᵀ[key][rows], four value
    /// dims by 64 rows per step.
    @inline(__always)
    static func accumulateValues(outT: UnsafeMutablePointer<Float>, valueDim: Int,
                                 probabilities: UnsafeMutablePointer<Float>, values: UnsafePointer<Float>,
                                 keys: Int, rescale rescalePointer: UnsafeMutablePointer<Float>) {
        let vr = valueDim
        let rescale = (load16(rescalePointer), load16(rescalePointer + 16), load16(rescalePointer + 32), load16(rescalePointer + 48))
        var e = 0
        while e + 4 <= valueDim {
            let o = outT + e &* rowsPerTask
            // This tile's sums start from zero and join O once, at the end: shorter
            // rounding chains than accumulating onto O itself, at the same cost.
            var a00 = SIMD16<Float>(), a01 = SIMD16<Float>(), a02 = SIMD16<Float>(), a03 = SIMD16<Float>()
            var a10 = SIMD16<Float>(), a11 = SIMD16<Float>(), a12 = SIMD16<Float>(), a13 = SIMD16<Float>()
            var a20 = SIMD16<Float>(), a21 = SIMD16<Float>(), a22 = SIMD16<Float>(), a23 = SIMD16<Float>()
            var a30 = SIMD16<Float>(), a31 = SIMD16<Float>(), a32 = SIMD16<Float>(), a33 = SIMD16<Float>()
            var vRow = values + e
            for key in 0..<keys {
                let p = probabilities + key &* rowsPerTask
                let p0 = load16(p), p1 = load16(p + 16), p2 = load16(p + 32), p3 = load16(p + 48)
                let b0 = SIMD16<Float>(repeating: vRow[0])
                a00 = multiplyAdd(p0, b0, a00); a01 = multiplyAdd(p1, b0, a01)
                a02 = multiplyAdd(p2, b0, a02); a03 = multiplyAdd(p3, b0, a03)
                let b1 = SIMD16<Float>(repeating: vRow[1])
                a10 = multiplyAdd(p0, b1, a10); a11 = multiplyAdd(p1, b1, a11)
                a12 = multiplyAdd(p2, b1, a12); a13 = multiplyAdd(p3, b1, a13)
                let b2 = SIMD16<Float>(repeating: vRow[2])
                a20 = multiplyAdd(p0, b2, a20); a21 = multiplyAdd(p1, b2, a21)
                a22 = multiplyAdd(p2, b2, a22); a23 = multiplyAdd(p3, b2, a23)
                let b3 = SIMD16<Float>(repeating: vRow[3])
                a30 = multiplyAdd(p0, b3, a30); a31 = multiplyAdd(p1, b3, a31)
                a32 = multiplyAdd(p2, b3, a32); a33 = multiplyAdd(p3, b3, a33)
                vRow += vr
            }
            @inline(__always) func join(_ sum: SIMD16<Float>, _ offset: Int, _ scale: SIMD16<Float>) {
                store16(multiplyAdd(load16(o + offset), scale, sum), o + offset)
            }
            join(a00, 0, rescale.0); join(a01, 16, rescale.1); join(a02, 32, rescale.2); join(a03, 48, rescale.3)
            join(a10, 64, rescale.0); join(a11, 80, rescale.1); join(a12, 96, rescale.2); join(a13, 112, rescale.3)
            join(a20, 128, rescale.0); join(a21, 144, rescale.1); join(a22, 160, rescale.2); join(a23, 176, rescale.3)
            join(a30, 192, rescale.0); join(a31, 208, rescale.1); join(a32, 224, rescale.2); join(a33, 240, rescale.3)
            e += 4
        }
        while e < valueDim {
            let o = outT + e &* rowsPerTask
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            var vRow = values + e
            for key in 0..<keys {
                let p = probabilities + key &* rowsPerTask
                let b = SIMD16<Float>(repeating: vRow[0])
                a0 = multiplyAdd(load16(p), b, a0); a1 = multiplyAdd(load16(p + 16), b, a1)
                a2 = multiplyAdd(load16(p + 32), b, a2); a3 = multiplyAdd(load16(p + 48), b, a3)
                vRow += vr
            }
            store16(multiplyAdd(load16(o), rescale.0, a0), o); store16(multiplyAdd(load16(o + 16), rescale.1, a1), o + 16)
            store16(multiplyAdd(load16(o + 32), rescale.2, a2), o + 32); store16(multiplyAdd(load16(o + 48), rescale.3, a3), o + 48)
            e += 1
        }
    }

    #endif

    /// The largest |x| of `count` floats; +inf if any is NaN or ±Inf.
    @inline(__always)
    static func largestMagnitude(_ values: UnsafePointer<Float>, count: Int) -> Float {
        var largest = SIMD16<Float>()
        var bad = SIMDMask<SIMD16<Int32>>()
        var index = 0
        while index + 16 <= count {
            let x = load16(values + index)
            let difference = x - x
            bad .|= difference .!= difference
            var magnitude = x
            magnitude.replace(with: SIMD16<Float>() - x, where: x .< SIMD16<Float>())
            largest = lanewiseMax(largest, magnitude)
            index += 16
        }
        var result = laneMax(largest)
        while index < count {
            if !values[index].isFinite { return .infinity }
            result = Swift.max(result, abs(values[index]))
            index += 1
        }
        return any(bad) ? .infinity : result
    }

    /// Whether every one of `count` floats is finite (a NaN or ±Inf in V needs the slow path).
    @inline(__always)
    static func allFinite(_ values: UnsafePointer<Float>, count: Int) -> Bool {
        largestMagnitude(values, count: count).isFinite
    }

    /// The same sum as accumulateValues, but a V row only reaches the rows that
    /// gave it a nonzero probability: a NaN or Inf in V must not turn 0·NaN into
    /// NaN in rows that never attend its key (docs/semantics.md §4). Taken only for
    /// tiles whose V holds a non-finite value.
    /// O is read and written at output[row·rowStep + e·dimStep] (Oᵀ or row-wise).
    static func accumulateValuesSkippingExcluded(output: UnsafeMutablePointer<Float>, rowStep: Int, dimStep: Int,
                                                 rows: Int, valueDim: Int, probabilities: UnsafeMutablePointer<Float>,
                                                 values: UnsafePointer<Float>, keys: Int,
                                                 rescale: UnsafeMutablePointer<Float>) {
        for e in 0..<valueDim {
            for row in 0..<rows {
                let o = output + (row &* rowStep &+ e &* dimStep)
                var sum = o.pointee * rescale[row]
                for key in 0..<keys {
                    let p = probabilities[key &* rowsPerTask &+ row]
                    if p != 0 { sum += p * values[key &* valueDim &+ e] }
                }
                o.pointee = sum
            }
        }
    }
}
