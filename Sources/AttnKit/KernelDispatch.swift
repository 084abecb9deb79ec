@_exported import AttnKitCore
import AttnKitKernelsPortable
import _AttnKitShims
#if ATTNKIT_X86
import AttnKitKernels
import AttnKitKernelsAVX2
import AttnKitKernelsBF16
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The kernel builds (tiers). Raw values are the names ATTNKIT_ISA and
/// attnkit.isa() use.
public enum KernelISA: String, Sendable, CaseIterable {
    /// Swift SIMD only, for the host's baseline ISA (SSE2 on x86-64, NEON on arm64).
    case generic
    /// x86-64-v3: AVX2, FMA, F16C (compiled as haswell).
    case avx2
    /// AVX-512 F/CD/BW/DQ/VL and VNNI with FMA and F16C (compiled as cascadelake).
    case avx512
    /// AVX-512 as above plus AVX512_BF16 (compiled as cooperlake): bf16 dot products.
    case avx512bf16 = "avx512_bf16"

    /// Whether this CPU (and its OS) can run the build: CPUID and XGETBV.
    public var isSupported: Bool {
        #if ATTNKIT_X86
        switch self {
        case .generic: return true
        case .avx2: return attn_shim_cpu_has_avx2() != 0
        case .avx512: return attn_shim_cpu_has_avx512() != 0
        case .avx512bf16: return attn_shim_cpu_has_avx512_bf16() != 0
        }
        #else
        return self == .generic
        #endif
    }

    /// The build's kernels, or nil where this binary does not contain it (the
    /// x86 tiers on arm64).
    package var kernels: KernelSet.Type? {
        switch self {
        case .generic: return AttnKitKernelsPortable.Kernels.self
        #if ATTNKIT_X86
        case .avx2: return AttnKitKernelsAVX2.Kernels.self
        case .avx512: return AttnKitKernels.Kernels.self
        case .avx512bf16: return AttnKitKernelsBF16.Kernels.self
        #else
        default: return nil
        #endif
        }
    }
}

/// Picks the kernel build once, at first use, and holds it for the process.
///
/// The default is the widest build the CPU runs, with one per-family rule:
/// where the CPU has AVX512_BF16, the bf16 build (vdpbf16ps QKᵀ for bf16
/// inputs) is the default on AMD (Zen 4 and later run vdpbf16ps at the FMA
/// rate) and opt-in on Intel, where it ran at a quarter of the FMA rate
/// (benchmarks/NOTES.md; benchmarks/bench_lowp.py measures both tiers).
/// ATTNKIT_ISA=generic|avx2|avx512|avx512_bf16 overrides the default; a
/// request this CPU cannot run falls back to the default. No code compiled
/// for an ISA runs before its check passes.
public enum KernelDispatch {
    public static let isa: KernelISA = {
        let requested = getenv("ATTNKIT_ISA").map { String(cString: $0).lowercased() } ?? ""
        if let tier = KernelISA(rawValue: requested), tier.isSupported, tier.kernels != nil { return tier }
        return defaultISA
    }()

    /// The build this CPU gets without ATTNKIT_ISA (see above).
    public static let defaultISA: KernelISA = {
        if KernelISA.avx512bf16.isSupported && cpuVendor == "AuthenticAMD" { return .avx512bf16 }
        if KernelISA.avx512.isSupported { return .avx512 }
        if KernelISA.avx2.isSupported { return .avx2 }
        return .generic
    }()

    /// Every build this CPU can run, narrowest first.
    public static var availableISAs: [KernelISA] {
        KernelISA.allCases.filter { $0.isSupported && $0.kernels != nil }
    }

    /// The chosen build's kernels: every call into a kernel goes through this.
    package static let kernels: KernelSet.Type = isa.kernels ?? AttnKitKernelsPortable.Kernels.self

    /// CPUID's vendor string ("GenuineIntel", "AuthenticAMD"), empty off x86.
    public static let cpuVendor: String = {
        #if ATTNKIT_X86
        var vendor = [CChar](repeating: 0, count: 13)
        _ = attn_shim_cpu_family(&vendor)
        return String(cString: vendor)
        #else
        return ""
        #endif
    }()

    /// Whether the int8 paths run P·V with fp16 P and V (AVX512_FP16): each lane
    /// (one row) sums a 64-key tile's products in fp16, and tiles are added up
    /// in fp32. About 1e-3 relative error on top of int8
    /// QKᵀ's, well inside the int8 accuracy bars, at twice the fp32 FMA rate.
    /// The default where the CPU has AVX512_FP16 and an AVX-512 build runs;
    /// ATTNKIT_INT8_PV=fp32 keeps P·V in fp32, as it is everywhere else.
    public static let int8HalfPrecisionValues: Bool = {
        #if ATTNKIT_X86
        let requested = getenv("ATTNKIT_INT8_PV").map { String(cString: $0).lowercased() } ?? ""
        return requested != "fp32" && (isa == .avx512 || isa == .avx512bf16) && attn_shim_cpu_has_avx512_fp16() != 0
        #else
        return false
        #endif
    }()

    /// Initializes every lazily computed global the kernels read, on the
    /// calling thread, before any worker thread starts. In a process forked from
    /// one that never called attnkit, two threads meeting in the Swift runtime's
    /// lazy-global initialization (swift_once) spun forever in 2-3% of first
    /// calls (Tests/c/fork_first_call.c reproduces it); initialized here, the
    /// workers only read them.
    public static func prepare() {
        _ = kernels
        _ = int8HalfPrecisionValues
        _ = ThreadSettings.numThreads
    }

    static func runDecode<E: AttnStorage>(_ problem: DecodeProblem<E>, tasks: [DecodeTask],
                                          partials: UnsafeMutablePointer<Float>, threads: Int) throws {
        try kernels.runDecode(problem, tasks: tasks, partials: partials, threads: threads)
    }

    static func runBackward<E: AttnStorage>(_ problem: BackwardProblem<E>, options: AttentionOptions, threads: Int) throws {
        try kernels.runBackward(problem, options: options, threads: threads)
    }

    static func runFlash<E: AttnStorage>(units: [AttentionUnit<E>], options: AttentionOptions, threads: Int) throws {
        try kernels.runFlash(units: units, options: options, threads: threads)
    }

    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int, keyAllowed: UnsafePointer<UInt8>?) {
        kernels.softmaxRow(row, count: count, keyAllowed: keyAllowed)
    }

    static func expInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) { kernels.expInPlace(x, count: count) }

    static func collectAbove(_ row: UnsafePointer<Float>, count: Int, threshold: Float,
                             into positions: UnsafeMutablePointer<Int32>) -> Int {
        kernels.collectAbove(row, count: count, threshold: threshold, into: positions)
    }

    static func centeredAbsMax<E: AttnStorage>(_ source: Strided2D<E>, rows: Range<Int>, mean: UnsafePointer<Float>,
                                               count: Int) -> Float {
        kernels.centeredAbsMax(source, rows: rows, mean: mean, count: count)
    }

    static func quantizeRow<E: AttnStorage>(_ row: UnsafePointer<E>, colStride: Int, mean: UnsafePointer<Float>,
                                            inverse: Float, count: Int,
                                            into levels: UnsafeMutablePointer<Int8>) -> (sum: Int32, finite: Bool) {
        kernels.quantizeRow(row, colStride: colStride, mean: mean, inverse: inverse, count: count, into: levels)
    }

    static func addRows<E: AttnStorage>(_ source: Strided2D<E>, rows: Range<Int>, count: Int,
                                        into totals: UnsafeMutablePointer<Float>) {
        kernels.addRows(source, rows: rows, count: count, into: totals)
    }
}
