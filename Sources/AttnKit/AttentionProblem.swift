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

/// A strided 2-D view, [rows, cols], of storage E.
struct Strided2D<E> {
    var base: UnsafePointer<E>
    var rowStride: Int
    var colStride: Int

    @inline(__always) func pointer(_ row: Int, _ col: Int) -> UnsafePointer<E> {
        base + (row &* rowStride &+ col &* colStride)
    }
}

struct MutableStrided2D<E> {
    var base: UnsafeMutablePointer<E>
    var rowStride: Int
    var colStride: Int

    @inline(__always) func pointer(_ row: Int, _ col: Int) -> UnsafeMutablePointer<E> {
        base + (row &* rowStride &+ col &* colStride)
    }
}

/// An elementwise mask over [queries, keys], read through strides (broadcast
/// dims have stride 0).
enum ElementMask<E> {
    case none
    /// Nonzero bytes take part; zero bytes are masked out.
    case keep(Strided2D<UInt8>)
    /// Added to the scaled (and softcapped) scores.
    case additive(Strided2D<E>)
}

/// One (sequence, query head) of an attention call: the unit the engine tiles.
///
///     q:   [queries, headDim]     k: [keys, headDim]     v: [keys, valueDim]
///     out: [queries, valueDim]    lse: [queries] (optional)
struct AttentionUnit<E> {
    var q: Strided2D<E>
    var k: Strided2D<E>
    var v: Strided2D<E>
    var out: MutableStrided2D<E>
    var lse: UnsafeMutablePointer<Float>?
    var lseStride: Int
    var queries: Int
    var keys: Int
    var mask: ElementMask<E>
    /// ALiBi: −slope·|i + diagonal − j| is added to the scores (0 = none).
    var alibiSlope: Float
    /// The key aligned with query i is i + diagonal: 0 for top-left (torch),
    /// keys − queries for bottom-right (flash-attn).
    var diagonal: Int
    /// Distinguishes this unit's dropout pattern from every other unit's.
    var dropoutStream: UInt64
}

/// What applies to every unit of a call.
struct AttentionOptions {
    var headDim: Int
    var valueDim: Int
    var scale: Float
    /// softcap·tanh(s/softcap) before bias and masks; 0 = off.
    var softcap: Float = 0
    /// Key j is allowed for query i iff i+diagonal−windowLeft <= j <= i+diagonal+windowRight;
    /// −1 leaves that side unbounded. Causal attention is windowRight = 0.
    var windowLeft: Int = -1
    var windowRight: Int = -1
    var dropoutP: Float = 0
    var seed: UInt64 = 0
    /// The lse written for a query with no allowed key.
    var emptyRowLSE: Float = .infinity

    /// The allowed key range [lo, hi] of query `row` (before clamping to the keys).
    @inline(__always)
    func keyRange(row: Int, diagonal: Int, keys: Int) -> (lo: Int, hi: Int) {
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
func dropoutStreamKey(seed: UInt64, stream: UInt64) -> UInt32 {
    var x = seed ^ (stream &* 0x9E37_79B9_7F4A_7C15)
    x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
    x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
    x ^= x >> 31
    return UInt32(truncatingIfNeeded: x ^ (x >> 32))
}

/// 24 uniform bits for (row, col) under `key`; the element is kept iff they are >= threshold.
@inline(__always)
func dropoutBits(key: UInt32, row: UInt32, col: UInt32) -> UInt32 {
    var x = (row &* 0x9E37_79B1) ^ (col &* 0x85EB_CA77) ^ key
    x ^= x >> 16; x = x &* 0x7FEB_352D
    x ^= x >> 15; x = x &* 0x846C_A68B
    x ^= x >> 16
    return x >> 8
}

@inline(__always)
func dropoutBits(key: UInt32, rows: SIMD16<UInt32>, col: UInt32) -> SIMD16<UInt32> {
    var x = (rows &* SIMD16(repeating: 0x9E37_79B1)) ^ SIMD16(repeating: (col &* 0x85EB_CA77) ^ key)
    x ^= x &>> SIMD16(repeating: 16); x = x &* SIMD16(repeating: 0x7FEB_352D)
    x ^= x &>> SIMD16(repeating: 15); x = x &* SIMD16(repeating: 0x846C_A68B)
    x ^= x &>> SIMD16(repeating: 16)
    return x &>> SIMD16(repeating: 8)
}

/// The 24-bit threshold below which an element is dropped with probability p.
@inline(__always)
func dropoutThreshold(_ p: Float) -> UInt32 {
    UInt32(Swift.min(Double(p) * 16_777_216.0, 16_777_216.0).rounded())
}
