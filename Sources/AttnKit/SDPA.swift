import AttnKitCore
/// The optional mask of torch's scaled_dot_product_attention.
public enum SDPAMask<E> {
    /// Bool: nonzero takes part. Broadcasts to (N..., Hq, L, S).
    case keep(StridedTensor<UInt8>)
    /// Float of the query dtype, added to the scaled scores. Broadcasts likewise.
    case additive(StridedTensor<E>)
}

/// torch.nn.functional.scaled_dot_product_attention on the CPU (docs/semantics.md §2).
///
///     query: (N..., Hq, L, E)   key: (N..., Hk, S, E)   value: (N..., Hk, S, Ev)
///     out:   (N..., Hq, L, Ev)  written
///
/// `isCausal` is top-left aligned (key j allowed iff j <= i) and, unlike torch's
/// Python API, may be combined with a mask (both must allow a key). Query head h reads
/// KV head h / (Hq/Hk); K and V are read in place, never repeated. A row that a
/// bool mask or causality masks out entirely gives 0.
public struct ScaledDotProductAttention {
    public var isCausal: Bool
    /// nil: 1/sqrt(E).
    public var scale: Double?
    public var enableGQA: Bool
    public var dropoutP: Double
    /// Dropout is a function of (seed, unit, query, key): the same seed gives
    /// the same bits for any thread count.
    public var seed: UInt64

    public init(isCausal: Bool = false, scale: Double? = nil, enableGQA: Bool = false,
                dropoutP: Double = 0, seed: UInt64 = 0) {
        self.isCausal = isCausal; self.scale = scale; self.enableGQA = enableGQA
        self.dropoutP = dropoutP; self.seed = seed
    }

    /// With `lse` (N..., Hq, L) fp32, also the log-sum-exp of each row's scaled scores
    /// (+inf for a row with nothing to attend): what the backward pass reads.
    public func callAsFunction<E: AttnStorage>(query: StridedTensor<E>, key: StridedTensor<E>, value: StridedTensor<E>,
                                               mask: SDPAMask<E>? = nil, out: MutableStridedTensor<E>,
                                               lse: MutableStridedTensor<Float>? = nil,
                                               threads: Int = ThreadSettings.numThreads) throws {
        let (units, options) = try plan(query: query, key: key, value: value, mask: mask, out: out, lse: lse)
        if E.self == Double.self {
            try AttentionReference.run(units: units, options: options, threads: threads)
        } else {
            try KernelDispatch.runFlash(units: units, options: options, threads: threads)
        }
    }

    /// The plain reference twin on the same problem, for tests.
    public func reference<E: AttnStorage>(query: StridedTensor<E>, key: StridedTensor<E>, value: StridedTensor<E>,
                                          mask: SDPAMask<E>? = nil, out: MutableStridedTensor<E>) throws {
        let (units, options) = try plan(query: query, key: key, value: value, mask: mask, out: out)
        try AttentionReference.run(units: units, options: options, threads: 1)
    }

    /// Checks torch's rules and splits the call into (batch, query head) units.
    func plan<E: AttnStorage>(query: StridedTensor<E>, key: StridedTensor<E>, value: StridedTensor<E>,
                              mask: SDPAMask<E>?, out: MutableStridedTensor<E>,
                              lse: MutableStridedTensor<Float>? = nil) throws -> ([AttentionUnit<E>], AttentionOptions) {
        let rank = query.rank
        guard rank >= 2 else {
            throw AttnError.shape(argument: "query", rule: "must have at least 2 dims (..., L, E), got \(rank)")
        }
        try requireRank("key", key.shape, rank, "(same rank as query)")
        try requireRank("value", value.shape, rank, "(same rank as query)")
        try requireRank("out", out.shape, rank, "(same rank as query)")
        let leading = rank >= 3 ? rank - 3 : 0
        for axis in 0..<leading {
            try requireExtent("key", key.shape, axis: axis, equals: query.shape[axis], "query.shape[\(axis)]")
            try requireExtent("value", value.shape, axis: axis, equals: query.shape[axis], "query.shape[\(axis)]")
        }
        let queryHeads = rank >= 3 ? query.shape[rank - 3] : 1
        let keyHeads = rank >= 3 ? key.shape[rank - 3] : 1
        let seqQ = query.shape[rank - 2], dim = query.shape[rank - 1]
        let seqK = key.shape[rank - 2], valueDim = value.shape[rank - 1]
        try requireExtent("key", key.shape, axis: rank - 1, equals: dim, "query.shape[-1]")
        try requireExtent("value", value.shape, axis: rank - 2, equals: seqK, "key.shape[-2]")
        if rank >= 3 {
            try requireExtent("value", value.shape, axis: rank - 3, equals: keyHeads, "key.shape[-3]")
            if enableGQA {
                guard keyHeads >= 1, queryHeads % keyHeads == 0 else {
                    throw AttnError.shape(argument: "key.shape[-3]",
                                          rule: "must divide query.shape[-3] (\(queryHeads)) with enable_gqa=True, got \(keyHeads)")
                }
            } else if queryHeads != keyHeads {
                throw AttnError.shape(argument: "key.shape[-3]",
                                      rule: "must equal query.shape[-3] (\(queryHeads)) unless enable_gqa=True, got \(keyHeads)")
            }
        }
        guard dim >= 1 else { throw AttnError.shape(argument: "query.shape[-1]", rule: "must be >= 1, got \(dim)") }
        // Row and key indices travel in 32-bit SIMD lanes.
        guard seqQ < Int(Int32.max) / 2, seqK < Int(Int32.max) / 2 else {
            throw AttnError.invalidArgument(argument: "query", rule: "L and S must each be below 2^30")
        }
        var expectedOut = query.shape
        expectedOut[rank - 1] = valueDim
        for axis in 0..<rank { try requireExtent("out", out.shape, axis: axis, equals: expectedOut[axis], "the output shape") }
        try validateLayout("query", shape: query.shape, strides: query.strides, hasData: query.base != nil)
        try validateLayout("key", shape: key.shape, strides: key.strides, hasData: key.base != nil)
        try validateLayout("value", value: value)
        try validateLayout("out", shape: out.shape, strides: out.strides, hasData: out.base != nil)
        try validateWritable("out", shape: out.shape, strides: out.strides)
        if let lse {   // (N..., Hq, L): the softmax's log-sum-exp per query row
            try requireRank("lse", lse.shape, rank - 1, "(query.shape[:-1])")
            for axis in 0..<(rank - 1) {
                try requireExtent("lse", lse.shape, axis: axis, equals: query.shape[axis], "query.shape[\(axis)]")
            }
            try validateLayout("lse", shape: lse.shape, strides: lse.strides, hasData: lse.base != nil)
            try validateWritable("lse", shape: lse.shape, strides: lse.strides)
        }
        guard dropoutP >= 0 && dropoutP <= 1 else {
            throw AttnError.invalidArgument(argument: "dropout_p", rule: "must be in [0, 1], got \(dropoutP)")
        }
        let resolvedScale = scale ?? 1 / Double(dim).squareRoot()
        try AttentionOptions.validateScale(resolvedScale, argument: "scale", computesInFloat: E.self != Double.self)

        // The mask's strides over (N..., Hq, L, S), broadcast dims at stride 0.
        let fullShape = Array(query.shape[0..<(rank - 2)]) + [seqQ, seqK]
        var maskBroadcast: (base: UnsafeRawPointer?, strides: [Int], isKeep: Bool)? = nil
        if let mask {
            let (shape, strides, base, isKeep): ([Int], [Int], UnsafeRawPointer?, Bool)
            switch mask {
            case .keep(let m): (shape, strides, base, isKeep) = (m.shape, m.strides, m.base.map(UnsafeRawPointer.init), true)
            case .additive(let m): (shape, strides, base, isKeep) = (m.shape, m.strides, m.base.map(UnsafeRawPointer.init), false)
            }
            try validateLayout("attn_mask", shape: shape, strides: strides, hasData: base != nil)
            maskBroadcast = (base, try broadcastStrides(shape: shape, strides: strides, to: fullShape), isKeep)
        }

        var options = AttentionOptions(headDim: dim, valueDim: valueDim, scale: resolvedScale)
        if isCausal { options.windowRight = 0 }
        options.dropoutP = Float(dropoutP)
        options.seed = seed

        var units: [AttentionUnit<E>] = []
        // No output elements: done, before any product of dims that a 0 made
        // meaningless (and that may overflow). Otherwise out's element count,
        // which validateLayout checked, bounds every product below.
        guard !out.shape.contains(0) else { return (units, options) }
        let batchShape = Array(query.shape[0..<leading])
        let batchCount = batchShape.reduce(1, *)
        let groupSize = queryHeads / keyHeads
        try requireAllocatable(batchCount * queryHeads, of: AttentionUnit<E>.self)
        units.reserveCapacity(batchCount * queryHeads)
        var index = [Int](repeating: 0, count: leading)
        for _ in 0..<batchCount {
            var qOffset = 0, kOffset = 0, vOffset = 0, oOffset = 0, mOffset = 0, lOffset = 0
            for axis in 0..<leading {
                qOffset += index[axis] * query.strides[axis]; kOffset += index[axis] * key.strides[axis]
                vOffset += index[axis] * value.strides[axis]; oOffset += index[axis] * out.strides[axis]
                if let lse { lOffset += index[axis] * lse.strides[axis] }
                if let maskBroadcast { mOffset += index[axis] * maskBroadcast.strides[axis] }
            }
            for head in 0..<queryHeads {
                let kvHead = head / groupSize
                let headAxis = rank - 3
                func headOffset(_ strides: [Int], _ h: Int) -> Int { rank >= 3 ? h * strides[headAxis] : 0 }
                var unitMask = ElementMask<E>.none
                if let maskBroadcast, let base = maskBroadcast.base {
                    let s = maskBroadcast.strides
                    let offset = mOffset + (rank >= 3 ? head * s[rank - 3] : 0)
                    if maskBroadcast.isKeep {
                        unitMask = .keep(Strided2D(base: base.assumingMemoryBound(to: UInt8.self) + offset,
                                                   rowStride: s[rank - 2], colStride: s[rank - 1]))
                    } else {
                        unitMask = .additive(Strided2D(base: base.assumingMemoryBound(to: E.self) + offset,
                                                       rowStride: s[rank - 2], colStride: s[rank - 1]))
                    }
                }
                let emptyKeys = seqK == 0
                units.append(AttentionUnit(
                    q: Strided2D(base: query.data + (qOffset + headOffset(query.strides, head)),
                                 rowStride: query.strides[rank - 2], colStride: query.strides[rank - 1]),
                    k: Strided2D(base: emptyKeys ? query.data : key.data + (kOffset + headOffset(key.strides, kvHead)),
                                 rowStride: key.strides[rank - 2], colStride: key.strides[rank - 1]),
                    v: Strided2D(base: emptyKeys ? query.data : value.data + (vOffset + headOffset(value.strides, kvHead)),
                                 rowStride: value.strides[rank - 2], colStride: value.strides[rank - 1]),
                    out: MutableStrided2D(base: out.data + (oOffset + headOffset(out.strides, head)),
                                          rowStride: out.strides[rank - 2], colStride: out.strides[rank - 1]),
                    lse: lse.map { $0.data + (lOffset + headOffset($0.strides, head)) },
                    lseStride: lse.map { $0.strides[rank - 2] } ?? 0, queries: seqQ, keys: seqK, mask: unitMask, alibiSlope: 0,
                    diagonal: 0, dropoutStream: UInt64(units.count)))
            }
            var axis = leading - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < batchShape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
        return (units, options)
    }
}

func validateLayout<E>(_ name: String, value: StridedTensor<E>) throws {
    try validateLayout(name, shape: value.shape, strides: value.strides, hasData: value.base != nil)
}

/// Strides that read a tensor of `shape` broadcast (numpy rules, right-aligned)
/// to `target`: size-1 and missing dims get stride 0.
func broadcastStrides(shape: [Int], strides: [Int], to target: [Int]) throws -> [Int] {
    guard shape.count <= target.count else {
        throw AttnError.shape(argument: "attn_mask",
                              rule: "has \(shape.count) dims, more than the \(target.count) of (N..., Hq, L, S) \(target)")
    }
    var result = [Int](repeating: 0, count: target.count)
    let shift = target.count - shape.count
    for axis in 0..<shape.count {
        let extent = shape[axis], wanted = target[axis + shift]
        if extent == wanted {
            result[axis + shift] = extent == 1 ? 0 : strides[axis]
        } else if extent == 1 {
            result[axis + shift] = 0
        } else {
            throw AttnError.shape(argument: "attn_mask",
                                  rule: "of shape \(shape) does not broadcast to (N..., Hq, L, S) = \(target) (dim \(axis): \(extent) vs \(wanted))")
        }
    }
    return result
}
