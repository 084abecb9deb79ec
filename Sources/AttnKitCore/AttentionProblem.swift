/// The element types attention inputs and outputs are stored in. Scores,
/// softmax statistics and the output accumulator are always fp32 (fp64 for the
/// Double reference path); storage only decides how values are loaded and stored.
public protocol AttnStorage {
    static func toFloat(_ value: Self) -> Float
    static func toDouble(_ value: Self) -> Double
    static func fromFloat(_ value: Float) -> Self
    static func fromDouble(_ value: Double) -> Self
}

extension Float: AttnStorage {
    @inlinable @inline(__always) public static func toFloat(_ value: Float) -> Float { value }
    @inlinable @inline(__always) public static func toDouble(_ value: Float) -> Double { Double(value) }
    @inlinable @inline(__always) public static func fromFloat(_ value: Float) -> Float { value }
    @inlinable @inline(__always) public static func fromDouble(_ value: Double) -> Float { Float(value) }
}

extension Double: AttnStorage {
    @inlinable @inline(__always) public static func toFloat(_ value: Double) -> Float { Float(value) }
    @inlinable @inline(__always) public static func toDouble(_ value: Double) -> Double { value }
    @inlinable @inline(__always) public static func fromFloat(_ value: Float) -> Double { Double(value) }
    @inlinable @inline(__always) public static func fromDouble(_ value: Double) -> Double { value }
}

extension Float16: AttnStorage {
    @inlinable @inline(__always) public static func toFloat(_ value: Float16) -> Float { Float(value) }
    @inlinable @inline(__always) public static func toDouble(_ value: Float16) -> Double { Double(value) }
    @inlinable @inline(__always) public static func fromFloat(_ value: Float) -> Float16 { Float16(value) }
    @inlinable @inline(__always) public static func fromDouble(_ value: Double) -> Float16 { Float16(value) }
}

/// int8 levels of a quantized KV cache: toFloat is the level itself (the scale
/// is applied by the caller, per row); fromFloat rounds to nearest even and
/// clamps to ±127 (symmetric quantization never uses −128).
extension Int8: AttnStorage {
    @inlinable @inline(__always) public static func toFloat(_ value: Int8) -> Float { Float(value) }
    @inlinable @inline(__always) public static func toDouble(_ value: Int8) -> Double { Double(value) }
    @inlinable @inline(__always) public static func fromFloat(_ value: Float) -> Int8 {
        guard value.isFinite else { return 0 }
        return Int8(Swift.min(Swift.max(value.rounded(.toNearestOrEven), -127), 127))
    }
    @inlinable @inline(__always) public static func fromDouble(_ value: Double) -> Int8 { fromFloat(Float(value)) }
}

/// bfloat16: the top 16 bits of an IEEE fp32. Widening is exact; narrowing
/// rounds to nearest, ties to even, and keeps NaN a (quiet) NaN.
public struct BFloat16: AttnStorage, Equatable {
    public var bitPattern: UInt16

    @inlinable public init(bitPattern: UInt16) { self.bitPattern = bitPattern }

    @inlinable @inline(__always) public static func toFloat(_ value: BFloat16) -> Float {
        Float(bitPattern: UInt32(value.bitPattern) << 16)
    }
    @inlinable @inline(__always) public static func toDouble(_ value: BFloat16) -> Double { Double(toFloat(value)) }
    @inlinable @inline(__always) public static func fromFloat(_ value: Float) -> BFloat16 {
        if value.isNaN { return BFloat16(bitPattern: UInt16(truncatingIfNeeded: value.bitPattern >> 16) | 0x0040) }
        let bits = value.bitPattern
        let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
        return BFloat16(bitPattern: UInt16(truncatingIfNeeded: rounded >> 16))
    }
    /// Rounds to fp32 first (exact for the values fp64 references produce here).
    @inlinable @inline(__always) public static func fromDouble(_ value: Double) -> BFloat16 { fromFloat(Float(value)) }
}

/// A strided 2-D view, [rows, cols], of storage E.
package struct Strided2D<E> {
    package var base: UnsafePointer<E>
    package var rowStride: Int
    package var colStride: Int

    package init(base: UnsafePointer<E>, rowStride: Int, colStride: Int) {
        self.base = base; self.rowStride = rowStride; self.colStride = colStride
    }

    @inlinable @inline(__always) package func pointer(_ row: Int, _ col: Int) -> UnsafePointer<E> {
        base + (row &* rowStride &+ col &* colStride)
    }
}

package struct MutableStrided2D<E> {
    package var base: UnsafeMutablePointer<E>
    package var rowStride: Int
    package var colStride: Int

    package init(base: UnsafeMutablePointer<E>, rowStride: Int, colStride: Int) {
        self.base = base; self.rowStride = rowStride; self.colStride = colStride
    }

    @inlinable @inline(__always) package func pointer(_ row: Int, _ col: Int) -> UnsafeMutablePointer<E> {
        base + (row &* rowStride &+ col &* colStride)
    }
}

/// An elementwise mask over [queries, keys], read through strides (broadcast
/// dims have stride 0).
package enum ElementMask<E> {
    case none
    /// Nonzero bytes take part; zero bytes are masked out.
    case keep(Strided2D<UInt8>)
    /// Added to the scaled (and softcapped) scores.
    case additive(Strided2D<E>)
}

/// The int8 keys of one KV head, quantized by the planner for the int8 QKᵀ path.
///
/// Layout (format version `int8KeyFormatVersion`):
///   values: [keys][paddedDim] Int8, row-major; paddedDim = headDim rounded up to a
///           multiple of 4 (one VNNI group), padding zero;
///   scales: [keys] Float: key row j dequantizes as scales[j]·values[j][d];
///   sums:   [keys] Int32: Σ_d values[j][d], which undoes the +128 shift that makes
///           the queries unsigned for vpdpbusd (u8 × s8).
package struct Int8Keys {
    package var values: UnsafePointer<Int8>
    package var scales: UnsafePointer<Float>
    package var sums: UnsafePointer<Int32>
    package var paddedDim: Int

    package init(values: UnsafePointer<Int8>, scales: UnsafePointer<Float>, sums: UnsafePointer<Int32>, paddedDim: Int) {
        self.values = values; self.scales = scales; self.sums = sums; self.paddedDim = paddedDim
    }
}

/// Caller-quantized int8 query rows: row i is values[i·rowStride + d·colStride]
/// with dequantization scale scales[i·scaleStride].
package struct Int8Rows {
    package var values: UnsafePointer<Int8>
    package var rowStride: Int
    package var colStride: Int
    package var scales: UnsafePointer<Float>
    package var scaleStride: Int

    package init(values: UnsafePointer<Int8>, rowStride: Int, colStride: Int, scales: UnsafePointer<Float>, scaleStride: Int) {
        self.values = values; self.rowStride = rowStride; self.colStride = colStride
        self.scales = scales; self.scaleStride = scaleStride
    }
}

/// Bumped whenever Int8Keys' layout changes.
package let int8KeyFormatVersion = 1

/// How the int8 path scales Q: symmetric, absmax/127 over the given group.
package enum Int8QueryScale {
    /// One scale for the whole query tensor (dequantization scale given).
    case perTensor(Float)
    /// One scale per query row.
    case perToken
    /// One scale per block of 64 query rows (the engine's task block).
    case perBlock
}

/// One (sequence, query head) of an attention call: the unit the engine tiles.
///
///     q:   [queries, headDim]     k: [keys, headDim]     v: [keys, valueDim]
///     out: [queries, valueDim]    lse: [queries] (optional)
package struct AttentionUnit<E> {
    package var q: Strided2D<E>
    package var k: Strided2D<E>
    package var v: Strided2D<E>
    package var out: MutableStrided2D<E>
    package var lse: UnsafeMutablePointer<Float>?
    package var lseStride: Int
    package var queries: Int
    package var keys: Int
    package var mask: ElementMask<E>
    /// ALiBi: −slope·|i + diagonal − j| is added to the scores (0 = none).
    package var alibiSlope: Float
    /// The key aligned with query i is i + diagonal: 0 for top-left (torch),
    /// keys − queries for bottom-right (flash-attn).
    package var diagonal: Int
    /// Distinguishes this unit's dropout pattern from every other unit's.
    package var dropoutStream: UInt64
    /// Set by the int8 planner: QKᵀ then runs on these keys in int8.
    package var int8Keys: Int8Keys? = nil
    /// Set for caller-quantized queries: used as they are instead of quantizing `q`.
    package var int8QuerySource: Int8Rows? = nil

    package init(q: Strided2D<E>, k: Strided2D<E>, v: Strided2D<E>, out: MutableStrided2D<E>,
                 lse: UnsafeMutablePointer<Float>?, lseStride: Int, queries: Int, keys: Int, mask: ElementMask<E>,
                 alibiSlope: Float, diagonal: Int, dropoutStream: UInt64) {
        self.q = q; self.k = k; self.v = v; self.out = out; self.lse = lse; self.lseStride = lseStride
        self.queries = queries; self.keys = keys; self.mask = mask; self.alibiSlope = alibiSlope
        self.diagonal = diagonal; self.dropoutStream = dropoutStream
    }
}

/// What applies to every unit of a call.
package struct AttentionOptions {
    package var headDim: Int
    package var valueDim: Int
    package var scale: Float
    /// softcap·tanh(s/softcap) before bias and masks; 0 = off.
    package var softcap: Float = 0
    /// Key j is allowed for query i iff i+diagonal−windowLeft <= j <= i+diagonal+windowRight;
    /// −1 leaves that side unbounded. Causal attention is windowRight = 0.
    package var windowLeft: Int = -1
    package var windowRight: Int = -1
    package var dropoutP: Float = 0
    package var seed: UInt64 = 0
    /// The lse written for a query with no allowed key.
    package var emptyRowLSE: Float = .infinity
    /// With units carrying int8Keys: how Q is quantized.
    package var int8Query: Int8QueryScale = .perBlock
    /// P·V from fp16 P and V with fp16 sums per 64-key tile, fp32 across tiles
    /// (AVX512_FP16). Only the int8 paths set it: by default where the CPU has
    /// it, unless ATTNKIT_INT8_PV=fp32 (KernelDispatch.int8HalfPrecisionValues);
    /// tiles whose V could overflow fp16 sums keep the fp32 P·V.
    package var halfPrecisionValues = false

    /// The softmax scale and softcap as given, for the fp64 path (AttentionReference):
    /// `scale` and `softcap` above are their fp32 roundings, which the fp32 kernels use.
    package var exactScale: Double
    package var exactSoftcap: Double = 0

    package init(headDim: Int, valueDim: Int, scale: Double) {
        self.headDim = headDim; self.valueDim = valueDim; self.scale = Float(scale); self.exactScale = scale
    }

    /// Sets the softcap (0 = off) in both precisions. softcap·tanh(s/softcap)
    /// tends to s as softcap grows and to 0 as it shrinks, so outside fp32's
    /// normal range the fp32 value takes the limit instead of overflowing or
    /// flushing: above fp32's largest finite value, off (softcap·tanh(s/softcap)
    /// rounds to s in fp32 long before); below its least normal value, that
    /// least normal value (every capped score is then within 1.2e-38 of 0, as
    /// it is with the exact softcap: uniform attention before masks and bias).
    package mutating func setSoftcap(_ softcap: Double) {
        exactSoftcap = softcap
        if softcap > Double(Float.greatestFiniteMagnitude) {
            self.softcap = 0
        } else if softcap > 0 && softcap < Double(Float.leastNormalMagnitude) {
            self.softcap = Float.leastNormalMagnitude
        } else {
            self.softcap = Float(softcap)
        }
    }

    /// The scale rule of every entry point: finite, and for inputs computed in
    /// fp32 (fp32, fp16, bf16), within fp32's finite range, since scores are
    /// fp32 there (a scale of 1e300 would make every score ±inf and every
    /// output NaN). fp64 inputs keep the fp64 scale.
    package static func validateScale(_ scale: Double, argument: String, computesInFloat: Bool) throws {
        guard scale.isFinite else {
            throw AttnError.invalidArgument(argument: argument, rule: "must be finite, got \(scale)")
        }
        let largest = Double(Float.greatestFiniteMagnitude)
        guard !computesInFloat || scale.magnitude <= largest else {
            throw AttnError.invalidArgument(argument: argument,
                                            rule: "must be within fp32's range (|scale| <= \(largest)) for fp32, fp16 and bf16 inputs, "
                                                + "whose scores are fp32, got \(scale)")
        }
    }

    /// A window side as the kernels store it: −1 (unbounded) for any width of
    /// 2^31 or more. Sequence lengths are below 2^30, so such a window already
    /// covers every key; wider values would overflow the masks' 32-bit lane
    /// arithmetic (a window of INT64_MAX once emptied every row).
    package static func boundedWindow(_ width: Int) -> Int {
        width >= 1 << 31 ? -1 : width
    }

    /// The allowed key range [lo, hi] of query `row` (before clamping to the keys).
    @inline(__always)
    package func keyRange(row: Int, diagonal: Int, keys: Int) -> (lo: Int, hi: Int) {
        let lo = windowLeft >= 0 ? row &+ diagonal &- windowLeft : 0
        let hi = windowRight >= 0 ? row &+ diagonal &+ windowRight : keys &- 1
        return (Swift.max(lo, 0), Swift.min(hi, keys &- 1))
    }
}

// MARK: - Dropout

/// Dropout decisions are a hash of (seed, unit, query, key), so they do not
/// depend on tiling or on which thread runs a tile: the same seed gives the
/// same bits for every thread count.
@inline(__always)
package func dropoutStreamKey(seed: UInt64, stream: UInt64) -> UInt32 {
    var x = seed ^ (stream &* 0x9E37_79B9_7F4A_7C15)
    x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
    x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
    x ^= x >> 31
    return UInt32(truncatingIfNeeded: x ^ (x >> 32))
}

/// 24 uniform bits for (row, col) under `key`; the element is kept iff they are >= threshold.
@inline(__always)
package func dropoutBits(key: UInt32, row: UInt32, col: UInt32) -> UInt32 {
    var x = (row &* 0x9E37_79B1) ^ (col &* 0x85EB_CA77) ^ key
    x ^= x >> 16; x = x &* 0x7FEB_352D
    x ^= x >> 15; x = x &* 0x846C_A68B
    x ^= x >> 16
    return x >> 8
}

@inline(__always)
package func dropoutBits(key: UInt32, rows: SIMD16<UInt32>, col: UInt32) -> SIMD16<UInt32> {
    var x = (rows &* SIMD16(repeating: 0x9E37_79B1)) ^ SIMD16(repeating: (col &* 0x85EB_CA77) ^ key)
    x ^= x &>> SIMD16(repeating: 16); x = x &* SIMD16(repeating: 0x7FEB_352D)
    x ^= x &>> SIMD16(repeating: 15); x = x &* SIMD16(repeating: 0x846C_A68B)
    x ^= x &>> SIMD16(repeating: 16)
    return x &>> SIMD16(repeating: 8)
}

/// The 24-bit threshold below which an element is dropped with probability p.
@inline(__always)
package func dropoutThreshold(_ p: Float) -> UInt32 {
    UInt32(Swift.min(Double(p) * 16_777_216.0, 16_777_216.0).rounded())
}
