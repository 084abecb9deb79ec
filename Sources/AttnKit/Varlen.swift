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

    /// Checks spec section 1's rules: [B+1] entries, starting at 0,
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

/// Reads a [B+1] int32 or int64 tensor into Ints.
public func readIndexTensor(_ name: String, int32: StridedTensor<Int32>?, int64: StridedTensor<Int64>?) throws -> [Int] {
    func read<I: BinaryInteger>(_ tensor: StridedTensor<I>) throws -> [Int] {
        try requireRank(name, tensor.shape, 1, "[batch + 1]")
        try validateLayout(name, shape: tensor.shape, strides: tensor.strides, hasData: tensor.base != nil)
        return (0..<tensor.shape[0]).map { Int(truncatingIfNeeded: tensor.base![$0 * tensor.strides[0]]) }
    }
    if let int32 { return try read(int32) }
    if let int64 { return try read(int64) }
    throw AttnError.invalidArgument(argument: name, rule: "must be given")
}
