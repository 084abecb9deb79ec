import XCTest
import AttnKit

/// A small deterministic generator, so failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func randomArray<T: BinaryFloatingPoint>(_ count: Int, _ rng: inout SplitMix64) -> [T]
where T.RawSignificand: FixedWidthInteger {
    (0..<count).map { _ in T.random(in: -2...2, using: &rng) }
}

/// Asserts max|actual − expected| <= tolerance · max(1, max|expected|), naming the case.
func assertClose<T: BinaryFloatingPoint>(_ actual: [T], _ expected: [T], tolerance: Double, _ label: String,
                                         file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, label, file: file, line: line)
    var maxError = 0.0, maxMagnitude = 1.0
    for (a, e) in zip(actual, expected) {
        let error = abs(Double(a) - Double(e))
        if error.isNaN || error > maxError { maxError = error.isNaN ? .infinity : error }
        maxMagnitude = max(maxMagnitude, abs(Double(e)))
    }
    XCTAssertLessThanOrEqual(maxError, tolerance * maxMagnitude, "\(label): max error \(maxError)", file: file, line: line)
}

/// The kernels of one tier, for tests that call a kernel build directly; the
/// test is skipped, with the reason, where this CPU (or this build) cannot run it.
func tierKernels(_ tier: KernelISA) throws -> KernelSet.Type {
    guard let kernels = tier.kernels else {
        throw XCTSkip("\(tier.rawValue) kernels are x86-64 only; this build has none")
    }
    guard tier.isSupported else {
        let needs: String
        switch tier {
        case .generic: needs = "nothing"
        case .avx2: needs = "AVX2/FMA/F16C (x86-64-v3)"
        case .avx512: needs = "AVX-512 (F/CD/BW/DQ/VL, VNNI)"
        case .avx512bf16: needs = "AVX512_BF16"
        }
        throw XCTSkip("CPU lacks \(needs): \(tier.rawValue) kernels not run")
    }
    return kernels
}
