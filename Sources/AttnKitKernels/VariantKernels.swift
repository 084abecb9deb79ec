// Vector pieces of the attention guide's variants (AttnKit's SparseTopK and AFT kernels),
// compiled once per ISA like the rest of this folder (the other kernel folders link here).
import AttnKitCore

extension Kernels {
    package static func expInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i &+ 16 <= count {
            store16(fastExp(load16(x + i)), x + i)
            i &+= 16
        }
        if i < count { storePartial(fastExp(loadPartial(x + i, count: count &- i, fill: 0)), x + i, count: count &- i) }
    }

    package static func collectAbove(_ row: UnsafePointer<Float>, count: Int, threshold: Float,
                                     into positions: UnsafeMutablePointer<Int32>) -> Int {
        let limit = SIMD16<Float>(repeating: threshold)
        var found = 0, j = 0
        while j &+ 16 <= count {
            // NaN fails every <=, so it is collected too.
            if !all(load16(row + j) .<= limit) {
                for lane in 0..<16 where !(row[j &+ lane] <= threshold) {
                    positions[found] = Int32(truncatingIfNeeded: j &+ lane)
                    found &+= 1
                }
            }
            j &+= 16
        }
        while j < count {
            if !(row[j] <= threshold) {
                positions[found] = Int32(truncatingIfNeeded: j)
                found &+= 1
            }
            j &+= 1
        }
        return found
    }
}
