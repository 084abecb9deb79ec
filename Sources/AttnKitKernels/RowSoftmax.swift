// Compiled once per ISA (see Package.swift); AttnKit dispatches at run time.
import AttnKitCore

/// The eager kernel's softmax over one row of materialized scores.
public enum RowSoftmax {
    /// Turns `row[0..<count]` into softmax probabilities in place, skipping keys
    /// whose `keyAllowed` byte is 0 (they get probability 0). The caller has
    /// already checked that at least one key is allowed.
    public static func run(_ row: UnsafeMutablePointer<Float>, count: Int, keyAllowed: UnsafePointer<UInt8>?) {
        let vectorEnd = count & ~15
        // Masked keys become −inf here, in fp32, so they drop out of max and sum.
        if let keyAllowed {
            // Named vectors: the stdlib's vector-with-scalar operator overloads are lane loops.
            let negativeInfinity = SIMD16<Float>(repeating: -.infinity), zero = SIMD16<Int32>()
            var j = 0
            while j < vectorEnd {
                let allowed = UnsafeRawPointer(keyAllowed + j).loadUnaligned(as: SIMD16<UInt8>.self)
                var scores = load16(row + j)
                scores.replace(with: negativeInfinity, where: SIMD16<Int32>(truncatingIfNeeded: allowed) .== zero)
                store16(scores, row + j)
                j += 16
            }
            while j < count { if keyAllowed[j] == 0 { row[j] = -.infinity }; j += 1 }
        }
        var maxVector = SIMD16<Float>(repeating: -.infinity)
        var j = 0
        while j < vectorEnd { maxVector = lanewiseMax(maxVector, load16(row + j)); j += 16 }
        if j < count { maxVector = lanewiseMax(maxVector, loadPartial(row + j, count: count - j, fill: -.infinity)) }
        let rowMax = SIMD16<Float>(repeating: laneMax(maxVector))
        var sumVector = SIMD16<Float>()
        j = 0
        while j < vectorEnd {
            let e = fastExp(load16(row + j) - rowMax)
            store16(e, row + j)
            sumVector += e
            j += 16
        }
        if j < count {
            let e = fastExp(loadPartial(row + j, count: count - j, fill: -.infinity) - rowMax)
            storePartial(e, row + j, count: count - j)
            sumVector += e
        }
        let inverse = SIMD16<Float>(repeating: 1 / laneSum(sumVector))
        j = 0
        while j < vectorEnd { store16(load16(row + j) * inverse, row + j); j += 16 }
        while j < count { row[j] *= inverse[0]; j += 1 }
    }
}
