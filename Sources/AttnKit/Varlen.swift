import AttnKitCore
/// The one place varlen offset math lives (flash-attn's block_info.h): the
/// validated `cu_seqlens` of a packed batch.
///
/// Sequence b owns rows `start(b) ..< start(b) + length(b)` of the packed tensor.
public struct SequenceOffsets {
    public let offsets: [Int]

    public var count: Int { offsets.count - 1 }
    public func start(_ sequence: Int) -> Int { offsets[sequence] }
    public func length(_ sequence: Int) -> Int { offsets[sequence + 1] - offsets[sequence] }

    /// Checks docs/semantics.md §1's rules: [B+1] entries, starting at 0,
    /// non-decreasing, ending at `total`, no sequence longer than `maxLength`.
    public init(_ name: String, values: [Int], total: Int, maxLength: Int, maxName: String) throws {
        guard values.count >= 1 else {
            throw AttnError.shape(argument: name, rule: "must have at least one entry (shape [batch + 1])")
        }
        guard values[0] == 0 else {
            throw AttnError.invalidArgument(argument: name, rule: "must start at 0, got \(values[0])")
        }
        for index in 1..<values.count where values[index] < values[index - 1] {
            throw AttnError.invalidArgument(
                argument: name, rule: "must be non-decreasing (index \(index): \(values[index]) < \(values[index - 1]))")
        }
        guard values[values.count - 1] == total else {
            throw AttnError.invalidArgument(
                argument: name, rule: "must end at the number of packed rows (\(total)), got \(values[values.count - 1])")
        }
        for index in 1..<values.count where values[index] - values[index - 1] > maxLength {
            throw AttnError.invalidArgument(
                argument: name, rule: "sequence \(index - 1) has length \(values[index] - values[index - 1]) > \(maxName) (\(maxLength))")
        }
        offsets = values
    }

    /// Uniform sequences of `length` rows each (flash_attn_func's fixed-length batch).
    public init(uniform length: Int, count: Int) {
        offsets = (0...count).map { $0 * length }
    }
}

/// A cu_seqlens argument as the planner needs it: its entry count (B + 1) up
/// front, its values only once there is work to plan. A call with no output
/// elements is checked and finished without reading them, so a broadcast view
/// claiming 2^40 entries costs nothing.
public struct SequenceBoundaries {
    public let count: Int
    let read: () throws -> [Int]

    /// Values already in memory.
    public init(_ values: [Int]) {
        count = values.count
        read = { values }
    }

    /// A [B+1] int32 or int64 tensor: its rank and layout are checked now, its
    /// values read (into B+1 Ints, or ATTN_ERR_OUT_OF_MEMORY) when needed.
    public init(_ name: String, int32: StridedTensor<Int32>?, int64: StridedTensor<Int64>?) throws {
        func lazily<I: BinaryInteger>(_ tensor: StridedTensor<I>) throws -> (Int, () throws -> [Int]) {
            try requireRank(name, tensor.shape, 1, "[batch + 1]")
            try validateLayout(name, shape: tensor.shape, strides: tensor.strides, hasData: tensor.base != nil)
            let count = tensor.shape[0]
            return (count, {
                try requireAllocatable(count, of: Int.self)
                return (0..<count).map { Int(truncatingIfNeeded: tensor.data[$0 &* tensor.strides[0]]) }
            })
        }
        if let int32 { (count, read) = try lazily(int32) }
        else if let int64 { (count, read) = try lazily(int64) }
        else { throw AttnError.invalidArgument(argument: name, rule: "must be given") }
    }
}

/// Reads a [B+1] int32 or int64 tensor into Ints.
public func readIndexTensor(_ name: String, int32: StridedTensor<Int32>?, int64: StridedTensor<Int64>?) throws -> [Int] {
    try SequenceBoundaries(name, int32: int32, int64: int64).read()
}

/// Reads an int32 or int64 index tensor of rank `rank` (cache_seqlens,
/// cache_batch_idx, block_table, ...) into row-major Ints, after checking its
/// rank and layout.
public func readIndexValues(_ name: String, int32: StridedTensor<Int32>?, int64: StridedTensor<Int64>?,
                            rank: Int, layout: String) throws -> (shape: [Int], values: [Int]) {
    func read<I: BinaryInteger>(_ tensor: StridedTensor<I>) throws -> (shape: [Int], values: [Int]) {
        try requireRank(name, tensor.shape, rank, layout)
        try validateLayout(name, shape: tensor.shape, strides: tensor.strides, hasData: tensor.base != nil)
        let count = tensor.shape.contains(0) ? 0 : tensor.elementCount
        try requireAllocatable(count, of: Int.self)
        var values: [Int] = []
        values.reserveCapacity(count)
        // Row-major, through the strides: the walk quantization uses too.
        PerTensorQuantization.forEachOffset(tensor.shape, tensor.strides, tensor.strides) { offset, _ in
            values.append(Int(truncatingIfNeeded: tensor.data[offset]))
        }
        return (tensor.shape, values)
    }
    if let int32 { return try read(int32) }
    if let int64 { return try read(int64) }
    throw AttnError.invalidArgument(argument: name, rule: "must be given")
}
