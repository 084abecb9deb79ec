@_exported import AttnKitCore
import AttnKitKernels
import AttnKitKernelsBF16
import AttnKitKernelsPortable
import _AttnKitShims
#if canImport(Glibc)
import Glibc
#endif

/// The instruction sets the kernels are built for.
public enum KernelISA: String, Sendable {
    /// AVX-512 as below plus AVX512_BF16 (compiled as cooperlake): bf16 dot products.
    case avx512bf16 = "avx512_bf16"
    /// AVX-512 F/CD/BW/DQ/VL and VNNI with FMA and F16C (compiled as cascadelake).
    case avx512
    /// The baseline x86-64 build.
    case generic
}

/// Picks the kernel build at run time from CPUID (and the OS): AVX-512 when it
/// is there, else the portable build. The AVX512_BF16 build is opt-in with
/// ATTNKIT_ISA=avx512_bf16: its vdpbf16ps QKᵀ measured slower than the fp32 FMA
/// path on this machine (vdpbf16ps ran at a quarter of vfmadd231ps's rate;
/// benchmarks/bench_lowp.py), so it is not the default.
/// ATTNKIT_ISA=generic or =avx512 forces those builds (tests run every build on
/// one machine). No code compiled for an ISA runs before its check passes; a
/// request the CPU cannot honour falls back to the best build it can run.
public enum KernelDispatch {
    public static let isa: KernelISA = {
        let requested = getenv("ATTNKIT_ISA").map { String(cString: $0).lowercased() } ?? ""
        if requested == "generic" { return .generic }
        if requested == "avx512_bf16" && attn_shim_cpu_has_avx512_bf16() != 0 { return .avx512bf16 }
        return attn_shim_cpu_has_avx512() != 0 ? .avx512 : .generic
    }()

    /// Whether the int8 paths run P·V with fp16 P and V (AVX512_FP16): each lane
    /// (one row) sums a 64-key tile's products in fp16, and tiles are added up
    /// in fp32. About 1e-3 relative error on top of int8
    /// QKᵀ's, well inside the int8 accuracy bars, at twice the fp32 FMA rate.
    /// The default where the CPU has AVX512_FP16 and the AVX-512 kernels run;
    /// ATTNKIT_INT8_PV=fp32 keeps P·V in fp32, as it is everywhere else.
    public static let int8HalfPrecisionValues: Bool = {
        let requested = getenv("ATTNKIT_INT8_PV").map { String(cString: $0).lowercased() } ?? ""
        return requested != "fp32" && isa != .generic && attn_shim_cpu_has_avx512_fp16() != 0
    }()

    static func runFlash<E: AttnStorage>(units: [AttentionUnit<E>], options: AttentionOptions, threads: Int) throws {
        switch isa {
        case .avx512bf16: try AttnKitKernelsBF16.FlashEngine.run(units: units, options: options, threads: threads)
        case .avx512: try AttnKitKernels.FlashEngine.run(units: units, options: options, threads: threads)
        case .generic: try AttnKitKernelsPortable.FlashEngine.run(units: units, options: options, threads: threads)
        }
    }

    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int, keyAllowed: UnsafePointer<UInt8>?) {
        switch isa {
        case .avx512bf16: AttnKitKernelsBF16.RowSoftmax.run(row, count: count, keyAllowed: keyAllowed)
        case .avx512: AttnKitKernels.RowSoftmax.run(row, count: count, keyAllowed: keyAllowed)
        case .generic: AttnKitKernelsPortable.RowSoftmax.run(row, count: count, keyAllowed: keyAllowed)
        }
    }

    static func centeredAbsMax<E: AttnStorage>(_ source: Strided2D<E>, rows: Range<Int>, mean: UnsafePointer<Float>,
                                               count: Int) -> Float {
        switch isa {
        case .avx512bf16: AttnKitKernelsBF16.Int8Quantizer.centeredAbsMax(source, rows: rows, mean: mean, count: count)
        case .avx512: AttnKitKernels.Int8Quantizer.centeredAbsMax(source, rows: rows, mean: mean, count: count)
        case .generic: AttnKitKernelsPortable.Int8Quantizer.centeredAbsMax(source, rows: rows, mean: mean, count: count)
        }
    }

    static func quantizeRow<E: AttnStorage>(_ row: UnsafePointer<E>, colStride: Int, mean: UnsafePointer<Float>,
                                            inverse: Float, count: Int,
                                            into levels: UnsafeMutablePointer<Int8>) -> (sum: Int32, finite: Bool) {
        switch isa {
        case .avx512bf16:
            AttnKitKernelsBF16.Int8Quantizer.quantizeRow(row, colStride: colStride, mean: mean, inverse: inverse,
                                                         count: count, into: levels)
        case .avx512:
            AttnKitKernels.Int8Quantizer.quantizeRow(row, colStride: colStride, mean: mean, inverse: inverse,
                                                     count: count, into: levels)
        case .generic:
            AttnKitKernelsPortable.Int8Quantizer.quantizeRow(row, colStride: colStride, mean: mean, inverse: inverse,
                                                             count: count, into: levels)
        }
    }

    static func addRows<E: AttnStorage>(_ source: Strided2D<E>, rows: Range<Int>, count: Int,
                                        into totals: UnsafeMutablePointer<Float>) {
        switch isa {
        case .avx512bf16: AttnKitKernelsBF16.Int8Quantizer.addRows(source, rows: rows, count: count, into: totals)
        case .avx512: AttnKitKernels.Int8Quantizer.addRows(source, rows: rows, count: count, into: totals)
        case .generic: AttnKitKernelsPortable.Int8Quantizer.addRows(source, rows: rows, count: count, into: totals)
        }
    }
}
