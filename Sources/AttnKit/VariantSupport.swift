import AttnKitCore

// Helpers the attention guide's variants (sparse top-k, AFT, Linformer) share:
// storage/compute conversion, BLAS operands, and the [B, H, S, D] head layout.

@inline(__always) func toCompute<E: AttnStorage, T: AttentionScalar>(_ value: E, as _: T.Type) -> T {
    T.self == Double.self ? T(E.toDouble(value)) : T(E.toFloat(value))
}

@inline(__always) func toStorage<E: AttnStorage, T: AttentionScalar>(_ value: T, as _: E.Type) -> E {
    T.self == Double.self ? E.fromDouble(Double(value)) : E.fromFloat(Float(value))
}

/// A [rows, cols] matrix BLAS can read in place (already of the compute type, unit
/// column stride, leading dimension in 32 bits and at least `cols`), or a packed,
/// converted contiguous copy in `scratch`.
func blasOperand<E: AttnStorage, T: AttentionScalar>(_ matrix: Strided2D<E>, rows: Int, cols: Int,
                                                    scratch: UnsafeMutablePointer<T>) -> (UnsafePointer<T>, Int) {
    if E.self == T.self && (matrix.colStride == 1 || cols <= 1) && matrix.rowStride >= cols
        && matrix.rowStride <= Int(Int32.max) && (rows <= 1 || matrix.rowStride > 0) {
        return (UnsafeRawPointer(matrix.base).assumingMemoryBound(to: T.self), Swift.max(matrix.rowStride, 1))
    }
    for row in 0..<rows {
        for col in 0..<cols { scratch[row &* cols &+ col] = toCompute(matrix.pointer(row, col).pointee, as: T.self) }
    }
    return (UnsafePointer(scratch), Swift.max(cols, 1))
}

/// The shapes of a [B, Hq, Sq, D] × [B, Hk, Sk, D] × [B, Hk, Sk, Dv] → [B, Hq, Sq, Dv]
/// problem (Hk divides Hq: grouped-query attention).
struct HeadsProblem {
    let batch, headsQ, headsK, seqQ, seqK, dim, valueDim: Int
    var group: Int { headsK == 0 ? 1 : headsQ / headsK }
}

/// Checks q, k, v and out in the [B, H, S, D] layout, returning the problem.
func validateHeads<E>(q: StridedTensor<E>, k: StridedTensor<E>, v: StridedTensor<E>,
                      out: MutableStridedTensor<E>) throws -> HeadsProblem {
    let layout = "[batch, num_heads, seq, head_dim]"
    for (name, shape) in [("q", q.shape), ("k", k.shape), ("v", v.shape), ("out", out.shape)] {
        try requireRank(name, shape, 4, layout)
    }
    let batch = q.shape[0], headsQ = q.shape[1], headsK = k.shape[1]
    try requireExtent("k", k.shape, axis: 0, equals: batch, "q.shape[0]")
    try requireExtent("v", v.shape, axis: 0, equals: batch, "q.shape[0]")
    try requireExtent("v", v.shape, axis: 1, equals: headsK, "k.shape[1]")
    try requireExtent("v", v.shape, axis: 2, equals: k.shape[2], "k.shape[2]")
    try requireExtent("k", k.shape, axis: 3, equals: q.shape[3], "q.shape[3]")
    if headsQ > 0 {
        guard headsK >= 1, headsQ % headsK == 0 else {
            throw AttnError.shape(argument: "k.shape[1]",
                                  rule: "must divide q.shape[1] (\(headsQ)) (grouped-query heads), got \(headsK)")
        }
    }
    let expected = [batch, headsQ, q.shape[2], v.shape[3]]
    let why = ["q.shape[0]", "q.shape[1]", "q.shape[2]", "v.shape[3]"]
    for axis in 0..<4 { try requireExtent("out", out.shape, axis: axis, equals: expected[axis], why[axis]) }
    try validateLayout("q", shape: q.shape, strides: q.strides, hasData: q.base != nil)
    try validateLayout("k", shape: k.shape, strides: k.strides, hasData: k.base != nil)
    try validateLayout("v", shape: v.shape, strides: v.strides, hasData: v.base != nil)
    try validateLayout("out", shape: out.shape, strides: out.strides, hasData: out.base != nil)
    try validateWritable("out", shape: out.shape, strides: out.strides)
    guard k.shape[2] <= Int(Int32.max), q.shape[3] <= Int(Int32.max), v.shape[3] <= Int(Int32.max) else {
        throw AttnError.invalidArgument(argument: "k", rule: "seq and head_dim must each fit in Int32 for BLAS")
    }
    return HeadsProblem(batch: batch, headsQ: headsQ, headsK: headsK, seqQ: q.shape[2], seqK: k.shape[2],
                        dim: q.shape[3], valueDim: v.shape[3])
}

/// Head `head` of batch `batch` of a [B, H, S, D] tensor: an [S, D] matrix.
@inline(__always) func headMatrix<E>(_ tensor: StridedTensor<E>, _ batch: Int, _ head: Int) -> Strided2D<E> {
    Strided2D(base: tensor.data + (batch &* tensor.strides[0] &+ head &* tensor.strides[1]),
              rowStride: tensor.strides[2], colStride: tensor.strides[3])
}

/// A softmax scale: the given one, or 1/sqrt(D). It must be finite, and within fp32's
/// range when the scores are fp32 (docs/semantics.md §3).
func resolveScale(_ scale: Double?, dim: Int, fp32: Bool) throws -> Double {
    guard let scale else { return 1 / Double(Swift.max(dim, 1)).squareRoot() }
    guard scale.isFinite, !fp32 || scale.magnitude <= Double(Float.greatestFiniteMagnitude) else {
        throw AttnError.invalidArgument(argument: "softmax_scale",
                                        rule: "must be finite\(fp32 ? " and within fp32's range" : ""), got \(scale)")
    }
    return scale
}

/// x[i] = e^x[i] for i < count: the kernel tier's vector exp for fp32 (about 1.4 ulp, results
/// below e^−87.33 flushed to 0), libm for fp64.
@inline(__always) func exponentiate<T: AttentionScalar>(_ x: UnsafeMutablePointer<T>, count: Int) {
    if T.self == Float.self {
        KernelDispatch.expInPlace(UnsafeMutableRawPointer(x).assumingMemoryBound(to: Float.self), count: count)
    } else {
        for i in 0..<count { x[i] = T.exponential(x[i]) }
    }
}

/// Writes the j < count with !(row[j] <= threshold) (larger, or NaN) to positions in order and
/// returns how many: the kernel tier's vector scan for fp32.
@inline(__always) func collectAbove<T: AttentionScalar>(_ row: UnsafePointer<T>, count: Int, threshold: T,
                                                       into positions: UnsafeMutablePointer<Int32>) -> Int {
    if T.self == Float.self {
        return KernelDispatch.collectAbove(UnsafeRawPointer(row).assumingMemoryBound(to: Float.self), count: count,
                                           threshold: Float(threshold), into: positions)
    }
    var found = 0
    for j in 0..<count where !(row[j] <= threshold) {
        positions[found] = Int32(truncatingIfNeeded: j)
        found &+= 1
    }
    return found
}

/// row[c] = element c of a strided vector, converted to the compute type.
@inline(__always) func loadRow<E: AttnStorage, T: AttentionScalar>(_ base: UnsafePointer<E>, stride: Int, count: Int,
                                                                  into row: UnsafeMutablePointer<T>) {
    if stride == 1 && E.self == T.self {
        row.update(from: UnsafeRawPointer(base).assumingMemoryBound(to: T.self), count: count)
    } else if stride == 1 {
        for c in 0..<count { row[c] = toCompute(base[c], as: T.self) }
    } else {
        for c in 0..<count { row[c] = toCompute(base[c &* stride], as: T.self) }
    }
}

/// Element c of a strided vector = row[c], converted to the storage type.
@inline(__always) func storeRow<E: AttnStorage, T: AttentionScalar>(_ row: UnsafePointer<T>, count: Int,
                                                                   into base: UnsafeMutablePointer<E>, stride: Int) {
    if stride == 1 && E.self == T.self {
        UnsafeMutableRawPointer(base).assumingMemoryBound(to: T.self).update(from: row, count: count)
    } else {
        for c in 0..<count { base[c &* stride] = toStorage(row[c], as: E.self) }
    }
}
