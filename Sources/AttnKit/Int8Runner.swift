import AttnKitCore

/// The one runner behind every int8 path:
///   - the on-the-fly int8 SDPA and flash calls (`Int8ScaledDotProductAttention`,
///     `FlashAttention.int8`): K and Q are quantized here;
///   - the pre-quantized varlen entry (`varlenPrequantized`): the caller's int8 K
///     is already on the units;
///   - the int8 KV cache (`KVCacheAttention.int8Cache`): levels and per-row scales
///     stream through the decode engine, which dequantizes them on the fly.
/// It owns the rules they share and the engine options they set, so a new int8
/// entry cannot forget one.
enum Int8Runner {
    /// How the units' int8 keys come to be.
    enum Keys {
        /// Quantize K here (symmetric absmax/127 in `mode`'s groups), optionally
        /// after subtracting K's mean over tokens.
        case quantize(QKQuantization, smoothK: Bool)
        /// The caller's levels and scales are already on every unit (`int8Keys`,
        /// and `int8QuerySource` for Q).
        case prequantized
    }

    /// The rules every int8 path shares: the softmax and P·V run in fp32, so
    /// f64 inputs are refused rather than silently narrowed; dropout has no
    /// int8 kernel; softcap's tanh is not shift-invariant, so K smoothing would
    /// change the result.
    static func requireSupported(computesInFloat: Bool, argument: String, path: String = "the int8 path", dropoutP: Double = 0,
                                    softcap: Double = 0, smoothK: Bool = false) throws {
        guard computesInFloat else {
            throw AttnError.dtype(argument: argument, rule: "must be f32, f16 or bf16 for \(path), got f64")
        }
        guard dropoutP == 0 else {
            throw AttnError.invalidArgument(argument: "dropout_p", rule: "must be 0 on \(path), got \(dropoutP)")
        }
        guard !(smoothK && softcap > 0) else {
            throw AttnError.invalidArgument(
                argument: "smooth_k", rule: "must be False with softcap > 0 (softcap's tanh is not shift-invariant)")
        }
    }

    /// Runs the tiled engine on units with int8 keys. With `.quantize`, the
    /// returned lse (if the units write one) is corrected for K's smoothing.
    static func run<E: AttnStorage>(units: [AttentionUnit<E>], options: AttentionOptions, keys: Keys,
                                    threads: Int) throws {
        var units = units.filter { $0.queries > 0 }   // zero-row units have nothing to quantize or write
        if units.isEmpty { return }
        var options = options
        // fp16 P·V where the CPU has AVX512_FP16 (and ATTNKIT_INT8_PV allows it).
        options.halfPrecisionValues = KernelDispatch.int8HalfPrecisionValues
        switch keys {
        case .prequantized:
            try KernelDispatch.runFlash(units: units, options: options, threads: threads)
        case let .quantize(mode, smoothK):
            let quantized = try QuantizedKeys(units: &units, headDim: options.headDim, mode: mode, smooth: smoothK,
                                              threads: threads)
            defer { quantized.deallocate() }
            options.int8Query = int8QueryScale(mode, units: units, headDim: options.headDim)
            try KernelDispatch.runFlash(units: units, options: options, threads: threads)
            if smoothK { quantized.correctLSE(units: units, scale: options.scale) }
        }
    }

    /// Runs the decode engine on an int8 cache: `problem` reads levels, and each
    /// (position, KV head) row is multiplied by its scale as it streams in.
    static func runDecode<C: AttnStorage>(_ problem: DecodeProblem<C>, scales: (k: StridedTensor<Float>, v: StridedTensor<Float>),
                          tasks: [DecodeTask], partials: UnsafeMutablePointer<Float>, threads: Int) throws {
        var problem = problem
        problem.keyScales = scales.k.data
        problem.keyScaleStrides = (scales.k.strides[0], scales.k.strides[1], scales.k.strides[2])
        problem.valueScales = scales.v.data
        problem.valueScaleStrides = (scales.v.strides[0], scales.v.strides[1], scales.v.strides[2])
        try KernelDispatch.runDecode(problem, tasks: tasks, partials: partials, threads: threads)
    }
}
