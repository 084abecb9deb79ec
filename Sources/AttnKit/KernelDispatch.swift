@_exported import AttnKitCore
import AttnKitKernels
import AttnKitKernelsPortable
import _AttnKitShims
#if canImport(Glibc)
import Glibc
#endif

/// The instruction sets the kernels are built for.
public enum KernelISA: String, Sendable {
    /// AVX-512 F/CD/BW/DQ/VL and VNNI with FMA and F16C (compiled as cascadelake).
    case avx512
    /// The baseline x86-64 build.
    case generic
}

/// Picks the kernel build at run time: AVX-512 when CPUID (and the OS) say it
/// is there, unless ATTNKIT_ISA=generic forces the portable build. No code
/// compiled for an ISA runs before this check passes.
public enum KernelDispatch {
    public static let isa: KernelISA = {
        if let raw = getenv("ATTNKIT_ISA"), String(cString: raw).lowercased() == "generic" { return .generic }
        return attn_shim_cpu_has_avx512() != 0 ? .avx512 : .generic
    }()

    static func runFlash<E: AttnStorage>(units: [AttentionUnit<E>], options: AttentionOptions, threads: Int) throws {
        switch isa {
        case .avx512: try AttnKitKernels.FlashEngine.run(units: units, options: options, threads: threads)
        case .generic: try AttnKitKernelsPortable.FlashEngine.run(units: units, options: options, threads: threads)
        }
    }

    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int, keyAllowed: UnsafePointer<UInt8>?) {
        switch isa {
        case .avx512: AttnKitKernels.RowSoftmax.run(row, count: count, keyAllowed: keyAllowed)
        case .generic: AttnKitKernelsPortable.RowSoftmax.run(row, count: count, keyAllowed: keyAllowed)
        }
    }
}
