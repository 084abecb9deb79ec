// swift-tools-version:6.0
import PackageDescription

// Layout by ISA:
// - AttnKitCore, AttnKit and AttnKitC are compiled for the baseline ISA of the
//   host (x86-64 or arm64), so validation, planning and dispatch run on any CPU.
// - The tiled kernels live in Sources/AttnKitKernels and are compiled once per
//   tier; the other kernel folders hold symlinks to the same files
//   (scripts/link_kernels.sh writes them; KernelMirrorTests checks them):
//     AttnKitKernelsPortable  every CPU: Swift SIMD only (SSE2 on x86-64, NEON on arm64)
//   and on x86-64 only:
//     AttnKitKernelsAVX2      x86-64-v3: AVX2, FMA, F16C (haswell)
//     AttnKitKernels          AVX-512 F/CD/BW/DQ/VL, VNNI, FMA, F16C (cascadelake)
//     AttnKitKernelsBF16      the above plus AVX512_BF16 (cooperlake)
//   AttnKit picks one build once, at first use, from CPUID (KernelDispatch.swift);
//   ATTNKIT_ISA=generic|avx2|avx512|avx512_bf16 overrides the choice.
// - Everything x86-specific sits behind the compilation condition ATTNKIT_X86,
//   which this manifest sets only when it is built on x86-64.
// Kernels build -Ounchecked in release: every bound they rely on is checked
// once, up front, by the validating layer (AttnKitCore, AttnKit, AttnKitC),
// which keeps Swift's checks: an overflow or bad index it missed traps there
// instead of corrupting memory in a kernel.
let kernelFlags: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]
let checkedFlags: [SwiftSetting] = [.unsafeFlags(["-wmo"], .when(configuration: .release))]

#if arch(x86_64)
let x86: [SwiftSetting] = [.define("ATTNKIT_X86")]
let avx2Flags: [SwiftSetting] = x86 + [.unsafeFlags(["-target-cpu", "haswell"]), .define("ATTNKIT_AVX2"),
                                       .define("ATTNKIT_FMA")]
let avx512Flags: [SwiftSetting] = x86 + [.unsafeFlags(["-target-cpu", "cascadelake"]), .define("ATTNKIT_AVX512"),
                                         .define("ATTNKIT_FMA")]
let bf16Flags: [SwiftSetting] = x86 + [.unsafeFlags(["-target-cpu", "cooperlake"]), .define("ATTNKIT_AVX512"),
                                       .define("ATTNKIT_AVX512_BF16"), .define("ATTNKIT_FMA")]
let x86KernelTargets: [Target] = [
    .target(name: "AttnKitKernelsAVX2", dependencies: ["AttnKitCore", "_AttnKitShims"], path: "Sources/AttnKitKernelsAVX2",
            swiftSettings: kernelFlags + avx2Flags),
    .target(name: "AttnKitKernels", dependencies: ["AttnKitCore", "_AttnKitShims"], path: "Sources/AttnKitKernels",
            swiftSettings: kernelFlags + avx512Flags),
    .target(name: "AttnKitKernelsBF16", dependencies: ["AttnKitCore", "_AttnKitShims"], path: "Sources/AttnKitKernelsBF16",
            swiftSettings: kernelFlags + bf16Flags),
]
let x86KernelNames: [Target.Dependency] = ["AttnKitKernelsAVX2", "AttnKitKernels", "AttnKitKernelsBF16"]
#else
let x86: [SwiftSetting] = []
let x86KernelTargets: [Target] = []
let x86KernelNames: [Target.Dependency] = []
#endif

let package = Package(
    name: "attnkit",
    products: [
        // The C ABI: libattnkit.so, the functions declared in include/attnkit.h.
        .library(name: "attnkit", type: .dynamic, targets: ["AttnKitC"]),
        // The typed Swift API.
        .library(name: "AttnKit", targets: ["AttnKit"]),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS"),
        .systemLibrary(name: "CAttnKitABI", path: "Sources/CAttnKitABI"),
        .target(name: "_AttnKitShims", path: "Sources/_AttnKitShims"),
        .target(name: "AttnKitCore", path: "Sources/AttnKitCore", swiftSettings: checkedFlags),
        .target(name: "AttnKitKernelsPortable", dependencies: ["AttnKitCore", "_AttnKitShims"],
                path: "Sources/AttnKitKernelsPortable", swiftSettings: kernelFlags),
        .target(
            name: "AttnKit",
            dependencies: ["AttnKitCore", "AttnKitKernelsPortable", "COpenBLAS", "_AttnKitShims"] + x86KernelNames,
            path: "Sources/AttnKit",
            swiftSettings: checkedFlags + x86),
        .target(
            name: "AttnKitC",
            dependencies: ["AttnKit", "CAttnKitABI"],
            path: "Sources/AttnKitC"),
        .testTarget(
            name: "AttnKitTests",
            dependencies: ["AttnKit", "_AttnKitShims"],
            path: "Tests/swift",
            swiftSettings: x86),
    ] + x86KernelTargets,
    swiftLanguageModes: [.v5]
)
