// Compiled once per ISA (see Package.swift); AttnKit dispatches at run time.
import AttnKitCore
#if ATTNKIT_AVX512 || ATTNKIT_AVX2
import _Builtin_intrinsics.intel
#endif
#if ATTNKIT_AVX2
import _AttnKitShims
#endif

extension FlashEngine {
    /// Quantizes the task's query rows to symmetric int8 and lays them out for
    /// the int8 score tile: for dim group g (4 dims) and row r, the 4 bytes at
    /// queryU8[(g·64 + r)·4 ..< +4] are q8[r][4g ..< 4g+4] + 128 as UInt8 (padding
    /// rows and dims hold q8 = 0). rowScales[r] = the row's dequantization scale
    /// times the softmax scale.
    static func packQueryInt8<E: AttnStorage>(_ unit: AttentionUnit<E>, rowStart: Int, rows: Int, dim: Int,
                                               groups: Int, mode: Int8QueryScale, softmaxScale: Float,
                                               into queryU8: UnsafeMutablePointer<UInt8>,
                                               rowScales: UnsafeMutablePointer<Float>) {
        queryU8.update(repeating: 128, count: groups * rowsPerTask * 4)
        rowScales.update(repeating: 0, count: rowsPerTask)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: dim) { zeros in
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: groups * 4) { levels in
            zeros.initialize(repeating: 0)
            let noMean = UnsafePointer(zeros.baseAddress!)
            levels.initialize(repeating: 0)
            func absmax(_ rows: Range<Int>) -> Float {
                Int8Quantizer.centeredAbsMax(unit.q, rows: (rowStart + rows.lowerBound)..<(rowStart + rows.upperBound),
                                             mean: noMean, count: dim)
            }
            var blockScale: Float = 1
            switch mode {
            case .perTensor(let scale): blockScale = scale
            case .perBlock:
                let largest = absmax(0..<rows)
                blockScale = largest > 0 && largest.isFinite ? largest / 127 : 1
            case .perToken: break
            }
            let levelWords = UnsafeRawPointer(levels.baseAddress!)
            let targetWords = UnsafeMutableRawPointer(queryU8)
            for row in 0..<rows {
                var scale = blockScale
                if case .perToken = mode {
                    let largest = absmax(row..<(row + 1))
                    scale = largest > 0 && largest.isFinite ? largest / 127 : 1
                }
                let (_, finite) = Int8Quantizer.quantizeRow(unit.q.pointer(rowStart + row, 0), colStride: unit.q.colStride,
                                                            mean: noMean, inverse: 1 / scale, count: dim,
                                                            into: levels.baseAddress!)
                // Four dims per 32-bit word; XOR 0x80 per byte is + 128 from int8 to u8.
                for group in 0..<groups {
                    let word = levelWords.loadUnaligned(fromByteOffset: group &* 4, as: UInt32.self) ^ 0x8080_8080
                    targetWords.storeBytes(of: word, toByteOffset: (group &* rowsPerTask &+ row) &* 4, as: UInt32.self)
                }
                // A NaN or Inf query row stays NaN, as in the float kernels.
                rowScales[row] = finite ? scale * softmaxScale : .nan
            }
        }
        }
    }

    /// The int8 tile layout of caller-quantized query rows (no quantization):
    /// the same layout as packQueryInt8, with the caller's per-row scales.
    static func packQueryPrequantized(_ source: Int8Rows, rowStart: Int, rows: Int, dim: Int, groups: Int,
                                      softmaxScale: Float, into queryU8: UnsafeMutablePointer<UInt8>,
                                      rowScales: UnsafeMutablePointer<Float>) {
        queryU8.update(repeating: 128, count: groups * rowsPerTask * 4)
        rowScales.update(repeating: 0, count: rowsPerTask)
        for row in 0..<rows {
            let values = source.values + (rowStart + row) &* source.rowStride
            for d in 0..<dim {
                let level = Int32(values[d &* source.colStride])   // −128...127 + 128 fits a u8
                queryU8[((d >> 2) &* rowsPerTask &+ row) &* 4 &+ (d & 3)] = UInt8(truncatingIfNeeded: level + 128)
            }
            rowScales[row] = source.scales[(rowStart + row) &* source.scaleStride] * softmaxScale
        }
    }

    /// acc[key][row] = Σ_d q8[row][d]·k8[key][d], exact in int32, for `keyCount` keys
    /// of a packed int8 tile ([key][groups·4]). The AVX-512 build runs vpdpbusd
    /// (u8 × s8 → s32, four products per lane) on the +128-shifted queries and
    /// subtracts 128·Σ_d k8 per key; the AVX2 build does the same with vpdpbusd
    /// on ymm where the CPU has AVX-VNNI (attn_shim_int8_tile_avxvnni) and with
    /// vpmaddwd on 16-bit operands elsewhere (int8ScoreTileAVX2); the portable
    /// build does the same sum lane by lane.
    ///
    /// With `dequantize`, the AVX-512 build writes the fp32 scores of
    /// dequantizeScores straight from its registers instead of `acc` (the
    /// same values, without a second pass over the tile).
    package static func int8ScoreTile(queryU8: UnsafePointer<UInt8>, groups: Int, keys: UnsafePointer<Int8>,
                                      keySums: UnsafePointer<Int32>, keyCount: Int,
                                      into acc: UnsafeMutablePointer<Int32>, dequantize: ScoreScales? = nil) {
        let stride = groups &* 4
        #if ATTNKIT_AVX512
        @inline(__always) func store(_ a: (SIMD8<Int64>, SIMD8<Int64>, SIMD8<Int64>, SIMD8<Int64>), key: Int) {
            if let dequantize {
                storeScaled(a, sum: keySums[key], rowScales: dequantize.rowScales, keyScale: dequantize.keyScales[key],
                            to: dequantize.scores + key &* rowsPerTask)
            } else {
                storeCorrected(a, sum: keySums[key], to: acc + key &* rowsPerTask)
            }
        }
        let q = UnsafeRawPointer(queryU8)
        var key = 0
        while key + 4 <= keyCount {
            let k0 = UnsafeRawPointer(keys + key &* stride)
            var a00 = SIMD8<Int64>(), a01 = SIMD8<Int64>(), a02 = SIMD8<Int64>(), a03 = SIMD8<Int64>()
            var a10 = SIMD8<Int64>(), a11 = SIMD8<Int64>(), a12 = SIMD8<Int64>(), a13 = SIMD8<Int64>()
            var a20 = SIMD8<Int64>(), a21 = SIMD8<Int64>(), a22 = SIMD8<Int64>(), a23 = SIMD8<Int64>()
            var a30 = SIMD8<Int64>(), a31 = SIMD8<Int64>(), a32 = SIMD8<Int64>(), a33 = SIMD8<Int64>()
            for g in 0..<groups {
                let row = q + g &* (rowsPerTask &* 4)
                let q0 = row.loadUnaligned(as: SIMD8<Int64>.self), q1 = (row + 64).loadUnaligned(as: SIMD8<Int64>.self)
                let q2 = (row + 128).loadUnaligned(as: SIMD8<Int64>.self), q3 = (row + 192).loadUnaligned(as: SIMD8<Int64>.self)
                let offset = g &* 4
                let b0 = _mm512_set1_epi32(k0.loadUnaligned(fromByteOffset: offset, as: Int32.self))
                a00 = _mm512_dpbusd_epi32(a00, q0, b0); a01 = _mm512_dpbusd_epi32(a01, q1, b0)
                a02 = _mm512_dpbusd_epi32(a02, q2, b0); a03 = _mm512_dpbusd_epi32(a03, q3, b0)
                let b1 = _mm512_set1_epi32(k0.loadUnaligned(fromByteOffset: stride &+ offset, as: Int32.self))
                a10 = _mm512_dpbusd_epi32(a10, q0, b1); a11 = _mm512_dpbusd_epi32(a11, q1, b1)
                a12 = _mm512_dpbusd_epi32(a12, q2, b1); a13 = _mm512_dpbusd_epi32(a13, q3, b1)
                let b2 = _mm512_set1_epi32(k0.loadUnaligned(fromByteOffset: 2 &* stride &+ offset, as: Int32.self))
                a20 = _mm512_dpbusd_epi32(a20, q0, b2); a21 = _mm512_dpbusd_epi32(a21, q1, b2)
                a22 = _mm512_dpbusd_epi32(a22, q2, b2); a23 = _mm512_dpbusd_epi32(a23, q3, b2)
                let b3 = _mm512_set1_epi32(k0.loadUnaligned(fromByteOffset: 3 &* stride &+ offset, as: Int32.self))
                a30 = _mm512_dpbusd_epi32(a30, q0, b3); a31 = _mm512_dpbusd_epi32(a31, q1, b3)
                a32 = _mm512_dpbusd_epi32(a32, q2, b3); a33 = _mm512_dpbusd_epi32(a33, q3, b3)
            }
            store((a00, a01, a02, a03), key: key)
            store((a10, a11, a12, a13), key: key + 1)
            store((a20, a21, a22, a23), key: key + 2)
            store((a30, a31, a32, a33), key: key + 3)
            key += 4
        }
        while key < keyCount {
            let k0 = UnsafeRawPointer(keys + key &* stride)
            var a0 = SIMD8<Int64>(), a1 = SIMD8<Int64>(), a2 = SIMD8<Int64>(), a3 = SIMD8<Int64>()
            for g in 0..<groups {
                let row = q + g &* (rowsPerTask &* 4)
                let b = _mm512_set1_epi32(k0.loadUnaligned(fromByteOffset: g &* 4, as: Int32.self))
                a0 = _mm512_dpbusd_epi32(a0, row.loadUnaligned(as: SIMD8<Int64>.self), b)
                a1 = _mm512_dpbusd_epi32(a1, (row + 64).loadUnaligned(as: SIMD8<Int64>.self), b)
                a2 = _mm512_dpbusd_epi32(a2, (row + 128).loadUnaligned(as: SIMD8<Int64>.self), b)
                a3 = _mm512_dpbusd_epi32(a3, (row + 192).loadUnaligned(as: SIMD8<Int64>.self), b)
            }
            store((a0, a1, a2, a3), key: key)
            key += 1
        }
        #elseif ATTNKIT_AVX2
        if hasAVXVNNI {
            attn_shim_int8_tile_avxvnni(queryU8, groups, keys, keySums, keyCount, acc)
        } else {
            int8ScoreTileAVX2(queryU8: queryU8, groups: groups, keys: keys, keySums: keySums, keyCount: keyCount, into: acc)
        }
        if let dequantize {
            dequantizeScores(acc, rowScales: dequantize.rowScales, keyScales: dequantize.keyScales, keyCount: keyCount,
                             into: dequantize.scores)
        }
        #else
        for key in 0..<keyCount {
            let k = keys + key &* stride
            let correction = 128 &* keySums[key]
            for row in 0..<rowsPerTask {
                var sum: Int32 = 0
                for g in 0..<groups {
                    let q = queryU8 + (g &* rowsPerTask &+ row) &* 4
                    for t in 0..<4 { sum &+= Int32(q[t]) &* Int32(k[g &* 4 &+ t]) }
                }
                acc[key &* rowsPerTask &+ row] = sum &- correction
            }
        }
        if let dequantize {
            dequantizeScores(acc, rowScales: dequantize.rowScales, keyScales: dequantize.keyScales, keyCount: keyCount,
                             into: dequantize.scores)
        }
        #endif
    }

    /// Where and how int8ScoreTile writes fp32 scores (defined in AttnKitCore, for KernelSet).
    package typealias ScoreScales = Int8ScoreScales

    #if ATTNKIT_AVX512
    /// Stores four 16-row accumulators minus 128·Σk8 (the u8 shift of the queries).
    @inline(__always)
    static func storeCorrected(_ a: (SIMD8<Int64>, SIMD8<Int64>, SIMD8<Int64>, SIMD8<Int64>), sum: Int32,
                               to destination: UnsafeMutablePointer<Int32>) {
        let correction = SIMD16<Int32>(repeating: 128 &* sum)
        let raw = UnsafeMutableRawPointer(destination)
        raw.storeBytes(of: unsafeBitCast(a.0, to: SIMD16<Int32>.self) &- correction, as: SIMD16<Int32>.self)
        raw.storeBytes(of: unsafeBitCast(a.1, to: SIMD16<Int32>.self) &- correction, toByteOffset: 64, as: SIMD16<Int32>.self)
        raw.storeBytes(of: unsafeBitCast(a.2, to: SIMD16<Int32>.self) &- correction, toByteOffset: 128, as: SIMD16<Int32>.self)
        raw.storeBytes(of: unsafeBitCast(a.3, to: SIMD16<Int32>.self) &- correction, toByteOffset: 192, as: SIMD16<Int32>.self)
    }
    #endif

    #if ATTNKIT_AVX512
    /// dequantizeScores for one key, from the four accumulators: the same
    /// conversion and products in the same order.
    @inline(__always)
    static func storeScaled(_ a: (SIMD8<Int64>, SIMD8<Int64>, SIMD8<Int64>, SIMD8<Int64>), sum: Int32,
                            rowScales: UnsafePointer<Float>, keyScale: Float, to destination: UnsafeMutablePointer<Float>) {
        let correction = SIMD16<Int32>(repeating: 128 &* sum), scale = SIMD16<Float>(repeating: keyScale)
        @inline(__always) func one(_ acc: SIMD8<Int64>, _ chunk: Int) {
            let exact = unsafeBitCast(unsafeBitCast(acc, to: SIMD16<Int32>.self) &- correction, to: SIMD8<Int64>.self)
            let floats: SIMD16<Float> = _mm512_cvtepi32_ps(exact)
            store16(floats * load16(rowScales + chunk &* 16) * scale, destination + chunk &* 16)
        }
        one(a.0, 0); one(a.1, 1); one(a.2, 2); one(a.3, 3)
    }
    #endif

    /// scores[key][row] = acc[key][row] · rowScales[row] · keyScales[key]: back to fp32.
    @inline(__always)
    package static func dequantizeScores(_ acc: UnsafePointer<Int32>, rowScales: UnsafePointer<Float>, keyScales: UnsafePointer<Float>,
                                 keyCount: Int, into scores: UnsafeMutablePointer<Float>) {
        for key in 0..<keyCount {
            let keyScale = SIMD16<Float>(repeating: keyScales[key])
            for chunk in 0..<chunks {
                let offset = key &* rowsPerTask &+ chunk &* 16
                #if ATTNKIT_AVX512
                let floats: SIMD16<Float> = _mm512_cvtepi32_ps(UnsafeRawPointer(acc + offset).loadUnaligned(as: SIMD8<Int64>.self))
                #elseif ATTNKIT_AVX2
                let raw = UnsafeRawPointer(acc + offset)
                let floats = SIMD16<Float>(lowHalf: _mm256_cvtepi32_ps(raw.loadUnaligned(as: SIMD4<Int64>.self)),
                                           highHalf: _mm256_cvtepi32_ps(raw.loadUnaligned(fromByteOffset: 32, as: SIMD4<Int64>.self)))
                #else
                var floats = SIMD16<Float>()
                for lane in 0..<16 { floats[lane] = Float(acc[offset &+ lane]) }
                #endif
                store16(floats * load16(rowScales + chunk &* 16) * keyScale, scores + offset)
            }
        }
    }
}
