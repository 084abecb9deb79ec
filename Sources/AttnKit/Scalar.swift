import AttnKitCore
import COpenBLAS
#if canImport(Glibc)
import Glibc
#endif

/// The floating-point types the float kernels run in: their BLAS GEMM and
/// their softmax row, each in the type's own precision (fp32 for Float, fp64
/// for Double, as the spec asks).
public protocol AttentionScalar: BinaryFloatingPoint, SIMDScalar, Codable {
    /// Row-major C[m×n] = alpha·A[m×k]·op(B) + beta·C, where op(B) is B[k×n],
    /// or Bᵀ for B[n×k] when `transposeB`.
    static func gemm(m: Int, n: Int, k: Int, alpha: Self,
                     a: UnsafePointer<Self>, lda: Int,
                     b: UnsafePointer<Self>, ldb: Int, transposeB: Bool,
                     beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)

    /// Row-major C[m×n] = alpha·Aᵀ·B + beta·C, for A[k×m] and B[k×n].
    static func gemmTransposedA(m: Int, n: Int, k: Int, alpha: Self,
                                a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
                                beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)

    /// Turns `row[0..<count]` into softmax probabilities in place, skipping keys
    /// whose `keyAllowed` byte is 0 (they get probability 0). The caller has
    /// already checked that at least one key is allowed.
    static func softmaxRow(_ row: UnsafeMutablePointer<Self>, count: Int, keyAllowed: UnsafePointer<UInt8>?)

    /// e^x in the type's precision (libm).
    static func exponential(_ x: Self) -> Self
}

/// OpenBLAS runs inside our own worker threads, so it must not start its own.
let blasSingleThreaded: Void = { openblas_set_num_threads(1) }()

extension Float: AttentionScalar {
    @inlinable
    public static func gemm(m: Int, n: Int, k: Int, alpha: Float,
                            a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(Int32(AttnCblasRowMajor), Int32(AttnCblasNoTrans),
                    Int32(transposeB ? AttnCblasTrans : AttnCblasNoTrans),
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    @inlinable
    public static func gemmTransposedA(m: Int, n: Int, k: Int, alpha: Float,
                                       a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                       beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(Int32(AttnCblasRowMajor), Int32(AttnCblasTrans), Int32(AttnCblasNoTrans),
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    public static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int, keyAllowed: UnsafePointer<UInt8>?) {
        KernelDispatch.softmaxRow(row, count: count, keyAllowed: keyAllowed)
    }

    @inlinable public static func exponential(_ x: Float) -> Float { expf(x) }
}

extension Double: AttentionScalar {
    @inlinable
    public static func gemm(m: Int, n: Int, k: Int, alpha: Double,
                            a: UnsafePointer<Double>, lda: Int,
                            b: UnsafePointer<Double>, ldb: Int, transposeB: Bool,
                            beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(Int32(AttnCblasRowMajor), Int32(AttnCblasNoTrans),
                    Int32(transposeB ? AttnCblasTrans : AttnCblasNoTrans),
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    @inlinable
    public static func gemmTransposedA(m: Int, n: Int, k: Int, alpha: Double,
                                       a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                                       beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(Int32(AttnCblasRowMajor), Int32(AttnCblasTrans), Int32(AttnCblasNoTrans),
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    public static func softmaxRow(_ row: UnsafeMutablePointer<Double>, count: Int, keyAllowed: UnsafePointer<UInt8>?) {
        var rowMax = -Double.infinity
        for j in 0..<count {
            if let keyAllowed, keyAllowed[j] == 0 { row[j] = -.infinity; continue }
            // Written so a NaN score makes the max NaN, and the whole row NaN.
            if !(row[j] <= rowMax) { rowMax = row[j] }
        }
        var sum = 0.0
        for j in 0..<count {
            let e = row[j] == -.infinity ? 0 : Glibc.exp(row[j] - rowMax)
            row[j] = e
            sum += e
        }
        let inverse = 1 / sum
        for j in 0..<count { row[j] *= inverse }
    }

    @inlinable public static func exponential(_ x: Double) -> Double { Glibc.exp(x) }
}
