import XCTest
import Foundation
import AttnKit

/// The kernel tiers as a whole: the mirror folders that compile the shared
/// kernel sources once per tier, and the dispatch table.
final class KernelTierTests: XCTestCase {
    /// Sources/AttnKitKernels holds the kernel sources; every other kernel
    /// folder must hold exactly one symlink per source file, pointing at it
    /// (scripts/link_kernels.sh writes them). A file missing from a mirror
    /// would silently drop a kernel from one tier; an extra one would compile
    /// into one tier only.
    func testKernelFoldersMirrorTheSources() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Sources")
        let files = FileManager.default
        let truth = try files.contentsOfDirectory(atPath: sources.appendingPathComponent("AttnKitKernels").path).sorted()
        XCTAssertTrue(truth.contains("FlashEngine.swift"), "\(truth)")
        for mirror in ["AttnKitKernelsPortable", "AttnKitKernelsAVX2", "AttnKitKernelsBF16"] {
            let folder = sources.appendingPathComponent(mirror)
            let names = try files.contentsOfDirectory(atPath: folder.path).sorted()
            XCTAssertEqual(names, truth, "\(mirror) must mirror AttnKitKernels: run scripts/link_kernels.sh")
            for name in names {
                let target = try? files.destinationOfSymbolicLink(atPath: folder.appendingPathComponent(name).path)
                XCTAssertEqual(target, "../AttnKitKernels/\(name)", "\(mirror)/\(name) must link to the source")
            }
        }
    }

    /// Each tier's kernels report their own name; the chosen tier is one this
    /// CPU runs; ATTNKIT_ISA, when set to a tier the CPU has, is honoured.
    func testDispatchTable() throws {
        XCTAssertTrue(KernelDispatch.availableISAs.contains(.generic))
        XCTAssertTrue(KernelDispatch.availableISAs.contains(KernelDispatch.isa))
        XCTAssertTrue(KernelDispatch.availableISAs.contains(KernelDispatch.defaultISA))
        for tier in KernelDispatch.availableISAs {
            XCTAssertEqual(tier.kernels?.tierName, tier.rawValue)
        }
        if let requested = ProcessInfo.processInfo.environment["ATTNKIT_ISA"],
           let tier = KernelISA(rawValue: requested.lowercased()), tier.isSupported {
            XCTAssertEqual(KernelDispatch.isa, tier)
        }
        #if arch(x86_64)
        // Every AVX-512 CPU runs the AVX2 tier too.
        if KernelISA.avx512.isSupported { XCTAssertTrue(KernelISA.avx2.isSupported) }
        #endif
    }
}
