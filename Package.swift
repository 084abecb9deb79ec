// swift-tools-version:6.0
import PackageDescription
import Foundation

// The core is compiled for the building machine's CPU (-target-cpu native) unless
// ATTNKIT_PORTABLE=1. A native build on an AVX-512 machine records that with
// ATTNKIT_AVX512, and the C ABI then refuses to run on a CPU without it rather
// than execute an instruction the CPU lacks.
let portable = ProcessInfo.processInfo.environment["ATTNKIT_PORTABLE"] == "1"
let cpuFlags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
let hostHasAVX512 = cpuFlags.contains(" avx512f") && cpuFlags.contains(" avx512bw") && cpuFlags.contains(" avx512vl")
let isaFlags: [String] = portable ? [] : ["-target-cpu", "native"]
let isaDefines: [SwiftSetting] = (!portable && hostHasAVX512) ? [.define("ATTNKIT_AVX512")] : []

// The kernels are built with -Ounchecked in release: every bound they rely on is
// checked once, up front, by the validating layer (AttnKit's public entry points
// and the C ABI). The validating layer itself keeps Swift's checks.
let kernelFlags: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
    .unsafeFlags(isaFlags),
] + isaDefines

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
        .target(
            name: "AttnKit",
            dependencies: ["COpenBLAS", "_AttnKitShims"],
            path: "Sources/AttnKit",
            swiftSettings: kernelFlags),
        .target(
            name: "AttnKitC",
            dependencies: ["AttnKit", "CAttnKitABI"],
            path: "Sources/AttnKitC"),
        .testTarget(
            name: "AttnKitTests",
            dependencies: ["AttnKit"],
            path: "Tests/swift"),
    ],
    swiftLanguageModes: [.v5]
)
