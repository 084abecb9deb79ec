#if canImport(Glibc)
import Glibc
#endif

/// A 64-byte-aligned scratch buffer, freed by `deallocate()`. Allocation
/// failure is reported as `AttnError.outOfMemory` instead of trapping.
package struct Workspace<Element> {
    package let pointer: UnsafeMutablePointer<Element>
    package let count: Int

    package init(count: Int) throws {
        let (bytes, overflow) = Swift.max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        guard !overflow else { throw AttnError.outOfMemory(bytes: Int.max) }
        let rounded = (bytes + 63) & ~63
        guard let raw = aligned_alloc(64, rounded) else { throw AttnError.outOfMemory(bytes: bytes) }
        self.pointer = raw.bindMemory(to: Element.self, capacity: Swift.max(count, 1))
        self.count = count
    }

    package func deallocate() { free(pointer) }
}

/// One scratch buffer per worker, all allocated up front, so the loops allocate nothing.
package struct PerWorker<Element> {
    package let buffers: [Workspace<Element>]

    package init(workers: Int, count: Int) throws {
        var made: [Workspace<Element>] = []
        made.reserveCapacity(workers)
        do {
            for _ in 0..<workers { made.append(try Workspace<Element>(count: count)) }
        } catch {
            for buffer in made { buffer.deallocate() }
            throw error
        }
        buffers = made
    }

    package subscript(worker: Int) -> UnsafeMutablePointer<Element> { buffers[worker].pointer }

    package func deallocate() { for buffer in buffers { buffer.deallocate() } }
}

/// Throws `outOfMemory` unless `count` elements of `T` can be allocated now.
/// Swift's own arrays trap when an allocation fails, so a planner whose array
/// is sized by the caller's dimensions probes the size through this first.
package func requireAllocatable<T>(_ count: Int, of _: T.Type) throws {
    let (bytes, overflow) = Swift.max(count, 0).multipliedReportingOverflow(by: MemoryLayout<T>.stride)
    guard !overflow else { throw AttnError.outOfMemory(bytes: Int.max) }
    guard let probe = malloc(Swift.max(bytes, 1)) else { throw AttnError.outOfMemory(bytes: bytes) }
    free(probe)
}

/// `a * b`, or an overflow error naming `what`.
package func checkedProduct(_ values: Int..., what: String) throws -> Int {
    var result = 1
    for value in values {
        let (product, overflow) = result.multipliedReportingOverflow(by: value)
        guard !overflow else { throw AttnError.overflow(argument: what, rule: "size product overflows Int64") }
        result = product
    }
    return result
}
