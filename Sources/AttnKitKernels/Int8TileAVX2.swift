// Compiled once per ISA tier (see Package.swift); only the AVX2 tier has a
// body here: its int8 score tile, called by int8ScoreTile (Int8Tile.swift).
import AttnKitCore
#if ATTNKIT_AVX2
import _AttnKitShims
import _Builtin_intrinsics.intel

extension FlashEngine {
    /// Whether the CPU has AVX-VNNI, read once: int8ScoreTile then takes
    /// attn_shim_int8_tile_avxvnni instead of the vpmaddwd tile below.
    static let hasAVXVNNI = attn_shim_cpu_has_avx_vnni() != 0

    /// acc[key][row] = Σ_d (q8[row][d] + 128)·k8[key][d] − 128·keySums[key], exact in
    /// int32, with vpmaddwd on 16-bit operands (AVX2 has no vpdpbusd; vpmaddubsw
    /// would saturate its 16-bit pair sums, since 255·127·2 > 32767).
    ///
    /// Each 32-bit lane of the query layout holds a row's four shifted bytes
    /// u0..u3 (0...255). As 16-bit words they are u0 + 256·u1 and u2 + 256·u3,
    /// so `& 0xFF` gives the pair (u0, u2) and `>> 8` the pair (u1, u3), both
    /// non-negative int16. Each key's groups are split the same way, sign
    /// extended, into (k0, k2) and (k1, k3) words, once per tile. Then one
    /// vpmaddwd of each pair adds two products per lane, at most 2·255·127,
    /// far inside int32. Blocking: 16 rows (two vectors) by four keys, eight
    /// accumulators; the four unpacked query vectors and two key broadcasts
    /// keep the step within 16 registers.
    static func int8ScoreTileAVX2(queryU8: UnsafePointer<UInt8>, groups: Int, keys: UnsafePointer<Int8>,
                                  keySums: UnsafePointer<Int32>, keyCount: Int, into acc: UnsafeMutablePointer<Int32>) {
        let stride = groups &* 4
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 2 &* keyCount &* groups + 8) { buffer in
            // keyPairs[key][g] = [(k0, k2) words, (k1, k3) words] as two UInt32.
            let keyPairs = buffer.baseAddress!
            for key in 0..<keyCount {
                let row = keys + key &* stride, target = keyPairs + 2 &* groups &* key
                for g in 0..<groups {
                    let k = row + g &* 4
                    target[2 &* g] = UInt32(UInt16(bitPattern: Int16(k[0]))) | UInt32(UInt16(bitPattern: Int16(k[2]))) << 16
                    target[2 &* g &+ 1] = UInt32(UInt16(bitPattern: Int16(k[1]))) | UInt32(UInt16(bitPattern: Int16(k[3]))) << 16
                }
            }
            let low = SIMD4<Int64>(repeating: 0x00FF_00FF_00FF_00FF)
            @inline(__always) func broadcast(_ word: UInt32) -> SIMD4<Int64> {
                _mm256_set1_epi32(Int32(bitPattern: word))
            }
            @inline(__always) func add(_ a: SIMD4<Int64>, _ b: SIMD4<Int64>) -> SIMD4<Int64> { _mm256_add_epi32(a, b) }
            @inline(__always) func store(_ a: SIMD4<Int64>, key: Int, row: Int) {
                let corrected = unsafeBitCast(a, to: SIMD8<Int32>.self) &- SIMD8<Int32>(repeating: 128 &* keySums[key])
                UnsafeMutableRawPointer(acc + (key &* rowsPerTask &+ row)).storeBytes(of: corrected, as: SIMD8<Int32>.self)
            }
            let q = UnsafeRawPointer(queryU8)
            for chunk in 0..<chunks {
                let rowOffset = chunk &* 16
                var key = 0
                while key < keyCount {
                    let count = Swift.min(4, keyCount - key)
                    // Keys past count repeat the last key (results not stored).
                    let p0 = keyPairs + 2 &* groups &* key
                    let p1 = keyPairs + 2 &* groups &* (key + Swift.min(1, count - 1))
                    let p2 = keyPairs + 2 &* groups &* (key + Swift.min(2, count - 1))
                    let p3 = keyPairs + 2 &* groups &* (key + Swift.min(3, count - 1))
                    var a0 = SIMD4<Int64>(), b0 = SIMD4<Int64>(), a1 = SIMD4<Int64>(), b1 = SIMD4<Int64>()
                    var a2 = SIMD4<Int64>(), b2 = SIMD4<Int64>(), a3 = SIMD4<Int64>(), b3 = SIMD4<Int64>()
                    for g in 0..<groups {
                        let base = q + (g &* rowsPerTask &+ rowOffset) &* 4
                        let x0 = base.loadUnaligned(as: SIMD4<Int64>.self), x1 = (base + 32).loadUnaligned(as: SIMD4<Int64>.self)
                        let even0 = _mm256_and_si256(x0, low), odd0 = _mm256_srli_epi16(x0, 8)
                        let even1 = _mm256_and_si256(x1, low), odd1 = _mm256_srli_epi16(x1, 8)
                        var e = broadcast(p0[2 &* g]), o = broadcast(p0[2 &* g &+ 1])
                        a0 = add(a0, add(_mm256_madd_epi16(even0, e), _mm256_madd_epi16(odd0, o)))
                        b0 = add(b0, add(_mm256_madd_epi16(even1, e), _mm256_madd_epi16(odd1, o)))
                        e = broadcast(p1[2 &* g]); o = broadcast(p1[2 &* g &+ 1])
                        a1 = add(a1, add(_mm256_madd_epi16(even0, e), _mm256_madd_epi16(odd0, o)))
                        b1 = add(b1, add(_mm256_madd_epi16(even1, e), _mm256_madd_epi16(odd1, o)))
                        e = broadcast(p2[2 &* g]); o = broadcast(p2[2 &* g &+ 1])
                        a2 = add(a2, add(_mm256_madd_epi16(even0, e), _mm256_madd_epi16(odd0, o)))
                        b2 = add(b2, add(_mm256_madd_epi16(even1, e), _mm256_madd_epi16(odd1, o)))
                        e = broadcast(p3[2 &* g]); o = broadcast(p3[2 &* g &+ 1])
                        a3 = add(a3, add(_mm256_madd_epi16(even0, e), _mm256_madd_epi16(odd0, o)))
                        b3 = add(b3, add(_mm256_madd_epi16(even1, e), _mm256_madd_epi16(odd1, o)))
                    }
                    store(a0, key: key, row: rowOffset); store(b0, key: key, row: rowOffset + 8)
                    if count > 1 { store(a1, key: key + 1, row: rowOffset); store(b1, key: key + 1, row: rowOffset + 8) }
                    if count > 2 { store(a2, key: key + 2, row: rowOffset); store(b2, key: key + 2, row: rowOffset + 8) }
                    if count > 3 { store(a3, key: key + 3, row: rowOffset); store(b3, key: key + 3, row: rowOffset + 8) }
                    key += 4
                }
            }
        }
    }
}
#endif
