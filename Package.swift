// swift-tools-version:6.0
import PackageDescription

// The kernels are built with -Ounchecked in release: every bound they rely on is
// checked once, up front, by the validating layer (AttnKit's public entry points
// and the C ABI). The validating layer itself keeps Swift's checks.
let kernelFlags: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

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
        .target(
            name: "AttnKit",
            dependencies: ["COpenBLAS"],
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
