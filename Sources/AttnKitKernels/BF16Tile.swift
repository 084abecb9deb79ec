// Compiled once per ISA (see Package.swift); only the cooperlake build
// (ATTNKIT_AVX512_BF16) has a body here.
import AttnKitCore
#if ATTNKIT_AVX512_BF16
import _AttnKitShims

extension FlashEngine {
    /// bf16 inputs on AVX512_BF16: QKᵀ by vdpbf16ps, two dims per fp32 lane.
    /// Products of bf16 values are exact in fp32 and accumulate in fp32, so this
    /// is the fp32 path's math on the same inputs at twice its rate.
    ///
    /// Layout: pairs[(p·64 + row)] holds the bf16 bits of q[row][2p] (low half)
    /// and q[row][2p+1] (high half), unscaled; a missing odd dim and padding
    /// rows are 0.
    static func packQueryPairs(_ unit: AttentionUnit<BFloat16>, rowStart: Int, rows: Int, dim: Int,
                               into pairs: UnsafeMutablePointer<UInt32>) {
        let pairCount = (dim + 1) / 2
        pairs.update(repeating: 0, count: pairCount * rowsPerTask)
        for row in 0..<rows {
            let source = unit.q.pointer(rowStart + row, 0)
            for d in 0..<dim {
                let bits = UInt32(source[d &* unit.q.colStride].bitPattern)
                pairs[(d >> 1) &* rowsPerTask &+ row] |= (d & 1) == 0 ? bits : bits << 16
            }
        }
    }

    /// Key rows of the tile as bf16 pairs: pairs[key·pairCount + p] = k[key][2p], k[key][2p+1].
    static func packKeyPairs(_ keys: Strided2D<BFloat16>, start: Int, count: Int, dim: Int,
                             into pairs: UnsafeMutablePointer<UInt32>) {
        let pairCount = (dim + 1) / 2
        for key in 0..<count {
            let source = keys.pointer(start + key, 0), target = pairs + key &* pairCount
            if keys.colStride == 1 && (dim & 1) == 0 {
                UnsafeMutableRawPointer(target).copyMemory(from: UnsafeRawPointer(source), byteCount: dim &* 2)
                continue
            }
            for p in 0..<pairCount {
                let low = UInt32(source[(2 &* p) &* keys.colStride].bitPattern)
                let high: UInt32 = 2 &* p &+ 1 < dim ? UInt32(source[(2 &* p &+ 1) &* keys.colStride].bitPattern) : 0
                target[p] = low | high << 16
            }
        }
    }

    /// Sᵀ[key][row] = scale·Σ_d q[row][d]·k[key][d] from bf16 pairs; four keys by 64 rows per step.
    static func bf16ScoreTile(queryPairs: UnsafePointer<UInt32>, pairCount: Int, keyPairs: UnsafePointer<UInt32>,
                              keyCount: Int, scale: Float, into scores: UnsafeMutablePointer<Float>) {
        let scaleVector = SIMD16<Float>(repeating: scale)
        let q = UnsafeRawPointer(queryPairs)
        @inline(__always) func broadcast(_ bits: UInt32) -> SIMD8<Int64> {
            unsafeBitCast(SIMD16<UInt32>(repeating: bits), to: SIMD8<Int64>.self)
        }
        var key = 0
        while key + 4 <= keyCount {
            let k0 = keyPairs + key &* pairCount, k1 = k0 + pairCount, k2 = k1 + pairCount, k3 = k2 + pairCount
            var a00 = SIMD16<Float>(), a01 = SIMD16<Float>(), a02 = SIMD16<Float>(), a03 = SIMD16<Float>()
            var a10 = SIMD16<Float>(), a11 = SIMD16<Float>(), a12 = SIMD16<Float>(), a13 = SIMD16<Float>()
            var a20 = SIMD16<Float>(), a21 = SIMD16<Float>(), a22 = SIMD16<Float>(), a23 = SIMD16<Float>()
            var a30 = SIMD16<Float>(), a31 = SIMD16<Float>(), a32 = SIMD16<Float>(), a33 = SIMD16<Float>()
            for p in 0..<pairCount {
                let row = q + p &* (rowsPerTask &* 4)
                let q0 = row.loadUnaligned(as: SIMD8<Int64>.self), q1 = (row + 64).loadUnaligned(as: SIMD8<Int64>.self)
                let q2 = (row + 128).loadUnaligned(as: SIMD8<Int64>.self), q3 = (row + 192).loadUnaligned(as: SIMD8<Int64>.self)
                let b0 = broadcast(k0[p])
                a00 = attn_shim_dpbf16(a00, q0, b0); a01 = attn_shim_dpbf16(a01, q1, b0)
                a02 = attn_shim_dpbf16(a02, q2, b0); a03 = attn_shim_dpbf16(a03, q3, b0)
                let b1 = broadcast(k1[p])
                a10 = attn_shim_dpbf16(a10, q0, b1); a11 = attn_shim_dpbf16(a11, q1, b1)
                a12 = attn_shim_dpbf16(a12, q2, b1); a13 = attn_shim_dpbf16(a13, q3, b1)
                let b2 = broadcast(k2[p])
                a20 = attn_shim_dpbf16(a20, q0, b2); a21 = attn_shim_dpbf16(a21, q1, b2)
                a22 = attn_shim_dpbf16(a22, q2, b2); a23 = attn_shim_dpbf16(a23, q3, b2)
                let b3 = broadcast(k3[p])
                a30 = attn_shim_dpbf16(a30, q0, b3); a31 = attn_shim_dpbf16(a31, q1, b3)
                a32 = attn_shim_dpbf16(a32, q2, b3); a33 = attn_shim_dpbf16(a33, q3, b3)
            }
            let s = scores + key &* rowsPerTask
            store16(a00 * scaleVector, s); store16(a01 * scaleVector, s + 16)
            store16(a02 * scaleVector, s + 32); store16(a03 * scaleVector, s + 48)
            store16(a10 * scaleVector, s + 64); store16(a11 * scaleVector, s + 80)
            store16(a12 * scaleVector, s + 96); store16(a13 * scaleVector, s + 112)
            store16(a20 * scaleVector, s + 128); store16(a21 * scaleVector, s + 144)
            store16(a22 * scaleVector, s + 160); store16(a23 * scaleVector, s + 176)
            store16(a30 * scaleVector, s + 192); store16(a31 * scaleVector, s + 208)
            store16(a32 * scaleVector, s + 224); store16(a33 * scaleVector, s + 240)
            key += 4
        }
        while key < keyCount {
            let k0 = keyPairs + key &* pairCount
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            for p in 0..<pairCount {
                let row = q + p &* (rowsPerTask &* 4)
                let b = broadcast(k0[p])
                a0 = attn_shim_dpbf16(a0, row.loadUnaligned(as: SIMD8<Int64>.self), b)
                a1 = attn_shim_dpbf16(a1, (row + 64).loadUnaligned(as: SIMD8<Int64>.self), b)
                a2 = attn_shim_dpbf16(a2, (row + 128).loadUnaligned(as: SIMD8<Int64>.self), b)
                a3 = attn_shim_dpbf16(a3, (row + 192).loadUnaligned(as: SIMD8<Int64>.self), b)
            }
            let s = scores + key &* rowsPerTask
            store16(a0 * scaleVector, s); store16(a1 * scaleVector, s + 16)
            store16(a2 * scaleVector, s + 32); store16(a3 * scaleVector, s + 48)
            key += 1
        }
    }
}
#endif
