#if canImport(Glibc)
import Glibc
#endif
import AttnKitCore
import _AttnKitShims
#if ATTNKIT_AVX512 || ATTNKIT_AVX2
import _Builtin_intrinsics.intel
#endif

// Compiled once per ISA (see Package.swift); AttnKit dispatches at run time.

/// The tiled online-softmax engine behind SDPA and varlen flash attention.
///
/// A task is one block of up to 64 query rows of one unit. The block is held
/// *transposed*: 16 query rows share a SIMD16 vector (a "chunk"), so
///   - S = Q·Kᵀ is computed as Sᵀ[key][rows]: each K element is broadcast from
///     its strided source and multiplies 64 rows of Qᵀ at once, so K is never
///     packed or copied;
///   - the softmax of a row is a reduction over keys, which in this layout is
///     a lane-wise max/sum over key vectors: no horizontal reductions;
///   - O += P·V is Oᵀ[dim][rows] += V[key][dim] (broadcast) × Pᵀ[key][rows],
///     so V is read in place too.
/// Memory per worker is O(tile): Qᵀ [D×64], Sᵀ [64×64], Oᵀ [Dv×64].
public enum FlashEngine {
    static let rowsPerTask = 64
    static let chunks = 4          // rowsPerTask / 16
    /// Key tiles are aligned to multiples of this, for every query block, so a
    /// block's arithmetic never depends on which other blocks share its task.
    static let keysPerTile = 64
    /// Query blocks per task at most. The blocks of a task share every packed
    /// K/V tile, so a strided (B, S, H, D) source is gathered once per 256 query
    /// rows instead of once per 64.
    static let maxBlocksPerTask = 8
    /// Below this much work per extra thread, a thread's start-up outweighs its help.
    static let minimumFlopsPerThread = 16_000_000

    /// Runs every unit, parallel over (unit, group of query blocks). Results do
    /// not depend on the thread count: each block owns its rows, and its key
    /// tiles are the same whatever group it lands in.
    /// Specialized per storage type: callers in other modules reach it generically.
    @_specialize(where E == Float)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    package static func run<E: AttnStorage>(units: [AttentionUnit<E>], options: AttentionOptions, threads: Int) throws {
        let totalBlocks = units.reduce(0) { $0 + ($1.queries + rowsPerTask - 1) / rowsPerTask }
        if totalBlocks == 0 { return }
        // Group blocks only while every worker still gets several tasks.
        let blocksPerTask = Swift.max(1, Swift.min(maxBlocksPerTask, totalBlocks / Swift.max(1, 8 * threads)))
        // Tasks are (unit, first block, block count), largest first, so that one
        // long sequence among short ones is spread over every worker and no
        // worker is left with a long task at the end. The order only changes
        // who computes a block, never its result.
        var tasks: [(unit: Int32, block: Int32, count: Int32, cost: Int)] = []
        for (index, unit) in units.enumerated() where unit.queries > 0 {
            let blocks = (unit.queries + rowsPerTask - 1) / rowsPerTask
            for first in stride(from: 0, to: blocks, by: blocksPerTask) {
                let count = Swift.min(blocksPerTask, blocks - first)
                var cost = 0
                for block in first..<(first + count) {
                    let range = blockKeys(unit, options: options, rowStart: block * rowsPerTask)
                    cost += Swift.max(0, range.upperBound - range.lowerBound) + 1
                }
                tasks.append((Int32(index), Int32(first), Int32(count), cost))
            }
        }
        tasks.sort { $0.cost != $1.cost ? $0.cost > $1.cost : ($0.unit, $0.block) < ($1.unit, $1.block) }
        // The last tasks handed out are split back into single blocks, so that a
        // worker slowed near the end (a noisy neighbour) holds up at most one block;
        // but not where every task gathers or converts its K/V tiles (strided or
        // low-precision input, fp16 P·V), which single blocks would each redo
        // (benchmarks/NOTES.md, "tail split", has the figures).
        let packsTiles = options.halfPrecisionValues || units.contains { unit in
            !isPackedInPlace(unit.v, width: options.valueDim)
                || (unit.int8Keys == nil && !isPackedInPlace(unit.k, width: options.headDim))
        }
        if blocksPerTask > 1 && !packsTiles {
            let tail = Swift.min(tasks.count, 2 * threads)
            var split: [(unit: Int32, block: Int32, count: Int32, cost: Int)] = []
            for task in tasks[(tasks.count - tail)...] {
                for block in task.block..<(task.block + task.count) {
                    split.append((task.unit, block, 1, task.cost / Int(task.count)))
                }
            }
            tasks.removeLast(tail)
            tasks.append(contentsOf: split)
        }
        // Starting a thread costs about as much as 8 MFLOP of this engine's work
        // (benchmarks/NOTES.md, "thread start"), so small calls stay on the
        // caller's thread. Results do not depend on it.
        let flops = 2 * rowsPerTask * (options.headDim + options.valueDim) * tasks.reduce(0) { $0 + $1.cost }
        let worthwhile = Swift.max(1, flops / minimumFlopsPerThread)
        let workers = Swift.max(1, Swift.min(threads, tasks.count, worthwhile))
        let layout = try ScratchLayout(options: options, blocks: blocksPerTask,
                                       usesInt8: units.contains { $0.int8Keys != nil },
                                       usesHalfValues: options.halfPrecisionValues)
        let floats = try PerWorker<Float>(workers: workers, count: layout.floats)
        defer { floats.deallocate() }
        let bytes = try PerWorker<UInt8>(workers: workers, count: layout.bytes)
        defer { bytes.deallocate() }
        let ints = try PerWorker<Int32>(workers: workers, count: layout.ints)
        defer { ints.deallocate() }
        let halves = try PerWorker<UInt16>(workers: workers, count: layout.halves)
        defer { halves.deallocate() }
        tasks.withUnsafeBufferPointer { taskList in
            units.withUnsafeBufferPointer { unitList in
                parallelFor(count: taskList.count, threads: workers) { task, worker in
                    let (unit, block, count, _) = taskList[task]
                    let scratch = layout.scratch(floats: floats[worker], bytes: bytes[worker], ints: ints[worker],
                                                 halves: halves[worker])
                    runTask(unitList[Int(unit)], firstBlock: Int(block), blockCount: Int(count), options: options,
                            scratch: scratch)
                }
            }
        }
    }

    /// The keys [lo, hi) that some row of the block starting at rowStart may see.
    @inline(__always)
    static func blockKeys<E>(_ unit: AttentionUnit<E>, options: AttentionOptions, rowStart: Int) -> Range<Int> {
        let rowEnd = Swift.min(unit.queries, rowStart + rowsPerTask)
        let first = options.keyRange(row: rowStart, diagonal: unit.diagonal, keys: unit.keys)
        let last = options.keyRange(row: rowEnd - 1, diagonal: unit.diagonal, keys: unit.keys)
        return first.lo..<Swift.max(first.lo, last.hi + 1)
    }

    /// How one worker's three scratch buffers are carved up.
    struct ScratchLayout {
        let paddedDim: Int, valueDim: Int, blocks: Int
        let queryFloats: Int, outFloats: Int, keyFloats: Int, valueFloats: Int
        let int8QueryBytes: Int, int8ScoreInts: Int
        let floats: Int, bytes: Int, ints: Int, halves: Int

        init(options: AttentionOptions, blocks: Int, usesInt8: Bool, usesHalfValues: Bool) throws {
            paddedDim = (options.headDim + 15) & ~15
            valueDim = Swift.max(options.valueDim, 1)
            self.blocks = blocks
            queryFloats = try checkedProduct(paddedDim, rowsPerTask, what: "q")
            outFloats = try checkedProduct(valueDim, rowsPerTask, what: "v")
            keyFloats = try checkedProduct(keysPerTile, options.headDim, what: "k")
            valueFloats = try checkedProduct(keysPerTile, valueDim, what: "v")
            let groups = (options.headDim + 3) / 4
            int8QueryBytes = usesInt8 ? try checkedProduct(groups, rowsPerTask, 4, what: "q") : 0
            int8ScoreInts = usesInt8 ? keysPerTile * rowsPerTask : 1
            // Per block: Qᵀ, Oᵀ, the row states and the int8 row scales.
            let perBlock = try checkedProduct(queryFloats + outFloats + 4 * rowsPerTask, 1, what: "q")
            floats = try checkedProduct(perBlock, blocks, what: "q") + keysPerTile * rowsPerTask + keyFloats + valueFloats
            bytes = Swift.max(1, try checkedProduct(int8QueryBytes, blocks, what: "q"))
            ints = int8ScoreInts
            // P [keysPerTile][64] in fp16 and V [keysPerTile][valueDim] in fp16 twin words for the fp16 P·V.
            halves = usesHalfValues ? keysPerTile * rowsPerTask + 2 * valueFloats : 1
        }

        func scratch(floats base: UnsafeMutablePointer<Float>, bytes: UnsafeMutablePointer<UInt8>,
                     ints: UnsafeMutablePointer<Int32>, halves: UnsafeMutablePointer<UInt16>) -> TileScratch {
            let perBlock = queryFloats + outFloats + 4 * rowsPerTask
            let shared = base + perBlock * blocks
            return TileScratch(blockBase: base, blockFloats: perBlock, queryFloats: queryFloats, outFloats: outFloats,
                               int8Queries: bytes, int8QueryBytes: int8QueryBytes,
                               scoresT: shared, keys: shared + keysPerTile * rowsPerTask,
                               values: shared + keysPerTile * rowsPerTask + keyFloats, int8Scores: ints,
                               halfProbabilities: halves,
                               halfValues: UnsafeMutableRawPointer(halves + keysPerTile * rowsPerTask)
                                   .assumingMemoryBound(to: UInt32.self))
        }
    }

    /// One worker's scratch: per-block state for each block of a task, and the
    /// tiles the blocks share.
    struct TileScratch {
        let blockBase: UnsafeMutablePointer<Float>
        let blockFloats: Int, queryFloats: Int, outFloats: Int
        let int8Queries: UnsafeMutablePointer<UInt8>
        let int8QueryBytes: Int
        let scoresT: UnsafeMutablePointer<Float>  // [keysPerTile][64]: scores, then probabilities
        let keys: UnsafeMutablePointer<Float>     // [keysPerTile][headDim]: this tile's K rows, in fp32
        let values: UnsafeMutablePointer<Float>   // [keysPerTile][valueDim]: this tile's V rows, in fp32
        let int8Scores: UnsafeMutablePointer<Int32>    // [keysPerTile][64]: exact int32 Q·Kᵀ
        // fp16 P·V only (see attn_shim_pv_f16).
        let halfProbabilities: UnsafeMutablePointer<UInt16>  // [keysPerTile][64] fp16
        let halfValues: UnsafeMutablePointer<UInt32>         // [keysPerTile][valueDim] fp16 twin words

        func block(_ slot: Int) -> BlockScratch {
            let base = blockBase + slot &* blockFloats
            return BlockScratch(queryT: base, outT: base + queryFloats,
                                states: RowStates(base: base + queryFloats + outFloats),
                                int8Query: int8Queries + slot &* int8QueryBytes,
                                int8RowScales: base + queryFloats + outFloats + 3 * rowsPerTask)
        }
    }

    /// What one query block keeps for the whole task.
    struct BlockScratch {
        let queryT: UnsafeMutablePointer<Float>   // [paddedDim][64], scaled by options.scale
        let outT: UnsafeMutablePointer<Float>     // [valueDim][64]: the unnormalized output
        let states: RowStates
        let int8Query: UnsafeMutablePointer<UInt8>     // [groups][64][4]: Q in int8 (+128), int8 path only
        let int8RowScales: UnsafeMutablePointer<Float> // [64]: Q's dequantization scale · softmax scale
    }

    /// The online softmax state of a block's 64 rows, kept in scratch memory
    /// (SIMD16 values passed between functions would travel in xmm halves):
    ///   rowMax  m: the largest score seen so far in each row (−inf until a key is allowed);
    ///   rowSum  l: Σ exp(score − m) over the keys seen so far, in the current m's units;
    ///   rescale exp(m_old − m_new) of the last tile: how much O and l shrink when m grows.
    struct RowStates {
        let base: UnsafeMutablePointer<Float>   // [3][64]
        var rowMax: UnsafeMutablePointer<Float> { base }
        var rowSum: UnsafeMutablePointer<Float> { base + 64 }
        var rescale: UnsafeMutablePointer<Float> { base + 128 }

        func reset() {
            rowMax.update(repeating: -.infinity, count: 64)
            rowSum.update(repeating: 0, count: 64)
            rescale.update(repeating: 1, count: 64)
        }
    }

    /// Query blocks firstBlock ..< firstBlock + blockCount of one unit. Key tiles
    /// are [t·keysPerTile, (t+1)·keysPerTile); each is gathered once and every
    /// block takes the part of it that its rows may see, through its score path
    /// and its P·V path (FlashBlockPaths.swift).
    static func runTask<E: AttnStorage>(_ unit: AttentionUnit<E>, firstBlock: Int, blockCount: Int,
                                        options: AttentionOptions, scratch: TileScratch) {
        let dim = options.headDim, valueDim = options.valueDim
        var taskLow = Int.max, taskHigh = Int.min
        // Query rows that are not back to back (a (B, S, H, D) layout puts one head's
        // rows a page apart) miss the hardware prefetchers: each block asks for the
        // next block's rows while it packs its own.
        let prefetchesQuery = !(unit.q.colStride == 1 && unit.q.rowStride == dim)
        for slot in 0..<blockCount {
            let shape = BlockShape(unit, block: firstBlock + slot)
            if prefetchesQuery && slot + 1 < blockCount {
                let nextStart = shape.rowStart + rowsPerTask
                prefetchRows(unit.q, start: nextStart, count: Swift.min(rowsPerTask, unit.queries - nextStart), width: dim)
            }
            let range = blockKeys(unit, options: options, rowStart: shape.rowStart)
            if !range.isEmpty { taskLow = Swift.min(taskLow, range.lowerBound); taskHigh = Swift.max(taskHigh, range.upperBound) }
            let block = scratch.block(slot)
            packQuery(scorePath(unit, shape, options: options), unit, shape, options: options, into: block)
            block.outT.update(repeating: 0, count: valueDim * rowsPerTask)
            block.states.reset()
        }

        var tileStart = taskLow == Int.max ? 0 : taskLow / keysPerTile * keysPerTile
        while tileStart < taskHigh {
            let tileEnd = Swift.min(tileStart + keysPerTile, unit.keys)
            // The keys of this tile that some block of the task may see.
            let packStart = Swift.max(tileStart, taskLow), packEnd = Swift.min(tileEnd, taskHigh)
            tileStart += keysPerTile
            if packStart >= packEnd { continue }
            let packCount = packEnd - packStart
            let nextStart = Swift.max(tileStart, taskLow), nextEnd = Swift.min(tileStart + keysPerTile, unit.keys, taskHigh)
            if nextStart < nextEnd {
                if !isPackedInPlace(unit.v, width: valueDim) {
                    prefetchRows(unit.v, start: nextStart, count: nextEnd - nextStart, width: valueDim)
                }
                if unit.int8Keys == nil && !isPackedInPlace(unit.k, width: dim) {
                    prefetchRows(unit.k, start: nextStart, count: nextEnd - nextStart, width: dim)
                }
            }
            // K and V rows are copied into contiguous fp32 tiles: whatever the input's
            // strides and dtype, the inner loops then read L1-resident, unit-stride rows
            // (a (B, S, H, D) layout would otherwise touch one page per key).
            let valueRows = packRows(unit.v, start: packStart, count: packCount, width: valueDim, into: scratch.values)
            var keys = KeyTile()
            if unit.int8Keys != nil {
                // Read in place from the quantized keys.
            } else if usesBF16Dots(unit) {
                #if ATTNKIT_AVX512_BF16
                // K's bf16 pairs fit in the fp32 key tile: ceil(D/2) ≤ D words per key.
                let keyPairs = UnsafeMutableRawPointer(scratch.keys).assumingMemoryBound(to: UInt32.self)
                packKeyPairs(unsafeBitCast(unit.k, to: Strided2D<BFloat16>.self), start: packStart, count: packCount,
                             dim: dim, into: keyPairs)
                keys.pairs = UnsafePointer(keyPairs)
                #endif
            } else {
                keys.rows = packRows(unit.k, start: packStart, count: packCount, width: dim, into: scratch.keys)
            }
            // V is scanned once per tile for NaN/Inf, which need the slow P·V.
            let valuesFinite: Bool
            var halfValues = false
            if options.halfPrecisionValues {
                // fp16 P·V needs sums of 64 products of p <= 1 and |v| to stay well
                // inside fp16's range (65504): |v| <= 256.
                #if ATTNKIT_AVX512
                let largest = attn_shim_twin_rows_f16(valueRows, packCount, valueDim, scratch.halfValues)
                halfValues = largest <= 256
                #else
                let largest = largestMagnitude(valueRows, count: packCount * valueDim)
                #endif
                valuesFinite = largest.isFinite
            } else {
                valuesFinite = allFinite(valueRows, count: packCount * valueDim)
            }
            for slot in 0..<blockCount {
                let shape = BlockShape(unit, block: firstBlock + slot)
                let range = blockKeys(unit, options: options, rowStart: shape.rowStart)
                let start = Swift.max(packStart, range.lowerBound), end = Swift.min(packEnd, range.upperBound)
                if start >= end { continue }
                let offset = start - packStart, count = end - start
                let values = valueRows + offset &* valueDim
                let block = scratch.block(slot)
                // Which P·V a block takes depends on its own keys only, never on the
                // other blocks packed into its tile: tasks group blocks differently
                // for each thread count (the tail split), and the paths round
                // differently. A tile that passed its scan passes for every block.
                var blockFinite = valuesFinite, blockHalf = halfValues
                if !valuesFinite || (options.halfPrecisionValues && !halfValues) {
                    let largest = largestMagnitude(values, count: count &* valueDim)
                    blockFinite = largest.isFinite
                    #if ATTNKIT_AVX512
                    if options.halfPrecisionValues { blockHalf = largest <= 256 }
                    #endif
                }
                let scores = scorePath(unit, shape, options: options)
                score(scores, unit, shape, block: block, keys: keys, start: start, offset: offset, count: count,
                      options: options, scratch: scratch)
                transformScores(unit, options: options, rowStart: shape.rowStart, rows: shape.rows,
                                activeChunks: shape.activeChunks, tileStart: start, tileKeys: count,
                                scores: scratch.scoresT)
                softmaxAndAccumulate(valuePath(scores, shape, finite: blockFinite, half: blockHalf), unit, shape,
                                     block: block, values: values, valueOffset: offset, start: start, count: count,
                                     options: options, scratch: scratch)
            }
        }
        for slot in 0..<blockCount {
            let shape = BlockShape(unit, block: firstBlock + slot)
            // Oᵀ is [valueDim][64]; a row-wise block keeps O as [rows][valueDim].
            let rowMajor = scorePath(unit, shape, options: options) == .rows
            finish(unit, options: options, rowStart: shape.rowStart, rows: shape.rows, output: scratch.block(slot).outT,
                   rowStep: rowMajor ? valueDim : 1, dimStep: rowMajor ? 1 : rowsPerTask, states: scratch.block(slot).states)
        }
    }

    /// Whether this build scores bf16 inputs with vdpbf16ps (the cooperlake build only).
    @inline(__always)
    static func usesBF16Dots<E>(_ unit: AttentionUnit<E>) -> Bool {
        #if ATTNKIT_AVX512_BF16
        return E.self == BFloat16.self && unit.int8Keys == nil && unit.int8QuerySource == nil
        #else
        return false
        #endif
    }

    /// Qᵀ[d][row] = scale·q[rowStart+row][d], zero for padded rows and dims.
    static func packQueryTransposed<E: AttnStorage>(_ unit: AttentionUnit<E>, rowStart: Int, rows: Int, dim: Int,
                                                     paddedDim: Int, scale: Float, into queryT: UnsafeMutablePointer<Float>) {
        #if ATTNKIT_AVX512
        // 16 rows × 16 dims at a time: load the rows, transpose in registers,
        // store 16 contiguous Qᵀ rows.
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 16) { buffer in
            let block = buffer.baseAddress!
            let scaleVector = SIMD16<Float>(repeating: scale)
            for chunk in 0..<chunks {
                let chunkRows = Swift.min(16, rows - chunk &* 16)
                var d0 = 0
                while d0 < paddedDim {   // paddedDim is a multiple of 16, and d0 < dim
                    let width = Swift.min(16, dim - d0)
                    for r in 0..<16 {
                        block[r] = r < chunkRows
                            ? loadRow16(unit.q.pointer(rowStart + chunk &* 16 + r, d0), colStride: unit.q.colStride,
                                        count: width) * scaleVector
                            : SIMD16<Float>()
                    }
                    Transpose16.inPlace(block)
                    for c in 0..<16 { store16(block[c], queryT + (d0 + c) &* rowsPerTask + chunk &* 16) }
                    d0 += 16
                }
            }
        }
        #else
        queryT.update(repeating: 0, count: paddedDim * rowsPerTask)
        for row in 0..<rows {
            let source = unit.q.pointer(rowStart + row, 0)
            for d in 0..<dim {
                queryT[d &* rowsPerTask &+ row] = E.toFloat(source[d &* unit.q.colStride]) * scale
            }
        }
        #endif
    }

    /// `count` (1...16) elements of a row, `colStride` apart, in fp32; zero past `count`.
    @inline(__always)
    static func loadRow16<E: AttnStorage>(_ from: UnsafePointer<E>, colStride: Int, count: Int) -> SIMD16<Float> {
        #if ATTNKIT_AVX512
        if count == 16 && colStride == 1 {
            let raw = UnsafeRawPointer(from)
            if E.self == Float.self { return raw.loadUnaligned(as: SIMD16<Float>.self) }
            if E.self == Int8.self {   // int8 KV cache levels: vpmovsxbd, vcvtdq2ps
                return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw.loadUnaligned(as: SIMD2<Int64>.self)))
            }
            // vcvtph2ps, or bf16 widened by a 16-bit shift.
            if E.self == Float16.self { return _mm512_cvtph_ps(raw.loadUnaligned(as: SIMD4<Int64>.self)) }
            if E.self == BFloat16.self {
                let widened = _mm512_slli_epi32(_mm512_cvtepu16_epi32(raw.loadUnaligned(as: SIMD4<Int64>.self)), 16)
                return unsafeBitCast(widened, to: SIMD16<Float>.self)
            }
        }
        #else
        if count == 16 && colStride == 1 {
            let raw = UnsafeRawPointer(from)
            if E.self == Float.self { return raw.loadUnaligned(as: SIMD16<Float>.self) }
            #if ATTNKIT_AVX2
            if E.self == Int8.self {   // int8 KV cache levels: vpmovsxbd, vcvtdq2ps, 8 at a time
                let low: SIMD8<Float> = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(raw.loadUnaligned(as: SIMD2<Int64>.self)))
                let high: SIMD8<Float> = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(   // 8 bytes: no read past the 16
                    SIMD2<Int64>(raw.loadUnaligned(fromByteOffset: 8, as: Int64.self), 0)))
                return SIMD16(lowHalf: low, highHalf: high)
            }
            #endif
            // (The portable build converts int8 lane by lane below: the standard
            // library's generic vector conversions are specializations every tier
            // shares under one symbol; KernelMath.swift says why that matters.)
            // bf16 is the high half of an fp32: widen and shift.
            #if ATTNKIT_AVX2
            if E.self == BFloat16.self {   // vpmovzxwd, vpslld, 8 at a time
                let low = _mm256_slli_epi32(_mm256_cvtepu16_epi32(raw.loadUnaligned(as: SIMD2<Int64>.self)), 16)
                let high = _mm256_slli_epi32(_mm256_cvtepu16_epi32(raw.loadUnaligned(fromByteOffset: 16,
                                                                                      as: SIMD2<Int64>.self)), 16)
                return SIMD16(lowHalf: unsafeBitCast(low, to: SIMD8<Float>.self),
                              highHalf: unsafeBitCast(high, to: SIMD8<Float>.self))
            }
            #endif
            if E.self == BFloat16.self {
                let bits = SIMD16<UInt32>(truncatingIfNeeded: raw.loadUnaligned(as: SIMD16<UInt16>.self)) &<< 16
                return unsafeBitCast(bits, to: SIMD16<Float>.self)
            }
            #if ATTNKIT_AVX2
            if E.self == Float16.self {   // vcvtph2ps (F16C), 8 at a time
                let low: SIMD8<Float> = _mm256_cvtph_ps(raw.loadUnaligned(as: SIMD2<Int64>.self))
                let high: SIMD8<Float> = _mm256_cvtph_ps(raw.loadUnaligned(fromByteOffset: 16, as: SIMD2<Int64>.self))
                return SIMD16(lowHalf: low, highHalf: high)
            }
            #endif
        }
        #endif
        var vector = SIMD16<Float>()
        for lane in 0..<count { vector[lane] = E.toFloat(from[lane &* colStride]) }
        return vector
    }

    /// Asks for rows [start, start+count) of a source that packRows will copy
    /// to be brought into L2 while the current tile is computed: a strided
    /// (B, S, H, D) source misses the hardware prefetchers.
    @inline(__always)
    static func prefetchRows<E>(_ source: Strided2D<E>, start: Int, count: Int, width: Int) {
        let rowBytes = width &* source.colStride &* MemoryLayout<E>.stride
        for row in start..<(start + count) {
            let base = UnsafeRawPointer(source.pointer(row, 0))
            var offset = 0
            while offset < rowBytes { attn_shim_prefetch_l2(base + offset); offset += 64 }
        }
    }

    /// Rows [start, start+count) of `source` as contiguous fp32 rows of `width`:
    /// the source itself when it already is that (fp32, rows back to back),
    /// otherwise a copy in `tile`.
    @inline(__always)
    static func isPackedInPlace<E>(_ source: Strided2D<E>, width: Int) -> Bool {
        E.self == Float.self && source.colStride == 1 && source.rowStride == width
    }

    @inline(__always)
    static func packRows<E: AttnStorage>(_ source: Strided2D<E>, start: Int, count: Int, width: Int,
                                         into tile: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        if isPackedInPlace(source, width: width) {
            return UnsafeRawPointer(source.pointer(start, 0)).assumingMemoryBound(to: Float.self)
        }
        let vectorWidth = width & ~15
        for row in 0..<count {
            let from = source.pointer(start + row, 0), to = tile + row &* width
            var col = 0
            while col < vectorWidth {
                store16(loadRow16(from + col &* source.colStride, colStride: source.colStride, count: 16), to + col)
                col += 16
            }
            while col < width { to[col] = E.toFloat(from[col &* source.colStride]); col += 1 }
        }
        return UnsafePointer(tile)
    }

    /// Softcap, ALiBi, the additive mask, then the masks that exclude keys
    /// (window/causal range, boolean mask), in that order (docs/semantics.md §0).
    /// Excluded scores become −inf here, in fp32.
    static func transformScores<E: AttnStorage>(_ unit: AttentionUnit<E>, options: AttentionOptions, rowStart: Int,
                                                rows: Int, activeChunks: Int, tileStart: Int, tileKeys: Int,
                                                scores: UnsafeMutablePointer<Float>) {
        let negativeInfinity = SIMD16<Float>(repeating: -.infinity)
        if options.softcap > 0 {
            let cap = SIMD16<Float>(repeating: options.softcap), inverseCap = SIMD16<Float>(repeating: 1 / options.softcap)
            for index in stride(from: 0, to: tileKeys * rowsPerTask, by: 16) {
                store16(cap * fastTanh(load16(scores + index) * inverseCap), scores + index)
            }
        }
        let lane = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        if unit.alibiSlope != 0 {
            let slope = SIMD16<Float>(repeating: -unit.alibiSlope)
            for key in 0..<tileKeys {
                for chunk in 0..<activeChunks {
                    let rowIndex = lane &+ SIMD16(repeating: Int32(truncatingIfNeeded: rowStart + chunk * 16))
                    let distance = rowIndex &+ SIMD16(repeating: Int32(truncatingIfNeeded: unit.diagonal - tileStart - key))
                    var magnitude = distance
                    magnitude.replace(with: 0 &- distance, where: distance .< SIMD16<Int32>())
                    let s = scores + (key &* rowsPerTask &+ chunk &* 16)
                    store16(load16(s) + slope * SIMD16<Float>(magnitude), s)
                }
            }
        }
        switch unit.mask {
        case .none:
            break
        case .additive(let bias):
            for key in 0..<tileKeys {
                let s = scores + key &* rowsPerTask
                for row in 0..<rows { s[row] += E.toFloat(bias.pointer(rowStart + row, tileStart + key).pointee) }
            }
        case .keep(let keep):
            for key in 0..<tileKeys {
                let s = scores + key &* rowsPerTask
                for row in 0..<rows where keep.pointer(rowStart + row, tileStart + key).pointee == 0 { s[row] = -.infinity }
            }
        }
        // The window/causal range, only where the tile crosses a row's bound.
        let rowLast = rowStart + rows - 1
        let tileLast = tileStart + tileKeys - 1
        let needsLow = options.windowLeft >= 0 && tileStart < rowLast + unit.diagonal - options.windowLeft
        let needsHigh = options.windowRight >= 0 && tileLast > rowStart + unit.diagonal + options.windowRight
        if needsLow || needsHigh {
            for key in 0..<tileKeys {
                let j = tileStart + key
                for chunk in 0..<activeChunks {
                    let rowIndex = lane &+ SIMD16(repeating: Int32(truncatingIfNeeded: rowStart + chunk * 16))
                    var excluded = SIMDMask<SIMD16<Int32>>()
                    if needsLow {   // j < i + diagonal − windowLeft
                        excluded .|= rowIndex .> SIMD16(repeating: Int32(truncatingIfNeeded: j - unit.diagonal + options.windowLeft))
                    }
                    if needsHigh {  // j > i + diagonal + windowRight
                        excluded .|= rowIndex .< SIMD16(repeating: Int32(truncatingIfNeeded: j - unit.diagonal - options.windowRight))
                    }
                    let s = scores + (key &* rowsPerTask &+ chunk &* 16)
                    var values = load16(s)
                    values.replace(with: negativeInfinity, where: excluded)
                    store16(values, s)
                }
            }
        }
    }

    /// The online softmax step for one chunk of rows over one tile of keys:
    /// turns the tile's scores into exp(score − m_new) in place and updates m and l.
    @inline(__always)
    static func updateSoftmax(_ states: RowStates, chunk: Int, scores: UnsafeMutablePointer<Float>, tileKeys: Int) {
        let column = scores + chunk &* 16
        let oldMax = load16(states.rowMax + chunk &* 16)
        // m_new = max(m_old, max over this tile's keys). The max may skip a NaN
        // score, but exp(NaN − m) is NaN, so l and the row's output turn NaN:
        // NaN input is never hidden.
        // Four running maxima, so the loop is not one chain of dependent vmaxps.
        var max0 = oldMax, max1 = oldMax, max2 = oldMax, max3 = oldMax
        var key = 0
        while key + 4 <= tileKeys {
            let p = column + key &* rowsPerTask
            max0 = lanewiseMax(max0, load16(p)); max1 = lanewiseMax(max1, load16(p + rowsPerTask))
            max2 = lanewiseMax(max2, load16(p + 2 &* rowsPerTask)); max3 = lanewiseMax(max3, load16(p + 3 &* rowsPerTask))
            key += 4
        }
        while key < tileKeys { max0 = lanewiseMax(max0, load16(column + key &* rowsPerTask)); key += 1 }
        let tileMax = lanewiseMax(lanewiseMax(max0, max1), lanewiseMax(max2, max3))
        // Rows with every key so far excluded still have m = −inf: their
        // probabilities are 0 and nothing is rescaled, so exp(−inf − (−inf))
        // is never evaluated into the result.
        let negativeInfinity = SIMD16<Float>(repeating: -.infinity), zero = SIMD16<Float>()
        let noKeyYet = tileMax .== negativeInfinity
        var safeMax = tileMax
        safeMax.replace(with: zero, where: noKeyYet)
        // exp(m_old − m_new) <= 1 rescales what was accumulated against the old
        // maximum so that O and l are both expressed relative to m_new.
        var rescale = softmaxExp(oldMax - safeMax)
        rescale.replace(with: zero, where: noKeyYet)
        var tileSum = SIMD16<Float>()
        for key in 0..<tileKeys {
            let p = column + key &* rowsPerTask
            let probability = softmaxExp(load16(p) - safeMax)   // exp(−inf − finite) = 0 for excluded keys
            store16(probability, p)
            tileSum += probability
        }
        // l_new = l_old·exp(m_old − m_new) + Σ_tile exp(s − m_new)
        let sumPointer = states.rowSum + chunk &* 16
        store16(load16(sumPointer) * rescale + tileSum, sumPointer)
        store16(tileMax, states.rowMax + chunk &* 16)
        store16(rescale, states.rescale + chunk &* 16)
    }

    /// Inverted dropout on the tile's probabilities (after they were added to l,
    /// so the softmax normalizer is that of the undropped row, as in torch).
    static func applyDropout<E>(_ unit: AttentionUnit<E>, options: AttentionOptions, rowStart: Int, activeChunks: Int,
                                tileStart: Int, tileKeys: Int, probabilities: UnsafeMutablePointer<Float>) {
        let key = dropoutStreamKey(seed: options.seed, stream: unit.dropoutStream)
        let threshold = SIMD16<UInt32>(repeating: dropoutThreshold(options.dropoutP))
        let keepScale = SIMD16<Float>(repeating: 1 / (1 - options.dropoutP))
        let lane = SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        for column in 0..<tileKeys {
            for chunk in 0..<activeChunks {
                let rows = lane &+ SIMD16(repeating: UInt32(truncatingIfNeeded: rowStart + chunk * 16))
                let bits = dropoutBits(key: key, rows: rows, col: UInt32(truncatingIfNeeded: tileStart + column))
                let p = probabilities + (column &* rowsPerTask &+ chunk &* 16)
                var values = load16(p) * keepScale
                values.replace(with: SIMD16<Float>(), where: bits .< threshold)
                store16(values, p)
            }
        }
    }

    /// out = O/l, with O read at output[row·rowStep + e·dimStep]; a row with no
    /// allowed key (l = 0) gives 0 and lse = options.emptyRowLSE. lse = m + log(l),
    /// natural log.
    static func finish<E: AttnStorage>(_ unit: AttentionUnit<E>, options: AttentionOptions, rowStart: Int, rows: Int,
                                       output: UnsafeMutablePointer<Float>, rowStep: Int, dimStep: Int,
                                       states: RowStates) {
        for row in 0..<rows {
            let sum = states.rowSum[row], rowMax = states.rowMax[row]
            let empty = sum == 0
            let inverse: Float = empty ? 0 : 1 / sum
            let destination = unit.out.pointer(rowStart + row, 0)
            for e in 0..<options.valueDim {
                destination[e &* unit.out.colStride] = E.fromFloat(output[row &* rowStep &+ e &* dimStep] * inverse)
            }
            if let lse = unit.lse {
                lse[(rowStart + row) &* unit.lseStride] = empty ? options.emptyRowLSE : rowMax + logf(sum)
            }
        }
    }
}
