/// A read-only strided view of a tensor: a base pointer, a shape and strides
/// counted in elements. Strides may be zero (broadcast) or negative.
public struct StridedTensor<Element> {
    public var base: UnsafePointer<Element>?
    public var shape: [Int]
    public var strides: [Int]

    public init(base: UnsafePointer<Element>?, shape: [Int], strides: [Int]) {
        self.base = base; self.shape = shape; self.strides = strides
    }

    /// A view of contiguous row-major memory.
    public init(contiguous base: UnsafePointer<Element>?, shape: [Int]) {
        self.init(base: base, shape: shape, strides: contiguousStrides(shape))
    }

    public var rank: Int { shape.count }
    public var elementCount: Int { shape.reduce(1, *) }

    /// `base`, or a dangling non-null pointer for a tensor given without data.
    /// validateLayout guarantees data for every tensor with elements, so the
    /// fallback is only ever offset by 0 and never read.
    @inlinable package var data: UnsafePointer<Element> { base ?? UnsafePointer(placeholderPointer(Element.self)) }
}

/// A writable strided view of a tensor. Strides count elements.
public struct MutableStridedTensor<Element> {
    public var base: UnsafeMutablePointer<Element>?
    public var shape: [Int]
    public var strides: [Int]

    public init(base: UnsafeMutablePointer<Element>?, shape: [Int], strides: [Int]) {
        self.base = base; self.shape = shape; self.strides = strides
    }

    public init(contiguous base: UnsafeMutablePointer<Element>?, shape: [Int]) {
        self.init(base: base, shape: shape, strides: contiguousStrides(shape))
    }

    public var rank: Int { shape.count }
    public var elementCount: Int { shape.reduce(1, *) }
    /// `base`, or a dangling non-null pointer (see StridedTensor.data).
    @inlinable package var data: UnsafeMutablePointer<Element> { base ?? placeholderPointer(Element.self) }
    public var readOnly: StridedTensor<Element> {
        StridedTensor(base: base.map { UnsafePointer($0) }, shape: shape, strides: strides)
    }
}

/// A non-null pointer that is never dereferenced: the base of a tensor given
/// without data, which validateLayout allows only when it has no elements.
@inlinable package func placeholderPointer<T>(_: T.Type) -> UnsafeMutablePointer<T> {
    UnsafeMutablePointer(bitPattern: UInt(MemoryLayout<T>.alignment) << 6).unsafelyUnwrapped   // a nonzero constant
}

/// Row-major strides for `shape`.
public func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var running = 1
    for axis in stride(from: shape.count - 1, through: 0, by: -1) {
        strides[axis] = running
        running = running &* Swift.max(shape[axis], 1)
    }
    return strides
}

// MARK: - Validation shared by every entry point

/// Checks that `shape` and `strides` describe a tensor whose every element
/// offset is computable without overflow, and that data is present when the
/// tensor has elements.
package func validateLayout(_ name: String, shape: [Int], strides: [Int], hasData: Bool) throws {
    guard shape.count == strides.count else {
        throw AttnError.shape(argument: name, rule: "has \(shape.count) dims but \(strides.count) strides")
    }
    for axis in 0..<shape.count where shape[axis] < 0 {
        throw AttnError.shape(argument: "\(name).shape[\(axis)]", rule: "must be >= 0, got \(shape[axis])")
    }
    // An empty tensor has no element offsets to compute, whatever its strides
    // (torch gives empty tensors strides as if the 0 were a 1).
    if shape.contains(0) { return }
    var elements = 1
    var span = 0
    for axis in 0..<shape.count {
        let extent = shape[axis]
        let (product, overflow) = elements.multipliedReportingOverflow(by: extent)
        guard !overflow else {
            throw AttnError.overflow(argument: name, rule: "element count overflows Int64")
        }
        elements = product
        if extent > 1 {
            let magnitude = strides[axis].magnitude
            guard magnitude <= UInt(Int.max) else {
                throw AttnError.overflow(argument: "\(name).strides[\(axis)]", rule: "is too large")
            }
            let (reach, overflowReach) = Int(magnitude).multipliedReportingOverflow(by: extent - 1)
            let (sum, overflowSum) = span.addingReportingOverflow(reach)
            // In bytes too, for every element size up to 8: an element offset that
            // fits Int64 but whose byte offset does not would wrap around the
            // address space (a stride of 2^62 fp32 elements is 2^64 bytes: 0).
            guard !overflowReach && !overflowSum && sum <= Int.max / 8 else {
                throw AttnError.overflow(argument: name, rule: "strides reach beyond Int64 offsets")
            }
            span = sum
        }
    }
    if elements > 0 && !hasData {
        throw AttnError.invalidArgument(argument: "\(name).data", rule: "must not be NULL for a tensor with \(elements) elements")
    }
}

/// Outputs are written in parallel, so no two elements may share an address
/// through a zero stride.
package func validateWritable(_ name: String, shape: [Int], strides: [Int]) throws {
    for axis in 0..<shape.count where shape[axis] > 1 && strides[axis] == 0 {
        throw AttnError.shape(argument: "\(name).strides[\(axis)]",
                              rule: "must not be 0 for an output dimension of size \(shape[axis])")
    }
}

package func requireRank(_ name: String, _ shape: [Int], _ rank: Int, _ layout: String) throws {
    guard shape.count == rank else {
        throw AttnError.shape(argument: name, rule: "must have rank \(rank) \(layout), got rank \(shape.count)")
    }
}

package func requireExtent(_ name: String, _ shape: [Int], axis: Int, equals expected: Int, _ why: String) throws {
    guard shape[axis] == expected else {
        throw AttnError.shape(argument: "\(name).shape[\(axis)]", rule: "must equal \(why) (\(expected)), got \(shape[axis])")
    }
}
