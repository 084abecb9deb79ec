/// Seed 001's asymmetric per-tensor quantization (docs/semantics.md §5):
///
///     scale      = (max − min) / (2^bits − 1)
///     zero_point = −min / scale
///     q          = clamp(round(x/scale + zero_point), 0, 2^bits − 1)   (round half to even)
///     x'         = scale · (q − zero_point)
///
/// A constant tensor (max == min) would divide by zero: it gets scale 1 and
/// zero_point −min, which reproduces it exactly.
public enum PerTensorQuantization {
    public struct Parameters: Equatable {
        public var scale: Double
        public var zeroPoint: Double
        public init(scale: Double, zeroPoint: Double) { self.scale = scale; self.zeroPoint = zeroPoint }
    }

    public static func quantize<E: AttnStorage>(_ x: StridedTensor<E>, bits: Int, into q: MutableStridedTensor<UInt8>) throws -> Parameters {
        guard (2...8).contains(bits) else {
            throw AttnError.invalidArgument(argument: "num_bits", rule: "must be in 2...8, got \(bits)")
        }
        try validatePair("x", x, into: "q", q)
        var low = Double.infinity, high = -Double.infinity
        var finite = true
        forEachOffset(x.shape, x.strides, q.strides) { source, _ in
            let value = E.toDouble(x.data[source])
            if !value.isFinite { finite = false }
            low = Swift.min(low, value); high = Swift.max(high, value)
        }
        guard finite else { throw AttnError.invalidArgument(argument: "x", rule: "must be finite to quantize (found NaN or Inf)") }
        let levels = Double((1 << bits) - 1)
        guard x.elementCount > 0 else { return Parameters(scale: 1, zeroPoint: 0) }
        let scale = high > low ? (high - low) / levels : 1
        let zeroPoint = -low / scale
        forEachOffset(x.shape, x.strides, q.strides) { source, target in
            let level = (E.toDouble(x.data[source]) / scale + zeroPoint).rounded(.toNearestOrEven)
            q.data[target] = UInt8(Swift.min(Swift.max(level, 0), levels))
        }
        return Parameters(scale: scale, zeroPoint: zeroPoint)
    }

    public static func dequantize<E: AttnStorage>(_ q: StridedTensor<UInt8>, _ parameters: Parameters,
                                                  into out: MutableStridedTensor<E>) throws {
        guard parameters.scale.isFinite, parameters.zeroPoint.isFinite else {
            throw AttnError.invalidArgument(argument: "scale", rule: "and zero_point must be finite")
        }
        try validatePair("q", q, into: "out", out)
        forEachOffset(q.shape, q.strides, out.strides) { source, target in
            out.data[target] = E.fromDouble(parameters.scale * (Double(q.data[source]) - parameters.zeroPoint))
        }
    }

    /// `input` must be a valid view, and `output` a writable one of its shape.
    static func validatePair<A, B>(_ inputName: String, _ input: StridedTensor<A>, into outputName: String,
                                   _ output: MutableStridedTensor<B>) throws {
        try validateLayout(inputName, shape: input.shape, strides: input.strides, hasData: input.base != nil)
        try requireRank(outputName, output.shape, input.rank, "(the shape of \(inputName))")
        for axis in 0..<input.rank {
            try requireExtent(outputName, output.shape, axis: axis, equals: input.shape[axis], "\(inputName).shape[\(axis)]")
        }
        try validateLayout(outputName, shape: output.shape, strides: output.strides, hasData: output.base != nil)
        try validateWritable(outputName, shape: output.shape, strides: output.strides)
    }

    /// Calls `body(offsetA, offsetB)` for every index of `shape`, in row-major order.
    static func forEachOffset(_ shape: [Int], _ stridesA: [Int], _ stridesB: [Int], _ body: (Int, Int) -> Void) {
        if shape.contains(0) { return }
        var index = [Int](repeating: 0, count: shape.count)
        var a = 0, b = 0
        while true {
            body(a, b)
            var axis = shape.count - 1
            while axis >= 0 {
                index[axis] += 1
                a += stridesA[axis]; b += stridesB[axis]
                if index[axis] < shape[axis] { break }
                a -= stridesA[axis] * shape[axis]; b -= stridesB[axis] * shape[axis]
                index[axis] = 0
                axis -= 1
            }
            if axis < 0 { return }
        }
    }
}
