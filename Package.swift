// swift-tools-version:6.0
import PackageDescription

// Layout by ISA:
// - AttnKitCore, AttnKit and AttnKitC are compiled for the baseline x86-64 ISA,
//   so validation, planning and dispatch run on any CPU.
// - The tiled kernels are compiled twice from the same file:
//   AttnKitKernels for AVX-512 (cascadelake: F/CD/BW/DQ/VL and VNNI, FMA, F16C) and
//   AttnKitKernelsPortable (symlinks to the same sources) for the baseline, and
//   AttnKitKernelsBF16 (symlinks again) for cooperlake, which adds AVX512_BF16.
//   AttnKit picks one at run time from CPUID; ATTNKIT_ISA=generic forces the
//   portable one.
// Kernels build -Ounchecked in release: every bound they rely on is checked
// once, up front, by the validating layer, which keeps Swift's checks.
let kernelFlags: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]
let avx512Flags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "cascadelake"]), .define("ATTNKIT_AVX512")]
let bf16Flags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "cooperlake"]), .define("ATTNKIT_AVX512"),
                                 .define("ATTNKIT_AVX512_BF16")]

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
        .target(name: "AttnKitCore", path: "Sources/AttnKitCore", swiftSettings: kernelFlags),
        .target(name: "AttnKitKernels", dependencies: ["AttnKitCore", "_AttnKitShims"], path: "Sources/AttnKitKernels",
                swiftSettings: kernelFlags + avx512Flags),
        .target(name: "AttnKitKernelsPortable", dependencies: ["AttnKitCore", "_AttnKitShims"], path: "Sources/AttnKitKernelsPortable",
                swiftSettings: kernelFlags),
        .target(name: "AttnKitKernelsBF16", dependencies: ["AttnKitCore", "_AttnKitShims"], path: "Sources/AttnKitKernelsBF16",
                swiftSettings: kernelFlags + bf16Flags),
        .target(
            name: "AttnKit",
            dependencies: ["AttnKitCore", "AttnKitKernels", "AttnKitKernelsPortable", "AttnKitKernelsBF16", "COpenBLAS",
                           "_AttnKitShims"],
            path: "Sources/AttnKit",
            swiftSettings: kernelFlags),
        .target(
            name: "AttnKitC",
            dependencies: ["AttnKit", "CAttnKitABI"],
            path: "Sources/AttnKitC"),
        .testTarget(
            name: "AttnKitTests",
            dependencies: ["AttnKit", "AttnKitKernels", "AttnKitKernelsPortable", "AttnKitKernelsBF16"],
            path: "Tests/swift"),
    ],
    swiftLanguageModes: [.v5]
)
