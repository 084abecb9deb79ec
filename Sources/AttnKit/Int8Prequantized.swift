import AttnKitCore

extension FlashAttention {
    /// The varlen forward on caller-quantized Q and K (an int8 KV cache, say):
    /// no quantization happens, QKᵀ runs on the given int8 values and is
    /// dequantized by the given scales; softmax and P·V are fp32 as usual.
    ///
    ///     qInt8:  (total_q, Hq, D) int8     qScale: (total_q, Hq) fp32   q ≈ qScale·qInt8
    ///     kInt8:  (total_k, Hk, D) int8     kScale: (total_k, Hk) fp32   k ≈ kScale·kInt8
    ///     v:      (total_k, Hk, Dv)         out:    (total_q, Hq, Dv)    lse: (Hq, total_q)
    ///
    /// Scales are read through their strides, so a per-tensor or per-block scale
    /// is a broadcast (stride 0) view. Dropout must be 0.
    public func varlenPrequantized<E: AttnStorage>(
        qInt8: StridedTensor<Int8>, qScale: StridedTensor<Float>, kInt8: StridedTensor<Int8>, kScale: StridedTensor<Float>,
        v: StridedTensor<E>, cuSeqlensQ: [Int], cuSeqlensK: [Int], maxSeqlenQ: Int, maxSeqlenK: Int,
        alibiSlopes: Slopes? = nil, out: MutableStridedTensor<E>, lse: MutableStridedTensor<Float>? = nil,
        threads: Int = ThreadSettings.numThreads
    ) throws {
        try varlenPrequantized(qInt8: qInt8, qScale: qScale, kInt8: kInt8, kScale: kScale, v: v,
                               boundariesQ: SequenceBoundaries(cuSeqlensQ), boundariesK: SequenceBoundaries(cuSeqlensK),
                               maxSeqlenQ: maxSeqlenQ, maxSeqlenK: maxSeqlenK, alibiSlopes: alibiSlopes, out: out, lse: lse,
                               threads: threads)
    }

    /// As above, with cu_seqlens read only if the call writes anything.
    public func varlenPrequantized<E: AttnStorage>(
        qInt8: StridedTensor<Int8>, qScale: StridedTensor<Float>, kInt8: StridedTensor<Int8>, kScale: StridedTensor<Float>,
        v: StridedTensor<E>, boundariesQ: SequenceBoundaries, boundariesK: SequenceBoundaries, maxSeqlenQ: Int, maxSeqlenK: Int,
        alibiSlopes: Slopes? = nil, out: MutableStridedTensor<E>, lse: MutableStridedTensor<Float>? = nil,
        threads: Int = ThreadSettings.numThreads
    ) throws {
        try Int8Runner.requireSupported(computesInFloat: E.self != Double.self, argument: "v.dtype", dropoutP: dropoutP)
        try requireRank("q_int8", qInt8.shape, 3, "(total_q, heads, head_dim)")
        try requireRank("k_int8", kInt8.shape, 3, "(total_k, heads, head_dim)")
        try requireRank("q_scale", qScale.shape, 2, "(total_q, heads)")
        try requireRank("k_scale", kScale.shape, 2, "(total_k, heads)")
        for axis in 0..<2 {
            try requireExtent("q_scale", qScale.shape, axis: axis, equals: qInt8.shape[axis], "q_int8.shape[\(axis)]")
            try requireExtent("k_scale", kScale.shape, axis: axis, equals: kInt8.shape[axis], "k_int8.shape[\(axis)]")
        }
        try validateLayout("q_int8", shape: qInt8.shape, strides: qInt8.strides, hasData: qInt8.base != nil)
        try validateLayout("k_int8", shape: kInt8.shape, strides: kInt8.strides, hasData: kInt8.base != nil)
        try validateLayout("q_scale", shape: qScale.shape, strides: qScale.strides, hasData: qScale.base != nil)
        try validateLayout("k_scale", shape: kScale.shape, strides: kScale.strides, hasData: kScale.base != nil)
        // Shape-only stand-ins let the float planner check every other rule; their
        // data pointers are never read (the units get int8 sources below).
        let anchor = UnsafePointer(placeholderPointer(E.self))
        let queryShape = StridedTensor<E>(base: anchor, shape: qInt8.shape, strides: qInt8.strides)
        let keyShape = StridedTensor<E>(base: anchor, shape: kInt8.shape, strides: kInt8.strides)
        var units: [AttentionUnit<E>], offsetsQ: [Int], offsetsK: [Int]
        do {
            (units, offsetsQ, offsetsK) = try varlenPlan(q: queryShape, k: keyShape, v: v, boundariesQ: boundariesQ, boundariesK: boundariesK,
                                    maxSeqlenQ: maxSeqlenQ, maxSeqlenK: maxSeqlenK, alibiSlopes: alibiSlopes,
                                    out: out, lse: lse, writesNothing: writesNothing(out, lse, nil), computesInFloat: true)
        } catch let error as AttnError {   // the planner's q and k are this entry's q_int8 and k_int8
            throw error.renamingTensors(["q": "q_int8", "k": "k_int8"])
        }
        if units.isEmpty { return }   // nothing to write (checked above), or no sequences
        let heads = qInt8.shape[1], keyHeads = kInt8.shape[1], dim = qInt8.shape[2]
        let paddedDim = (dim + 3) & ~3
        let totalKeys = kInt8.shape[0]
        // K in the Int8Keys layout, per (packed row, KV head): a copy, not a quantization.
        let slots = try checkedProduct(Swift.max(totalKeys, 1), Swift.max(keyHeads, 1), what: "k_int8")
        let values = try Workspace<Int8>(count: try checkedProduct(slots, paddedDim, what: "k_int8"))
        defer { values.deallocate() }
        let scales = try Workspace<Float>(count: slots)
        defer { scales.deallocate() }
        let sums = try Workspace<Int32>(count: slots)
        defer { sums.deallocate() }
        for head in 0..<keyHeads {
            for row in 0..<totalKeys {
                let slot = head * totalKeys + row
                let destination = values.pointer + slot * paddedDim
                var sum: Int32 = 0
                for d in 0..<paddedDim {
                    let level = d < dim ? kInt8.data[row * kInt8.strides[0] + head * kInt8.strides[1] + d * kInt8.strides[2]] : 0
                    destination[d] = level
                    sum += Int32(level)
                }
                scales.pointer[slot] = kScale.data[row * kScale.strides[0] + head * kScale.strides[1]]
                sums.pointer[slot] = sum
            }
        }
        for index in units.indices {
            let sequence = index / heads, head = index % heads
            let kvHead = head / (heads / keyHeads)
            let rowStart = offsetsQ[sequence], keyStart = offsetsK[sequence]
            let slot = kvHead * totalKeys + keyStart
            units[index].int8Keys = Int8Keys(values: values.pointer + slot * paddedDim, scales: scales.pointer + slot,
                                             sums: sums.pointer + slot, paddedDim: paddedDim)
            if let base = qInt8.base, let scaleBase = qScale.base {
                units[index].int8QuerySource = Int8Rows(
                    values: base + (rowStart * qInt8.strides[0] + head * qInt8.strides[1]), rowStride: qInt8.strides[0],
                    colStride: qInt8.strides[2], scales: scaleBase + (rowStart * qScale.strides[0] + head * qScale.strides[1]),
                    scaleStride: qScale.strides[0])
            }
        }
        var options = AttentionOptions(headDim: dim, valueDim: v.shape[2],
                                       scale: softmaxScale ?? 1 / Double(dim).squareRoot())
        options.setSoftcap(softcap)
        options.windowLeft = AttentionOptions.boundedWindow(windowLeft)
        options.windowRight = causal ? 0 : AttentionOptions.boundedWindow(windowRight)
        try validateOptions(headDim: dim, computesInFloat: true)
        try Int8Runner.run(units: units, options: options, keys: .prequantized, threads: threads)
    }
}
