import AttnKitCore
import _AttnKitShims

// Compiled once per ISA (see Package.swift).

/// The two choices a query block of FlashEngine makes: how it computes its
/// scores S = Q·Kᵀ (fixed for the block, so its query is packed for that path
/// once), and how it accumulates O += P·V (chosen per key tile, from the
/// block's own keys only). Each choice is one value and one function, so the
/// engine's loop names a path instead of walking a ladder of branches.
extension FlashEngine {
    /// How a block computes its scores.
    enum ScorePath {
        /// SageAttention-style int8 Q·Kᵀ with int32 sums (int8 units).
        case int8
        /// vdpbf16ps on bf16 pairs (the cooperlake build, bf16 units).
        case bf16Pairs
        /// One query row per lane group, for blocks of a few rows (RowwiseTile).
        case rows
        /// Qᵀ with one 16-row chunk: blocks of at most 16 rows.
        case narrow
        /// Qᵀ with four 16-row chunks.
        case wide
    }

    /// How a block accumulates P·V for one tile.
    enum ValuePath: Equatable {
        /// fp16 products with fp32 sums (AVX512_FP16 builds, |v| ≤ 256 in the block's keys).
        case half
        /// Row-major O for a few rows (the `rows` score path), all values finite.
        case rows
        /// Qᵀ-layout O, one chunk, all values finite.
        case narrow
        /// Qᵀ-layout O, four chunks, all values finite.
        case wide
        /// Some value is NaN or Inf: zero weights skip their keys, so an excluded
        /// key's value never reaches a row. `rowMajor` says which O layout.
        case skippingExcluded(rowMajor: Bool)
    }

    /// The rows of a block and the parts of the tiles it uses.
    struct BlockShape {
        let rowStart: Int, rows: Int
        /// 1 for a block of at most 16 rows (a short sequence, decoding, a last
        /// partial block): the lanes of the other chunks are never read for it.
        var activeChunks: Int { rows <= 16 ? 1 : chunks }

        init<E>(_ unit: AttentionUnit<E>, block: Int) {
            rowStart = block * rowsPerTask
            rows = Swift.min(rowsPerTask, unit.queries - rowStart)
        }
    }

    @inline(__always)
    static func scorePath<E>(_ unit: AttentionUnit<E>, _ shape: BlockShape, options: AttentionOptions) -> ScorePath {
        if unit.int8Keys != nil { return .int8 }
        if usesBF16Dots(unit) { return .bf16Pairs }
        if usesRowwise(unit, rows: shape.rows, options: options) { return .rows }
        return shape.activeChunks == 1 ? .narrow : .wide
    }

    /// Packs the block's queries for `path` into its scratch.
    static func packQuery<E: AttnStorage>(_ path: ScorePath, _ unit: AttentionUnit<E>, _ shape: BlockShape,
                                          options: AttentionOptions, into block: BlockScratch) {
        let dim = options.headDim, paddedDim = (dim + 15) & ~15, groups = (dim + 3) / 4
        switch path {
        case .int8:
            if let source = unit.int8QuerySource {
                packQueryPrequantized(source, rowStart: shape.rowStart, rows: shape.rows, dim: dim, groups: groups,
                                      softmaxScale: options.scale, into: block.int8Query, rowScales: block.int8RowScales)
            } else {
                packQueryInt8(unit, rowStart: shape.rowStart, rows: shape.rows, dim: dim, groups: groups,
                              mode: options.int8Query, softmaxScale: options.scale, into: block.int8Query,
                              rowScales: block.int8RowScales)
            }
        case .bf16Pairs:
            #if ATTNKIT_AVX512_BF16
            // The bf16 pairs fit in Qᵀ's fp32 scratch: ceil(D/2) ≤ paddedDim rows of 64 lanes.
            packQueryPairs(unsafeBitCast(unit, to: AttentionUnit<BFloat16>.self), rowStart: shape.rowStart,
                           rows: shape.rows, dim: dim,
                           into: UnsafeMutableRawPointer(block.queryT).assumingMemoryBound(to: UInt32.self))
            #endif
        case .rows:
            packQueryRows(unit, rowStart: shape.rowStart, rows: shape.rows, dim: dim, paddedDim: paddedDim,
                          scale: options.scale, into: block.queryT)
        case .narrow, .wide:
            packQueryTransposed(unit, rowStart: shape.rowStart, rows: shape.rows, dim: dim, paddedDim: paddedDim,
                                scale: options.scale, into: block.queryT)
        }
    }

    /// The tile's K in the form the score paths read: fp32 rows, or bf16 pairs
    /// (int8 keys are read in place from the unit).
    struct KeyTile {
        var rows: UnsafePointer<Float>?
        var pairs: UnsafePointer<UInt32>?
    }

    /// Scores of the block's rows against `count` keys from `start` (tile offset
    /// `offset`) into scratch.scoresT, already multiplied by the softmax scale.
    @inline(__always)
    static func score<E>(_ path: ScorePath, _ unit: AttentionUnit<E>, _ shape: BlockShape, block: BlockScratch,
                         keys: KeyTile, start: Int, offset: Int, count: Int, options: AttentionOptions,
                         scratch: TileScratch) {
        let dim = options.headDim
        switch path {
        case .int8:
            guard let int8 = unit.int8Keys else { return }
            int8ScoreTile(queryU8: block.int8Query, groups: (dim + 3) / 4, keys: int8.values + start &* int8.paddedDim,
                          keySums: int8.sums + start, keyCount: count, into: scratch.int8Scores,
                          dequantize: ScoreScales(rowScales: block.int8RowScales, keyScales: int8.scales + start,
                                                  scores: scratch.scoresT))
        case .bf16Pairs:
            #if ATTNKIT_AVX512_BF16
            guard let pairs = keys.pairs else { return }
            let pairCount = (dim + 1) / 2
            bf16ScoreTile(queryPairs: UnsafeRawPointer(block.queryT).assumingMemoryBound(to: UInt32.self),
                          pairCount: pairCount, keyPairs: pairs + offset &* pairCount, keyCount: count,
                          scale: options.scale, into: scratch.scoresT)
            #endif
        case .rows:
            guard let rows = keys.rows else { return }
            scoreTileRows(queryRows: block.queryT, rows: shape.rows, dim: dim, paddedDim: (dim + 15) & ~15,
                          keys: rows + offset &* dim, keyStride: dim, keyCount: count, into: scratch.scoresT)
        case .narrow:
            guard let rows = keys.rows else { return }
            scoreTileNarrow(queryT: block.queryT, realDim: dim, keys: rows + offset &* dim, keyCount: count,
                            into: scratch.scoresT)
        case .wide:
            guard let rows = keys.rows else { return }
            scoreTile(queryT: block.queryT, realDim: dim, keys: rows + offset &* dim, keyCount: count,
                      into: scratch.scoresT)
        }
    }

    /// The P·V path of a block for one tile. `finite`: the block's values in
    /// this tile are all finite; `half`: the fp16 P·V may take them.
    @inline(__always)
    static func valuePath(_ score: ScorePath, _ shape: BlockShape, finite: Bool, half: Bool) -> ValuePath {
        if half { return .half }
        let rowMajor = score == .rows
        if !finite { return .skippingExcluded(rowMajor: rowMajor) }
        if rowMajor { return .rows }
        return shape.activeChunks == 1 ? .narrow : .wide
    }

    /// The online-softmax step and O += P·V for one tile of one block.
    /// scratch.scoresT holds the transformed scores on entry.
    @inline(__always)
    static func softmaxAndAccumulate<E>(_ path: ValuePath, _ unit: AttentionUnit<E>, _ shape: BlockShape,
                                        block: BlockScratch, values: UnsafePointer<Float>, valueOffset: Int,
                                        start: Int, count: Int, options: AttentionOptions, scratch: TileScratch) {
        let valueDim = options.valueDim, states = block.states
        // fp16 P·V without dropout takes P from the softmax step straight in fp16
        // (P is never stored in fp32).
        let halfSoftmax = path == .half && options.dropoutP == 0
        if !halfSoftmax {
            for chunk in 0..<shape.activeChunks {
                updateSoftmax(states, chunk: chunk, scores: scratch.scoresT, tileKeys: count)
            }
        }
        if options.dropoutP > 0 {
            applyDropout(unit, options: options, rowStart: shape.rowStart, activeChunks: shape.activeChunks,
                         tileStart: start, tileKeys: count, probabilities: scratch.scoresT)
        }
        switch path {
        case .half:
            #if ATTNKIT_AVX512
            if halfSoftmax {
                attn_shim_softmax_f16(scratch.scoresT, count, shape.activeChunks, states.rowMax, states.rowSum,
                                      states.rescale, scratch.halfProbabilities)
            } else {
                attn_shim_f32_to_f16(scratch.scoresT, scratch.halfProbabilities, count &* rowsPerTask)
            }
            attn_shim_pv_f16(block.outT, valueDim, scratch.halfProbabilities, scratch.halfValues + valueOffset &* valueDim,
                             count, states.rescale)
            #endif
        case .rows:
            accumulateValuesRows(outRows: block.outT, rows: shape.rows, valueDim: valueDim, probabilities: scratch.scoresT,
                                 values: values, keys: count, rescale: states.rescale)
        case .narrow:
            accumulateValuesNarrow(outT: block.outT, valueDim: valueDim, probabilities: scratch.scoresT,
                                   values: values, keys: count, rescale: states.rescale)
        case .wide:
            accumulateValues(outT: block.outT, valueDim: valueDim, probabilities: scratch.scoresT,
                             values: values, keys: count, rescale: states.rescale)
        case .skippingExcluded(rowMajor: true):
            accumulateValuesSkippingExcluded(output: block.outT, rowStep: valueDim, dimStep: 1, rows: shape.rows,
                                             valueDim: valueDim, probabilities: scratch.scoresT, values: values,
                                             keys: count, rescale: states.rescale)
        case .skippingExcluded(rowMajor: false):
            accumulateValuesSkippingExcluded(output: block.outT, rowStep: 1, dimStep: rowsPerTask, rows: rowsPerTask,
                                             valueDim: valueDim, probabilities: scratch.scoresT, values: values,
                                             keys: count, rescale: states.rescale)
        }
    }
}
