// Compiled once per ISA tier (see Package.swift). The fp32 tiles of
// FloatTiles.swift for tiers with 16 vector registers of 8 floats (AVX2) and
// the portable build: the AVX-512 blocking (16 accumulators of 16 floats, 32
// zmm registers) would spill here. These work on one 16-row chunk at a time,
// two vectors of 8 rows by six keys (or value dims): 12 accumulators, the two
// loaded vectors and one broadcast fill 15 of the 16 registers, as in the
// usual 6×16 AVX2 GEMM micro-kernel (an earlier 32-row × 3-key blocking kept
// its four loaded vectors live across the keys and spilled accumulators).
import AttnKitCore

#if !ATTNKIT_AVX512
@_transparent
func load8(_ pointer: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD8<Float>.self)
}

@_transparent
func store8(_ vector: SIMD8<Float>, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: SIMD8<Float>.self)
}

/// a·b + c, fused where the tier has FMA.
@_transparent
func multiplyAdd8(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>) -> SIMD8<Float> {
    #if ATTNKIT_FMA
    return c.addingProduct(a, b)
    #else
    return a * b + c
    #endif
}

extension FlashEngine {
    /// Sᵀ[key][row] = Σ_d Qᵀ[d][row]·K[key][d] over a packed tile, for all 64 rows.
    @inline(__always)
    static func scoreTile(queryT: UnsafeMutablePointer<Float>, realDim: Int, keys: UnsafePointer<Float>,
                          keyCount: Int, into scores: UnsafeMutablePointer<Float>) {
        for chunk in 0..<chunks {
            scoreChunk(queryT: queryT + chunk &* 16, realDim: realDim, keys: keys, keyCount: keyCount,
                       into: scores + chunk &* 16)
        }
    }

    /// scoreTile for the first 16 rows only (chunk 0).
    @inline(__always)
    static func scoreTileNarrow(queryT: UnsafeMutablePointer<Float>, realDim: Int, keys: UnsafePointer<Float>,
                                keyCount: Int, into scores: UnsafeMutablePointer<Float>) {
        scoreChunk(queryT: queryT, realDim: realDim, keys: keys, keyCount: keyCount, into: scores)
    }

    /// One 16-row chunk of the score tile (queryT and scores point at the
    /// chunk's first row): six keys per step, then four, then one at a time.
    @inline(never)
    static func scoreChunk(queryT: UnsafePointer<Float>, realDim: Int, keys: UnsafePointer<Float>,
                           keyCount: Int, into scores: UnsafeMutablePointer<Float>) {
        var key = 0
        while key + 6 <= keyCount {
            let k0 = keys + key &* realDim
            var a0 = SIMD8<Float>(), b0 = SIMD8<Float>(), a1 = SIMD8<Float>(), b1 = SIMD8<Float>()
            var a2 = SIMD8<Float>(), b2 = SIMD8<Float>(), a3 = SIMD8<Float>(), b3 = SIMD8<Float>()
            var a4 = SIMD8<Float>(), b4 = SIMD8<Float>(), a5 = SIMD8<Float>(), b5 = SIMD8<Float>()
            var qRow = queryT
            for d in 0..<realDim {
                let q0 = load8(qRow), q1 = load8(qRow + 8)
                let k = k0 + d
                var w = SIMD8<Float>(repeating: k[0]); a0 = multiplyAdd8(q0, w, a0); b0 = multiplyAdd8(q1, w, b0)
                w = SIMD8<Float>(repeating: k[realDim]); a1 = multiplyAdd8(q0, w, a1); b1 = multiplyAdd8(q1, w, b1)
                w = SIMD8<Float>(repeating: k[2 &* realDim]); a2 = multiplyAdd8(q0, w, a2); b2 = multiplyAdd8(q1, w, b2)
                w = SIMD8<Float>(repeating: k[3 &* realDim]); a3 = multiplyAdd8(q0, w, a3); b3 = multiplyAdd8(q1, w, b3)
                w = SIMD8<Float>(repeating: k[4 &* realDim]); a4 = multiplyAdd8(q0, w, a4); b4 = multiplyAdd8(q1, w, b4)
                w = SIMD8<Float>(repeating: k[5 &* realDim]); a5 = multiplyAdd8(q0, w, a5); b5 = multiplyAdd8(q1, w, b5)
                qRow += rowsPerTask
            }
            let s = scores + key &* rowsPerTask
            store8(a0, s); store8(b0, s + 8); store8(a1, s + 64); store8(b1, s + 72)
            store8(a2, s + 128); store8(b2, s + 136); store8(a3, s + 192); store8(b3, s + 200)
            store8(a4, s + 256); store8(b4, s + 264); store8(a5, s + 320); store8(b5, s + 328)
            key += 6
        }
        if key + 4 <= keyCount {
            let k0 = keys + key &* realDim
            var a0 = SIMD8<Float>(), b0 = SIMD8<Float>(), a1 = SIMD8<Float>(), b1 = SIMD8<Float>()
            var a2 = SIMD8<Float>(), b2 = SIMD8<Float>(), a3 = SIMD8<Float>(), b3 = SIMD8<Float>()
            var qRow = queryT
            for d in 0..<realDim {
                let q0 = load8(qRow), q1 = load8(qRow + 8)
                let k = k0 + d
                var w = SIMD8<Float>(repeating: k[0]); a0 = multiplyAdd8(q0, w, a0); b0 = multiplyAdd8(q1, w, b0)
                w = SIMD8<Float>(repeating: k[realDim]); a1 = multiplyAdd8(q0, w, a1); b1 = multiplyAdd8(q1, w, b1)
                w = SIMD8<Float>(repeating: k[2 &* realDim]); a2 = multiplyAdd8(q0, w, a2); b2 = multiplyAdd8(q1, w, b2)
                w = SIMD8<Float>(repeating: k[3 &* realDim]); a3 = multiplyAdd8(q0, w, a3); b3 = multiplyAdd8(q1, w, b3)
                qRow += rowsPerTask
            }
            let s = scores + key &* rowsPerTask
            store8(a0, s); store8(b0, s + 8); store8(a1, s + 64); store8(b1, s + 72)
            store8(a2, s + 128); store8(b2, s + 136); store8(a3, s + 192); store8(b3, s + 200)
            key += 4
        }
        while key < keyCount {
            let k0 = keys + key &* realDim
            var a0 = SIMD8<Float>(), b0 = SIMD8<Float>(), a1 = SIMD8<Float>(), b1 = SIMD8<Float>()
            var qRow = queryT
            var d = 0
            while d + 2 <= realDim {   // two partial sums per lane, added at the end
                let w0 = SIMD8<Float>(repeating: k0[d]), w1 = SIMD8<Float>(repeating: k0[d + 1])
                a0 = multiplyAdd8(load8(qRow), w0, a0); b0 = multiplyAdd8(load8(qRow + 8), w0, b0)
                a1 = multiplyAdd8(load8(qRow + rowsPerTask), w1, a1); b1 = multiplyAdd8(load8(qRow + rowsPerTask + 8), w1, b1)
                qRow += 2 &* rowsPerTask
                d += 2
            }
            if d < realDim {
                let w0 = SIMD8<Float>(repeating: k0[d])
                a0 = multiplyAdd8(load8(qRow), w0, a0); b0 = multiplyAdd8(load8(qRow + 8), w0, b0)
            }
            let s = scores + key &* rowsPerTask
            store8(a0 + a1, s); store8(b0 + b1, s + 8)
            key += 1
        }
    }

    /// Oᵀ[e][rows] = rescale·Oᵀ[e][rows] + Σ_key v[key][e]·Pᵀ[key][rows], for all 64 rows.
    @inline(__always)
    static func accumulateValues(outT: UnsafeMutablePointer<Float>, valueDim: Int,
                                 probabilities: UnsafeMutablePointer<Float>, values: UnsafePointer<Float>,
                                 keys: Int, rescale: UnsafeMutablePointer<Float>) {
        for chunk in 0..<chunks {
            accumulateChunk(outT: outT + chunk &* 16, valueDim: valueDim, probabilities: probabilities + chunk &* 16,
                            values: values, keys: keys, rescale: rescale + chunk &* 16)
        }
    }

    /// accumulateValues for the first 16 rows only (chunk 0).
    @inline(__always)
    static func accumulateValuesNarrow(outT: UnsafeMutablePointer<Float>, valueDim: Int,
                                       probabilities: UnsafeMutablePointer<Float>, values: UnsafePointer<Float>,
                                       keys: Int, rescale: UnsafeMutablePointer<Float>) {
        accumulateChunk(outT: outT, valueDim: valueDim, probabilities: probabilities, values: values, keys: keys,
                        rescale: rescale)
    }

    /// One 16-row chunk of P·V (outT, probabilities and rescale point at the
    /// chunk's first row): six value dims per step, then four, then one. This
    /// tile's sums start from zero and join O once, at the end.
    @inline(never)
    static func accumulateChunk(outT: UnsafeMutablePointer<Float>, valueDim: Int, probabilities: UnsafePointer<Float>,
                                values: UnsafePointer<Float>, keys: Int, rescale: UnsafePointer<Float>) {
        let r0 = load8(rescale), r1 = load8(rescale + 8)
        @inline(__always) func join(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ o: UnsafeMutablePointer<Float>) {
            store8(multiplyAdd8(load8(o), r0, a), o); store8(multiplyAdd8(load8(o + 8), r1, b), o + 8)
        }
        var e = 0
        while e + 6 <= valueDim {
            var a0 = SIMD8<Float>(), b0 = SIMD8<Float>(), a1 = SIMD8<Float>(), b1 = SIMD8<Float>()
            var a2 = SIMD8<Float>(), b2 = SIMD8<Float>(), a3 = SIMD8<Float>(), b3 = SIMD8<Float>()
            var a4 = SIMD8<Float>(), b4 = SIMD8<Float>(), a5 = SIMD8<Float>(), b5 = SIMD8<Float>()
            var vRow = values + e
            var p = probabilities
            for _ in 0..<keys {
                let p0 = load8(p), p1 = load8(p + 8)
                var w = SIMD8<Float>(repeating: vRow[0]); a0 = multiplyAdd8(p0, w, a0); b0 = multiplyAdd8(p1, w, b0)
                w = SIMD8<Float>(repeating: vRow[1]); a1 = multiplyAdd8(p0, w, a1); b1 = multiplyAdd8(p1, w, b1)
                w = SIMD8<Float>(repeating: vRow[2]); a2 = multiplyAdd8(p0, w, a2); b2 = multiplyAdd8(p1, w, b2)
                w = SIMD8<Float>(repeating: vRow[3]); a3 = multiplyAdd8(p0, w, a3); b3 = multiplyAdd8(p1, w, b3)
                w = SIMD8<Float>(repeating: vRow[4]); a4 = multiplyAdd8(p0, w, a4); b4 = multiplyAdd8(p1, w, b4)
                w = SIMD8<Float>(repeating: vRow[5]); a5 = multiplyAdd8(p0, w, a5); b5 = multiplyAdd8(p1, w, b5)
                vRow += valueDim
                p += rowsPerTask
            }
            let o = outT + e &* rowsPerTask
            join(a0, b0, o); join(a1, b1, o + 64); join(a2, b2, o + 128)
            join(a3, b3, o + 192); join(a4, b4, o + 256); join(a5, b5, o + 320)
            e += 6
        }
        if e + 4 <= valueDim {
            var a0 = SIMD8<Float>(), b0 = SIMD8<Float>(), a1 = SIMD8<Float>(), b1 = SIMD8<Float>()
            var a2 = SIMD8<Float>(), b2 = SIMD8<Float>(), a3 = SIMD8<Float>(), b3 = SIMD8<Float>()
            var vRow = values + e
            var p = probabilities
            for _ in 0..<keys {
                let p0 = load8(p), p1 = load8(p + 8)
                var w = SIMD8<Float>(repeating: vRow[0]); a0 = multiplyAdd8(p0, w, a0); b0 = multiplyAdd8(p1, w, b0)
                w = SIMD8<Float>(repeating: vRow[1]); a1 = multiplyAdd8(p0, w, a1); b1 = multiplyAdd8(p1, w, b1)
                w = SIMD8<Float>(repeating: vRow[2]); a2 = multiplyAdd8(p0, w, a2); b2 = multiplyAdd8(p1, w, b2)
                w = SIMD8<Float>(repeating: vRow[3]); a3 = multiplyAdd8(p0, w, a3); b3 = multiplyAdd8(p1, w, b3)
                vRow += valueDim
                p += rowsPerTask
            }
            let o = outT + e &* rowsPerTask
            join(a0, b0, o); join(a1, b1, o + 64); join(a2, b2, o + 128); join(a3, b3, o + 192)
            e += 4
        }
        while e < valueDim {
            var a0 = SIMD8<Float>(), b0 = SIMD8<Float>()
            var vRow = values + e
            var p = probabilities
            for _ in 0..<keys {
                let w = SIMD8<Float>(repeating: vRow[0])
                a0 = multiplyAdd8(load8(p), w, a0); b0 = multiplyAdd8(load8(p + 8), w, b0)
                vRow += valueDim
                p += rowsPerTask
            }
            join(a0, b0, outT + e &* rowsPerTask)
            e += 1
        }
    }
}
#endif
