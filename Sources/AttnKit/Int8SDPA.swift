import AttnKitCore

/// How Q and K are grouped for their int8 scales (symmetric, absmax/127).
public enum QKQuantization: String, CaseIterable, Sendable {
    /// Q: one scale per block of 64 query rows; K: one per block of 64 keys.
    case perBlock = "per_block"
    /// One scale per query row and per key.
    case perToken = "per_token"
    /// One scale for all of Q and one for all of K.
    case perTensor = "per_tensor"
}

/// SageAttention-style SDPA (docs/semantics.md §5): torch SDPA's shapes, masks, causal
/// and GQA rules, with QKᵀ computed from int8 Q and K (int32 sums, vpdpbusd on
/// AVX-512 VNNI) and dequantized by the product of their scales; the online
/// softmax and P·V stay fp32. `smoothK` subtracts K's mean over tokens first,
/// which shifts every score of a row by the same amount and so leaves the
/// softmax unchanged while shrinking K's range (and its quantization error).
public struct Int8ScaledDotProductAttention {
    public var isCausal: Bool
    public var scale: Double?
    public var enableGQA: Bool
    public var qkQuant: QKQuantization
    public var smoothK: Bool

    public init(isCausal: Bool = false, scale: Double? = nil, enableGQA: Bool = false,
                qkQuant: QKQuantization = .perBlock, smoothK: Bool = true) {
        self.isCausal = isCausal; self.scale = scale; self.enableGQA = enableGQA
        self.qkQuant = qkQuant; self.smoothK = smoothK
    }

    @_specialize(where E == Float)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    public func callAsFunction<E: AttnStorage>(query: StridedTensor<E>, key: StridedTensor<E>, value: StridedTensor<E>,
                                               mask: SDPAMask<E>? = nil, out: MutableStridedTensor<E>,
                                               threads: Int = ThreadSettings.numThreads) throws {
        try Int8Runner.requireSupported(computesInFloat: E.self != Double.self, argument: "query.dtype")
        let sdpa = ScaledDotProductAttention(isCausal: isCausal, scale: scale, enableGQA: enableGQA)
        let (units, options) = try sdpa.plan(query: query, key: key, value: value, mask: mask, out: out)
        try Int8Runner.run(units: units, options: options, keys: .quantize(qkQuant, smoothK: smoothK), threads: threads)
    }

}

/// How the engine scales Q for `mode`; per tensor, that is absmax(Q)/127 over
/// every unit (1 for an all-zero Q).
func int8QueryScale<E: AttnStorage>(_ mode: QKQuantization, units: [AttentionUnit<E>], headDim: Int) -> Int8QueryScale {
    switch mode {
    case .perToken: return .perToken
    case .perBlock: return .perBlock
    case .perTensor:
        var largest: Float = 0
        for unit in units {
            for row in 0..<unit.queries {
                for d in 0..<headDim { largest = Swift.max(largest, abs(E.toFloat(unit.q.pointer(row, d).pointee))) }
            }
        }
        return .perTensor(largest > 0 && largest.isFinite ? largest / 127 : 1)
    }
}

/// The int8 copy of every distinct KV head's keys (GQA groups share one), in
/// the Int8Keys layout; the units are pointed at it.
struct QuantizedKeys {
    static let keysPerBlock = 64

    let values: Workspace<Int8>
    let scales: Workspace<Float>
    let sums: Workspace<Int32>
    /// [heads][headDim]: the mean subtracted from each KV head's keys (0 without smoothing).
    let means: Workspace<Float>
    /// The KV head of each unit, an index into `means`.
    let unitHeads: [Int]
    let headDim: Int

    @_specialize(where E == Float)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    init<E: AttnStorage>(units: inout [AttentionUnit<E>], headDim: Int, mode: QKQuantization, smooth: Bool,
                         threads: Int) throws {
        let paddedDim = (headDim + 3) & ~3
        // Distinct KV heads, by the address of their first key row. Units with no
        // keys are left out: their base may be the next sequence's first row.
        var headIndex: [UnsafeRawPointer: Int] = [:]
        var heads: [(source: Strided2D<E>, keys: Int, offset: Int)] = []
        var totalKeys = 0
        // Each unit's entry in `heads`, or -1 if it has no keys (nothing to score).
        var unitHeads: [Int] = []
        unitHeads.reserveCapacity(units.count)
        for unit in units {
            guard unit.keys > 0 else { unitHeads.append(-1); continue }
            let address = UnsafeRawPointer(unit.k.base)
            if let known = headIndex[address] { unitHeads.append(known); continue }
            headIndex[address] = heads.count
            unitHeads.append(heads.count)
            heads.append((unit.k, unit.keys, totalKeys))
            totalKeys += unit.keys
        }
        values = try Workspace<Int8>(count: try checkedProduct(Swift.max(totalKeys, 1), paddedDim, what: "key"))
        scales = try Workspace<Float>(count: Swift.max(totalKeys, 1))
        sums = try Workspace<Int32>(count: Swift.max(totalKeys, 1))
        values.pointer.update(repeating: 0, count: Swift.max(totalKeys, 1) * paddedDim)

        // Parallel over heads: each head's mean over tokens (smoothing), then its
        // scales per group, int8 values and row sums while its keys are still in
        // cache. Per-tensor scales need every head's largest |K − mean| first, so
        // that mode quantizes in a second pass.
        means = try Workspace<Float>(count: Swift.max(heads.count * headDim, 1))
        self.headDim = headDim
        let headMax = try Workspace<Float>(count: Swift.max(heads.count, 1))
        defer { headMax.deallocate() }
        let meanBase = means.pointer, maxBase = headMax.pointer
        let valueBase = values.pointer, scaleBase = scales.pointer, sumBase = sums.pointer
        func scaleFor(_ largest: Float) -> Float { largest > 0 && largest.isFinite ? largest / 127 : 1 }
        func quantize(_ head: (source: Strided2D<E>, keys: Int, offset: Int), mean: UnsafePointer<Float>,
                      tensorMax: Float) {
            var blockStart = 0
            while blockStart < head.keys {
                let blockEnd: Int
                switch mode {
                case .perToken: blockEnd = blockStart + 1
                case .perBlock: blockEnd = Swift.min(head.keys, blockStart + Self.keysPerBlock)
                case .perTensor: blockEnd = head.keys
                }
                var largest = tensorMax
                if mode != .perTensor {
                    largest = KernelDispatch.centeredAbsMax(head.source, rows: blockStart..<blockEnd, mean: mean,
                                                            count: headDim)
                }
                let scale = scaleFor(largest)
                for j in blockStart..<blockEnd {
                    let (sum, finite) = KernelDispatch.quantizeRow(head.source.pointer(j, 0),
                                                                   colStride: head.source.colStride, mean: mean,
                                                                   inverse: 1 / scale, count: headDim,
                                                                   into: valueBase + (head.offset + j) * paddedDim)
                    // A NaN or Inf key keeps poisoning its scores, as in the float kernels.
                    scaleBase[head.offset + j] = finite ? scale : .nan
                    sumBase[head.offset + j] = sum
                }
                blockStart = blockEnd
            }
        }
        heads.withUnsafeBufferPointer { list in
            parallelFor(count: list.count, threads: threads) { headNumber, _ in
                let head = list[headNumber]
                let mean = meanBase + headNumber * headDim
                mean.update(repeating: 0, count: headDim)
                if smooth && head.keys > 0 {
                    // In chunks of 256 rows (fp32 sums), then in fp64.
                    var chunk = [Float](repeating: 0, count: headDim)
                    var totals = [Double](repeating: 0, count: headDim)
                    var start = 0
                    while start < head.keys {
                        let end = Swift.min(head.keys, start + 256)
                        chunk.withUnsafeMutableBufferPointer { sums in
                            sums.update(repeating: 0)
                            guard let target = sums.baseAddress else { return }   // headDim >= 1: never nil
                            KernelDispatch.addRows(head.source, rows: start..<end, count: headDim, into: target)
                        }
                        for d in 0..<headDim { totals[d] += Double(chunk[d]) }
                        start = end
                    }
                    for d in 0..<headDim { mean[d] = Float(totals[d] / Double(head.keys)) }
                }
                if mode == .perTensor {
                    maxBase[headNumber] = KernelDispatch.centeredAbsMax(head.source, rows: 0..<head.keys, mean: mean,
                                                                        count: headDim)
                } else {
                    quantize(head, mean: mean, tensorMax: 0)
                }
            }
        }
        if mode == .perTensor {
            var tensorMax: Float = 0
            for headNumber in heads.indices { tensorMax = Swift.max(tensorMax, maxBase[headNumber]) }
            heads.withUnsafeBufferPointer { list in
                parallelFor(count: list.count, threads: threads) { headNumber, _ in
                    quantize(list[headNumber], mean: meanBase + headNumber * headDim, tensorMax: tensorMax)
                }
            }
        }
        for index in units.indices where unitHeads[index] >= 0 {
            let head = heads[unitHeads[index]]
            units[index].int8Keys = Int8Keys(values: values.pointer + head.offset * paddedDim,
                                             scales: scales.pointer + head.offset, sums: sums.pointer + head.offset,
                                             paddedDim: paddedDim)
        }
        self.unitHeads = unitHeads
    }

    /// Adds back what smoothing took out of each row's log-sum-exp:
    /// lse_true = lse_smoothed + scale·(q_i · mean_k), since every score of row i
    /// was shifted by that same amount. Rows with no key keep +inf.
    func correctLSE<E: AttnStorage>(units: [AttentionUnit<E>], scale: Float) {
        for (index, unit) in units.enumerated() {
            guard let lse = unit.lse, unitHeads[index] >= 0 else { continue }
            let mean = means.pointer + unitHeads[index] * headDim
            for row in 0..<unit.queries {
                let target = lse + row * unit.lseStride
                guard target.pointee.isFinite else { continue }
                var dot = 0.0
                for d in 0..<headDim { dot += E.toDouble(unit.q.pointer(row, d).pointee) * Double(mean[d]) }
                target.pointee += Float(Double(scale) * dot)
            }
        }
    }

    func deallocate() { values.deallocate(); scales.deallocate(); sums.deallocate(); means.deallocate() }
}
