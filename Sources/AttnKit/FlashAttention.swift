import AttnKitCore
/// flash-attn 2.8's forward on the CPU (docs/semantics.md §3), for packed varlen
/// batches and for fixed-length batches.
///
///     varlen:  q (total_q, Hq, D)  k (total_k, Hk, D)  v (total_k, Hk, Dv)  out (total_q, Hq, Dv)
///              lse (Hq, total_q)
///     batched: q (B, Sq, Hq, D)    k (B, Sk, Hk, D)    v (B, Sk, Hk, Dv)    out (B, Sq, Hq, Dv)
///              lse (B, Hq, Sq)
///
/// Causal masking is bottom-right: key j is allowed for query i iff
/// j <= i + Sk − Sq, per sequence. The window (left, right) allows
/// i + Sk − Sq − left <= j <= i + Sk − Sq + right, −1 meaning unbounded;
/// causal forces right = 0. Softcap, then ALiBi (−slope·|i + Sk − Sq − j|),
/// then the masks. A row with no allowed key gives out 0 and lse +inf.
public struct FlashAttention {
    public var causal: Bool
    /// nil: 1/sqrt(D).
    public var softmaxScale: Double?
    public var windowLeft: Int
    public var windowRight: Int
    public var softcap: Double
    public var dropoutP: Double
    public var seed: UInt64
    /// QKᵀ in int8 (SageAttention-style, as Int8ScaledDotProductAttention); nil: fp32.
    public var int8: Int8QK?
    /// nil: flash-attn's bottom-right alignment, the key aligned with query i is
    /// i + Sk − Sq in each sequence. Set: it is i + diagonal in every sequence, for
    /// a block of a longer sequence (q's first position minus k's first position),
    /// in every mask and ALiBi rule. |diagonal| <= 2^30.
    public var diagonal: Int? = nil

    public struct Int8QK {
        public var qkQuant: QKQuantization
        /// Subtract K's mean over each sequence's tokens first; not with softcap,
        /// which is not shift-invariant.
        public var smoothK: Bool
        public init(qkQuant: QKQuantization = .perBlock, smoothK: Bool = true) {
            self.qkQuant = qkQuant; self.smoothK = smoothK
        }
    }

    public init(causal: Bool = false, softmaxScale: Double? = nil, windowLeft: Int = -1, windowRight: Int = -1,
                softcap: Double = 0, dropoutP: Double = 0, seed: UInt64 = 0) {
        self.causal = causal; self.softmaxScale = softmaxScale
        self.windowLeft = windowLeft; self.windowRight = windowRight
        self.softcap = softcap; self.dropoutP = dropoutP; self.seed = seed
    }

    /// ALiBi slopes: fp32, (H,) or (B, H).
    public typealias Slopes = StridedTensor<Float>

    public func varlen<E: AttnStorage>(q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
                                       cuSeqlensQ: [Int], cuSeqlensK: [Int], maxSeqlenQ: Int, maxSeqlenK: Int,
                                       alibiSlopes: Slopes? = nil, out: MutableStridedTensor<E>,
                                       lse: MutableStridedTensor<Float>? = nil, probs: MutableStridedTensor<E>? = nil,
                                       threads: Int = ThreadSettings.numThreads, useReference: Bool = false) throws {
        try varlen(q: q, k: k, v: v, boundariesQ: SequenceBoundaries(cuSeqlensQ), boundariesK: SequenceBoundaries(cuSeqlensK),
                   maxSeqlenQ: maxSeqlenQ, maxSeqlenK: maxSeqlenK, alibiSlopes: alibiSlopes, out: out, lse: lse,
                   probs: probs, threads: threads, useReference: useReference)
    }

    /// The varlen forward with cu_seqlens read only if the call writes anything.
    public func varlen<E: AttnStorage>(q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
                                       boundariesQ: SequenceBoundaries, boundariesK: SequenceBoundaries,
                                       maxSeqlenQ: Int, maxSeqlenK: Int,
                                       alibiSlopes: Slopes? = nil, out: MutableStridedTensor<E>,
                                       lse: MutableStridedTensor<Float>? = nil, probs: MutableStridedTensor<E>? = nil,
                                       threads: Int = ThreadSettings.numThreads, useReference: Bool = false) throws {
        let nothing = writesNothing(out, lse, probs)
        let units = try varlenUnits(q: q, k: k, v: v, boundariesQ: boundariesQ, boundariesK: boundariesK,
                                    maxSeqlenQ: maxSeqlenQ, maxSeqlenK: maxSeqlenK, alibiSlopes: alibiSlopes,
                                    out: out, lse: lse, writesNothing: nothing, computesInFloat: E.self != Double.self)
        let targets = try probs.map {
            try probabilityTargets($0, units: units, batch: boundariesQ.count - 1, heads: q.shape[1])
        }
        if nothing { return }   // checked, S_dmask included, as in batched
        try execute(units: units, headDim: q.shape[2], valueDim: v.shape[2], threads: threads, useReference: useReference,
                    probabilities: targets)
    }

    /// Checks the varlen layout and splits it into (sequence, head) units, sequence-major.
    func varlenUnits<E: AttnStorage>(q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
                                     boundariesQ: SequenceBoundaries, boundariesK: SequenceBoundaries,
                                     maxSeqlenQ: Int, maxSeqlenK: Int,
                                     alibiSlopes: Slopes?, out: MutableStridedTensor<E>,
                                     lse: MutableStridedTensor<Float>?, writesNothing: Bool,
                                     computesInFloat: Bool) throws -> [AttentionUnit<E>] {
        try varlenPlan(q: q, k: k, v: v, boundariesQ: boundariesQ, boundariesK: boundariesK, maxSeqlenQ: maxSeqlenQ,
                       maxSeqlenK: maxSeqlenK, alibiSlopes: alibiSlopes, out: out, lse: lse, writesNothing: writesNothing,
                       computesInFloat: computesInFloat).units
    }

    /// varlenUnits, with the cu_seqlens values it read (empty when the call writes nothing).
    func varlenPlan<E: AttnStorage>(q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
                                    boundariesQ: SequenceBoundaries, boundariesK: SequenceBoundaries,
                                    maxSeqlenQ: Int, maxSeqlenK: Int,
                                    alibiSlopes: Slopes?, out: MutableStridedTensor<E>,
                                    lse: MutableStridedTensor<Float>?, writesNothing: Bool,
                                    computesInFloat: Bool) throws -> (units: [AttentionUnit<E>], offsetsQ: [Int], offsetsK: [Int]) {
        let layout = "(total, heads, head_dim)"
        try requireRank("q", q.shape, 3, layout)
        try requireRank("k", k.shape, 3, layout)
        try requireRank("v", v.shape, 3, layout)
        try requireRank("out", out.shape, 3, layout)
        guard maxSeqlenQ >= 0, maxSeqlenK >= 0 else {
            throw AttnError.invalidArgument(argument: "max_seqlen", rule: "must be >= 0, got \(min(maxSeqlenQ, maxSeqlenK))")
        }
        guard boundariesQ.count >= 1 else {
            throw AttnError.shape(argument: "cu_seqlens_q", rule: "must have at least one entry (shape [batch + 1])")
        }
        // With outputs to write, the offsets are read and checked first (q's, then k's), as
        // before the count rule; with none, they are never read.
        var offsets: (q: SequenceOffsets, k: SequenceOffsets)? = nil
        if !writesNothing {
            offsets = (try SequenceOffsets("cu_seqlens_q", values: boundariesQ.read(), total: q.shape[0],
                                           maxLength: maxSeqlenQ, maxName: "max_seqlen_q"),
                       try SequenceOffsets("cu_seqlens_k", values: boundariesK.read(), total: k.shape[0],
                                           maxLength: maxSeqlenK, maxName: "max_seqlen_k"))
        }
        guard boundariesQ.count == boundariesK.count else {
            throw AttnError.shape(argument: "cu_seqlens_k",
                                  rule: "must have as many entries as cu_seqlens_q (\(boundariesQ.count)), got \(boundariesK.count)")
        }
        try requireExtent("v", v.shape, axis: 0, equals: k.shape[0], "k.shape[0]")
        let geometry = try Geometry(q: q, k: k, v: v, out: out, sequenceAxis: 0, headAxis: 1, dimAxis: 2)
        if let lse {
            try requireRank("softmax_lse", lse.shape, 2, "(heads, total_q)")
            try requireExtent("softmax_lse", lse.shape, axis: 0, equals: geometry.queryHeads, "q.shape[1]")
            try requireExtent("softmax_lse", lse.shape, axis: 1, equals: q.shape[0], "q.shape[0]")
            try validateLayout("softmax_lse", shape: lse.shape, strides: lse.strides, hasData: lse.base != nil)
            try validateWritable("softmax_lse", shape: lse.shape, strides: lse.strides)
        }
        let slopes = try SlopeTable(alibiSlopes, batch: boundariesQ.count - 1, heads: geometry.queryHeads)
        try validateOptions(headDim: geometry.headDim, computesInFloat: computesInFloat)
        // A call with no output elements is done once it is checked: cu_seqlens
        // is never read and its units (sequences × heads, any of which may be
        // huge) are never listed.
        guard let (sequencesQ, sequencesK) = offsets else { return ([], [], []) }   // writes nothing
        try requireAllocatable(try checkedProduct(sequencesQ.count, geometry.queryHeads, what: "cu_seqlens_q"),
                               of: AttentionUnit<E>.self)
        var units: [AttentionUnit<E>] = []
        units.reserveCapacity(sequencesQ.count * geometry.queryHeads)
        for sequence in 0..<sequencesQ.count {
            let rowStart = sequencesQ.start(sequence), keyStart = sequencesK.start(sequence)
            let queries = sequencesQ.length(sequence), keys = sequencesK.length(sequence)
            for head in 0..<geometry.queryHeads {
                units.append(geometry.unit(q: q, k: k, v: v, out: out, batchOffset: (rowStart, keyStart, rowStart),
                                           head: head, queries: queries, keys: keys, diagonal: diagonal,
                                           lse: lse.map { ($0.data + (head * $0.strides[0] + rowStart * $0.strides[1]), $0.strides[1]) },
                                           slope: try slopes[sequence, head], stream: UInt64(units.count)))
            }
        }
        return (units, sequencesQ.offsets, sequencesK.offsets)
    }

    public func batched<E: AttnStorage>(q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
                                        alibiSlopes: Slopes? = nil, out: MutableStridedTensor<E>,
                                        lse: MutableStridedTensor<Float>? = nil, probs: MutableStridedTensor<E>? = nil,
                                        threads: Int = ThreadSettings.numThreads, useReference: Bool = false) throws {
        guard let units = try batchedUnits(q: q, k: k, v: v, alibiSlopes: alibiSlopes, out: out, lse: lse, probs: probs)
        else { return }
        let batch = q.shape[0], heads = q.shape[2]
        let targets = try probs.map { try probabilityTargets($0, units: units, batch: batch, heads: heads) }
        try execute(units: units, headDim: q.shape[3], valueDim: v.shape[3], threads: threads,
                    useReference: useReference, probabilities: targets)
    }

    /// Checks the fixed-length layout and splits it into (batch, head) units,
    /// batch-major; nil when the call writes nothing (S_dmask checked too).
    func batchedUnits<E: AttnStorage>(q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
                                      alibiSlopes: Slopes?, out: MutableStridedTensor<E>,
                                      lse: MutableStridedTensor<Float>?,
                                      probs: MutableStridedTensor<E>?) throws -> [AttentionUnit<E>]? {
        let layout = "(batch, seq, heads, head_dim)"
        try requireRank("q", q.shape, 4, layout)
        try requireRank("k", k.shape, 4, layout)
        try requireRank("v", v.shape, 4, layout)
        try requireRank("out", out.shape, 4, layout)
        let batch = q.shape[0], seqQ = q.shape[1], seqK = k.shape[1]
        try requireExtent("k", k.shape, axis: 0, equals: batch, "q.shape[0]")
        try requireExtent("v", v.shape, axis: 0, equals: batch, "q.shape[0]")
        try requireExtent("v", v.shape, axis: 1, equals: seqK, "k.shape[1]")
        let geometry = try Geometry(q: q, k: k, v: v, out: out, sequenceAxis: 1, headAxis: 2, dimAxis: 3)
        if let lse {
            try requireRank("softmax_lse", lse.shape, 3, "(batch, heads, seq_q)")
            for (axis, expected, why) in [(0, batch, "q.shape[0]"), (1, geometry.queryHeads, "q.shape[2]"), (2, seqQ, "q.shape[1]")] {
                try requireExtent("softmax_lse", lse.shape, axis: axis, equals: expected, why)
            }
            try validateLayout("softmax_lse", shape: lse.shape, strides: lse.strides, hasData: lse.base != nil)
            try validateWritable("softmax_lse", shape: lse.shape, strides: lse.strides)
        }
        let slopes = try SlopeTable(alibiSlopes, batch: batch, heads: geometry.queryHeads)
        try validateOptions(headDim: geometry.headDim, computesInFloat: E.self != Double.self)
        // A call with no output elements is done once it is checked (batch × heads
        // units may be huge while every one is empty). S_dmask's own checks first.
        if writesNothing(out, lse, probs) {
            if let probs { _ = try probabilityTargets(probs, units: [], batch: batch, heads: geometry.queryHeads) }
            return nil
        }
        var units: [AttentionUnit<E>] = []
        try requireAllocatable(try checkedProduct(batch, geometry.queryHeads, what: "q"), of: AttentionUnit<E>.self)
        units.reserveCapacity(batch * geometry.queryHeads)
        for b in 0..<batch {
            for head in 0..<geometry.queryHeads {
                units.append(geometry.unit(q: q, k: k, v: v, out: out, batchOffset: (0, 0, 0), batchIndex: b,
                                           head: head, queries: seqQ, keys: seqK, diagonal: diagonal,
                                           lse: lse.map { ($0.data + (b * $0.strides[0] + head * $0.strides[1]), $0.strides[2]) },
                                           slope: try slopes[b, head], stream: UInt64(units.count)))
            }
        }
        return units
    }

    /// Where each unit writes its S_dmask block. Units come batch-major, head-minor.
    ///     probs: (batch, heads, rows ≥ longest Sq, columns ≥ longest Sk)
    typealias ProbabilityTargets<E> = (views: [MutableStrided2D<E>], rows: Int, columns: Int)

    func probabilityTargets<E>(_ probs: MutableStridedTensor<E>, units: [AttentionUnit<E>], batch: Int,
                               heads: Int) throws -> ProbabilityTargets<E> {
        guard int8 == nil else {
            throw AttnError.invalidArgument(argument: "s_dmask", rule: "is not available on the int8 path (dropout must be 0 there)")
        }
        try requireRank("s_dmask", probs.shape, 4, "(batch, heads, seqlen_q_rounded, seqlen_k_rounded)")
        try requireExtent("s_dmask", probs.shape, axis: 0, equals: batch, "the batch size")
        try requireExtent("s_dmask", probs.shape, axis: 1, equals: heads, "the number of query heads")
        let longestQ = units.map(\.queries).max() ?? 0, longestK = units.map(\.keys).max() ?? 0
        guard probs.shape[2] >= longestQ else {
            throw AttnError.shape(argument: "s_dmask.shape[2]", rule: "must be >= the longest query sequence (\(longestQ)), got \(probs.shape[2])")
        }
        guard probs.shape[3] >= longestK else {
            throw AttnError.shape(argument: "s_dmask.shape[3]", rule: "must be >= the longest key sequence (\(longestK)), got \(probs.shape[3])")
        }
        try validateLayout("s_dmask", shape: probs.shape, strides: probs.strides, hasData: probs.base != nil)
        try validateWritable("s_dmask", shape: probs.shape, strides: probs.strides)
        guard let base = probs.base else { return ([], probs.shape[2], probs.shape[3]) }   // no elements
        let views = units.indices.map { index in
            MutableStrided2D(base: base + ((index / heads) * probs.strides[0] + (index % heads) * probs.strides[1]),
                             rowStride: probs.strides[2], colStride: probs.strides[3])
        }
        return (views, probs.shape[2], probs.shape[3])
    }

    /// Whether a call's outputs all have no elements (a tensor is empty exactly
    /// when one of its dims is 0; negative dims are rejected before this matters).
    func writesNothing<E>(_ out: MutableStridedTensor<E>, _ lse: MutableStridedTensor<Float>?,
                          _ probs: MutableStridedTensor<E>?) -> Bool {
        out.shape.contains(0) && (lse?.shape.contains(0) ?? true) && (probs?.shape.contains(0) ?? true)
    }

    /// The option rules shared by every flash entry point.
    func validateOptions(headDim: Int, computesInFloat: Bool) throws {
        guard dropoutP >= 0 && dropoutP <= 1 else {
            throw AttnError.invalidArgument(argument: "dropout_p", rule: "must be in [0, 1], got \(dropoutP)")
        }
        guard softcap >= 0 && softcap.isFinite else {
            throw AttnError.invalidArgument(argument: "softcap", rule: "must be finite and >= 0, got \(softcap)")
        }
        guard windowLeft >= -1, windowRight >= -1 else {
            throw AttnError.invalidArgument(argument: "window_size", rule: "entries must be >= -1, got (\(windowLeft), \(windowRight))")
        }
        if let diagonal, diagonal.magnitude > 1 << 30 {
            throw AttnError.invalidArgument(argument: "diagonal", rule: "must be within [-2^30, 2^30], got \(diagonal)")
        }
        let scale = softmaxScale ?? 1 / Double(headDim).squareRoot()
        try AttentionOptions.validateScale(scale, argument: "softmax_scale", computesInFloat: computesInFloat)
        if let int8 {
            try Int8Runner.requireSupported(computesInFloat: computesInFloat, argument: "q.dtype",
                                            dropoutP: dropoutP, softcap: softcap, smoothK: int8.smoothK)
        }
    }

    /// The engines' options for this call (forward and backward alike).
    func attentionOptions(headDim: Int, valueDim: Int) -> AttentionOptions {
        var options = AttentionOptions(headDim: headDim, valueDim: valueDim,
                                       scale: softmaxScale ?? 1 / Double(headDim).squareRoot())
        options.setSoftcap(softcap)
        options.windowLeft = AttentionOptions.boundedWindow(windowLeft)
        options.windowRight = causal ? 0 : AttentionOptions.boundedWindow(windowRight)
        options.dropoutP = Float(dropoutP)
        options.seed = seed
        options.emptyRowLSE = .infinity
        return options
    }

    func execute<E: AttnStorage>(units: [AttentionUnit<E>], headDim: Int, valueDim: Int, threads: Int,
                                 useReference: Bool, probabilities: ProbabilityTargets<E>? = nil) throws {
        try validateOptions(headDim: headDim, computesInFloat: E.self != Double.self)
        let options = attentionOptions(headDim: headDim, valueDim: valueDim)
        if let int8, !useReference {
            try Int8Runner.run(units: units, options: options, keys: .quantize(int8.qkQuant, smoothK: int8.smoothK),
                               threads: threads)
            return
        }
        if useReference || E.self == Double.self {
            try AttentionReference.run(units: units, options: options, threads: useReference ? 1 : threads)
        } else {
            try KernelDispatch.runFlash(units: units, options: options, threads: threads)
        }
        if let probabilities, !probabilities.views.isEmpty {
            try AttentionProbabilities.write(Array(zip(units, probabilities.views)), rows: probabilities.rows,
                                             columns: probabilities.columns, options: options, threads: threads)
        }
    }

    /// Head counts, dims and strides shared by the varlen and batched layouts.
    struct Geometry {
        let queryHeads, keyHeads, headDim, valueDim: Int
        let sequenceAxis, headAxis, dimAxis: Int

        init<E>(q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>, out: MutableStridedTensor<E>,
                sequenceAxis: Int, headAxis: Int, dimAxis: Int) throws {
            queryHeads = q.shape[headAxis]; keyHeads = k.shape[headAxis]
            headDim = q.shape[dimAxis]; valueDim = v.shape[dimAxis]
            self.sequenceAxis = sequenceAxis; self.headAxis = headAxis; self.dimAxis = dimAxis
            try requireExtent("k", k.shape, axis: dimAxis, equals: headDim, "q.shape[\(dimAxis)]")
            try requireExtent("v", v.shape, axis: headAxis, equals: keyHeads, "k.shape[\(headAxis)]")
            guard keyHeads >= 1, queryHeads % keyHeads == 0 else {
                throw AttnError.shape(argument: "k.shape[\(headAxis)]",
                                      rule: "must divide the query heads (\(queryHeads)), got \(keyHeads)")
            }
            guard headDim >= 1 else {
                throw AttnError.shape(argument: "q.shape[\(dimAxis)]", rule: "must be >= 1, got \(headDim)")
            }
            for axis in 0..<q.rank {
                try requireExtent("out", out.shape, axis: axis, equals: axis == dimAxis ? valueDim : q.shape[axis],
                                  axis == dimAxis ? "v.shape[\(dimAxis)]" : "q.shape[\(axis)]")
            }
            guard q.shape[sequenceAxis] < Int(Int32.max) / 2, k.shape[sequenceAxis] < Int(Int32.max) / 2 else {
                throw AttnError.invalidArgument(argument: "q", rule: "sequence lengths must be below 2^30")
            }
            try validateLayout("q", shape: q.shape, strides: q.strides, hasData: q.base != nil)
            try validateLayout("k", shape: k.shape, strides: k.strides, hasData: k.base != nil)
            try validateLayout("v", shape: v.shape, strides: v.strides, hasData: v.base != nil)
            try validateLayout("out", shape: out.shape, strides: out.strides, hasData: out.base != nil)
            try validateWritable("out", shape: out.shape, strides: out.strides)
        }

        /// The unit for (batchIndex, head): rows start at `batchOffset` (q, k, out rows,
        /// varlen) or at `batchIndex` along axis 0 (batched).
        func unit<E>(q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>, out: MutableStridedTensor<E>,
                     batchOffset: (q: Int, k: Int, out: Int), batchIndex: Int = 0, head: Int, queries: Int, keys: Int, diagonal: Int?,
                     lse: (UnsafeMutablePointer<Float>, Int)?, slope: Float, stream: UInt64) -> AttentionUnit<E> {
            let kvHead = head / (queryHeads / keyHeads)
            let s = sequenceAxis, h = headAxis, d = dimAxis
            func base<T>(_ pointer: UnsafePointer<T>?, _ strides: [Int], row: Int, head: Int) -> UnsafePointer<T>? {
                let batchTerm = sequenceAxis == 1 ? batchIndex * strides[0] : 0
                return pointer.map { $0 + (batchTerm + row * strides[s] + head * strides[h]) }
            }
            // Empty tensors may have no data pointer; such a unit never reads them.
            let fallback = UnsafePointer(placeholderPointer(E.self))
            let outBatch = sequenceAxis == 1 ? batchIndex * out.strides[0] : 0
            return AttentionUnit(
                q: Strided2D(base: base(q.base, q.strides, row: batchOffset.q, head: head) ?? fallback,
                             rowStride: q.strides[s], colStride: q.strides[d]),
                k: Strided2D(base: base(k.base, k.strides, row: batchOffset.k, head: kvHead) ?? fallback,
                             rowStride: k.strides[s], colStride: k.strides[d]),
                v: Strided2D(base: base(v.base, v.strides, row: batchOffset.k, head: kvHead) ?? fallback,
                             rowStride: v.strides[s], colStride: v.strides[d]),
                out: MutableStrided2D(base: out.base.map { $0 + (outBatch + batchOffset.out * out.strides[s] + head * out.strides[h]) }
                                        ?? UnsafeMutablePointer(mutating: fallback),
                                      rowStride: out.strides[s], colStride: out.strides[d]),
                lse: lse?.0, lseStride: lse?.1 ?? 0, queries: queries, keys: keys, mask: .none,
                alibiSlope: slope, diagonal: diagonal ?? keys - queries, dropoutStream: stream)
        }
    }

    /// ALiBi slopes per (sequence, head), from (H,) or (B, H) fp32: the layout
    /// is checked up front, each slope read (and checked finite) as its unit is
    /// planned, so a call with nothing to write reads none.
    struct SlopeTable {
        let slopes: Slopes?

        init(_ slopes: Slopes?, batch: Int, heads: Int) throws {
            self.slopes = slopes
            guard let slopes else { return }
            try validateLayout("alibi_slopes", shape: slopes.shape, strides: slopes.strides, hasData: slopes.base != nil)
            if slopes.rank == 1 {
                try requireExtent("alibi_slopes", slopes.shape, axis: 0, equals: heads, "the number of query heads")
            } else if slopes.rank == 2 {
                try requireExtent("alibi_slopes", slopes.shape, axis: 0, equals: batch, "the batch size")
                try requireExtent("alibi_slopes", slopes.shape, axis: 1, equals: heads, "the number of query heads")
            } else {
                throw AttnError.shape(argument: "alibi_slopes", rule: "must have shape (heads,) or (batch, heads), got rank \(slopes.rank)")
            }
        }

        /// The slope of (sequence, head); indices within the shape checked at init.
        subscript(sequence: Int, head: Int) -> Float {
            get throws {
                guard let slopes else { return 0 }
                let offset = slopes.rank == 1 ? head &* slopes.strides[0]
                                              : sequence &* slopes.strides[0] &+ head &* slopes.strides[1]
                let slope = slopes.data[offset]
                guard slope.isFinite else {
                    let entry = slopes.rank == 1 ? "[\(head)]" : "[\(sequence), \(head)]"
                    throw AttnError.invalidArgument(argument: "alibi_slopes", rule: "must be finite (entry \(entry) is \(slope))")
                }
                return slope
            }
        }
    }
}
