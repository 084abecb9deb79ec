import AttnKitCore

/// The Attention Free Transformer (docs/semantics.md §9), per batch, token t and feature c:
///
///     Y[t,c] = σ(Q[t,c]) · Σ_t' e^(W[t,t'] + K[t',c]) · V[t',c] / Σ_t' e^(W[t,t'] + K[t',c])
///
/// over the keys t' that query t sees: all (full), |t − t'| < localContext (local; with
/// `zeroBiasOutside` the others count too, with W = 0), and t' <= t when causal.
/// aft_simple has W = 0 and costs O(T·d).
///
///     q, k, v, out: [B, T, d]
///     bias:         dense W [>= T, >= T] (its leading [T, T] block is read), or low rank
///                   W = u·wᵀ, u and w [>= T, r] (never expanded); none for aft_simple.
///
/// Stability: every exponent is shifted by the max of K over the keys a block of queries
/// sees (per feature) and of W over the keys each query sees (per row), so no e^x exceeds
/// 1. Where those two shifts together underflow a row's whole sum (its terms' largest
/// exponent is below −100 or so in fp32), that (t, c) is recomputed exactly, shifted by
/// its own max, in fp64.
public struct AFTAttention {
    public enum Variant: Equatable {
        case full
        case local(context: Int, zeroBiasOutside: Bool)
        case simple
    }

    public enum PositionBias<E> {
        case none
        case dense(StridedTensor<E>)
        case lowRank(u: StridedTensor<E>, w: StridedTensor<E>)
    }

    public var variant: Variant
    public var causal: Bool

    public init(variant: Variant, causal: Bool = false) { self.variant = variant; self.causal = causal }

    struct Problem {
        let batch, length, features: Int
        let variant: Variant
        let causal: Bool

        /// Whether query t sees key t' at all, and whether its W is the bias (not 0).
        @inline(__always) func sees(_ t: Int, _ key: Int) -> (allowed: Bool, biased: Bool) {
            if causal && key > t { return (false, false) }
            if case let .local(context, zeroBias) = variant, (t &- key).magnitude >= UInt(context) {
                return (zeroBias, false)
            }
            return (true, true)
        }

        /// The keys a block of queries t0 ..< t0+rows sees, as one range.
        func keyRange(_ t0: Int, _ rows: Int) -> Range<Int> {
            let end = causal ? t0 &+ rows : length
            if case let .local(context, false) = variant {
                return Swift.max(0, t0 &- context &+ 1)..<Swift.min(end, t0 &+ rows &- 1 &+ context)
            }
            return 0..<end
        }
    }

    func validate<E>(q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>, bias: PositionBias<E>,
                     out: MutableStridedTensor<E>) throws -> Problem {
        let layout = "[batch, seq, features]"
        for (name, shape) in [("q", q.shape), ("k", k.shape), ("v", v.shape), ("out", out.shape)] {
            try requireRank(name, shape, 3, layout)
        }
        for (name, shape) in [("k", k.shape), ("v", v.shape), ("out", out.shape)] {
            for axis in 0..<3 { try requireExtent(name, shape, axis: axis, equals: q.shape[axis], "q.shape[\(axis)]") }
        }
        try validateLayout("q", shape: q.shape, strides: q.strides, hasData: q.base != nil)
        try validateLayout("k", shape: k.shape, strides: k.strides, hasData: k.base != nil)
        try validateLayout("v", shape: v.shape, strides: v.strides, hasData: v.base != nil)
        try validateLayout("out", shape: out.shape, strides: out.strides, hasData: out.base != nil)
        try validateWritable("out", shape: out.shape, strides: out.strides)
        let length = q.shape[1]
        if case let .local(context, _) = variant, context < 1 {
            throw AttnError.invalidArgument(argument: "local_context", rule: "must be >= 1, got \(context)")
        }
        switch (variant, bias) {
        case (.simple, .none): break
        case (.simple, _):
            throw AttnError.invalidArgument(argument: "w_bias", rule: "must be absent for aft_simple (it has no position bias)")
        case (_, .none):
            throw AttnError.invalidArgument(argument: "w_bias", rule: "is required for aft_full and aft_local")
        case let (_, .dense(w)):
            try requireRank("w_bias", w.shape, 2, "[T, T']")
            for axis in 0..<2 where w.shape[axis] < length {
                throw AttnError.shape(argument: "w_bias.shape[\(axis)]",
                                      rule: "must be >= the sequence length q.shape[1] (\(length)), got \(w.shape[axis])")
            }
            try validateLayout("w_bias", shape: w.shape, strides: w.strides, hasData: w.base != nil)
        case let (_, .lowRank(u, w)):
            try requireRank("w_u", u.shape, 2, "[T, rank]")
            try requireRank("w_v", w.shape, 2, "[T, rank]")
            for (name, factor) in [("w_u", u), ("w_v", w)] where factor.shape[0] < length {
                throw AttnError.shape(argument: "\(name).shape[0]",
                                      rule: "must be >= the sequence length q.shape[1] (\(length)), got \(factor.shape[0])")
            }
            try requireExtent("w_v", w.shape, axis: 1, equals: u.shape[1], "w_u.shape[1]")
            try validateLayout("w_u", shape: u.shape, strides: u.strides, hasData: u.base != nil)
            try validateLayout("w_v", shape: w.shape, strides: w.strides, hasData: w.base != nil)
            guard u.shape[1] <= Int(Int32.max) else {
                throw AttnError.invalidArgument(argument: "w_u", rule: "shape[1] must fit in Int32 for BLAS")
            }
        }
        guard length <= Int(Int32.max) / 2, q.shape[2] <= Int(Int32.max) / 2 else {
            throw AttnError.invalidArgument(argument: "q", rule: "seq and features must each fit in Int32 for BLAS")
        }
        return Problem(batch: q.shape[0], length: length, features: q.shape[2], variant: variant, causal: causal)
    }

    @_specialize(where E == Float)
    @_specialize(where E == Double)
    @_specialize(where E == Float16)
    @_specialize(where E == BFloat16)
    public func callAsFunction<E: AttnStorage>(
        q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>, bias: PositionBias<E> = .none,
        out: MutableStridedTensor<E>, threads: Int = ThreadSettings.numThreads
    ) throws {
        let p = try validate(q: q, k: k, v: v, bias: bias, out: out)
        if E.self == Double.self {
            try AFTKernel<Double, E>(p: p, q: q, k: k, v: v, bias: bias, out: out).run(threads: threads)
        } else {
            try AFTKernel<Float, E>(p: p, q: q, k: k, v: v, bias: bias, out: out).run(threads: threads)
        }
    }
}

