import AttnKit
import CAttnKitABI

/// The name attnkit's messages use for a dtype code.
func dtypeName(_ dtype: attn_dtype) -> String {
    switch Int(dtype) {
    case ATTN_DTYPE_F32: return "f32"
    case ATTN_DTYPE_F64: return "f64"
    case ATTN_DTYPE_F16: return "f16"
    case ATTN_DTYPE_BF16: return "bf16"
    case ATTN_DTYPE_I8: return "i8"
    case ATTN_DTYPE_U8: return "u8"
    case ATTN_DTYPE_I32: return "i32"
    case ATTN_DTYPE_I64: return "i64"
    case ATTN_DTYPE_BOOL: return "bool"
    default: return "unknown dtype code \(dtype)"
    }
}

/// A descriptor that passed the ABI checks: non-NULL, rank in range, dtype allowed.
struct Descriptor {
    let name: String
    let data: UnsafeMutableRawPointer?
    let dtype: attn_dtype
    let shape: [Int]
    let strides: [Int]

    init(_ name: String, _ tensor: UnsafePointer<attn_tensor>?, dtypes allowed: [Int32]) throws {
        guard let tensor else {
            throw ABIError(status: ATTN_ERR_NULL_POINTER, message: "\(name) must not be NULL")
        }
        let t = tensor.pointee
        guard t.rank >= 0 && Int(t.rank) <= ATTN_MAX_RANK else {
            throw ABIError(status: ATTN_ERR_SHAPE, message: "\(name).rank must be in 0...\(ATTN_MAX_RANK), got \(t.rank)")
        }
        guard allowed.contains(t.dtype) else {
            let names = allowed.map { dtypeName($0) }.joined(separator: " or ")
            throw ABIError(status: ATTN_ERR_DTYPE, message: "\(name).dtype must be \(names), got \(dtypeName(t.dtype))")
        }
        let rank = Int(t.rank)
        self.name = name
        self.data = t.data
        self.dtype = t.dtype
        self.shape = withUnsafeBytes(of: t.shape) { Array($0.bindMemory(to: Int64.self).prefix(rank)).map { Int($0) } }
        self.strides = withUnsafeBytes(of: t.strides) { Array($0.bindMemory(to: Int64.self).prefix(rank)).map { Int($0) } }
    }

    func requireDtype(_ expected: attn_dtype, sameAs other: String) throws {
        guard dtype == expected else {
            throw ABIError(status: ATTN_ERR_DTYPE,
                           message: "\(name).dtype must equal \(other).dtype (\(dtypeName(expected))), got \(dtypeName(dtype))")
        }
    }

    func view<T>(_: T.Type) -> StridedTensor<T> {
        StridedTensor(base: data.map { UnsafePointer($0.assumingMemoryBound(to: T.self)) }, shape: shape, strides: strides)
    }

    func mutableView<T>(_: T.Type) -> MutableStridedTensor<T> {
        MutableStridedTensor(base: data?.assumingMemoryBound(to: T.self), shape: shape, strides: strides)
    }
}

/// The float dtypes every attention entry point takes.
let attentionDtypes = [Int32(ATTN_DTYPE_F32), Int32(ATTN_DTYPE_F64), Int32(ATTN_DTYPE_F16), Int32(ATTN_DTYPE_BF16)]

/// q, k, v and out: float descriptors of one dtype (eager and flash entry points).
func qkvo(_ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?, _ v: UnsafePointer<attn_tensor>?,
          _ out: UnsafePointer<attn_tensor>?) throws -> (Descriptor, Descriptor, Descriptor, Descriptor) {
    let (query, key, value) = try qkv(q, k, v)
    let output = try Descriptor("out", out, dtypes: attentionDtypes)
    try output.requireDtype(query.dtype, sameAs: "q")
    return (query, key, value, output)
}

/// q, k and v as descriptors of one float dtype.
func qkv(_ q: UnsafePointer<attn_tensor>?, _ k: UnsafePointer<attn_tensor>?,
         _ v: UnsafePointer<attn_tensor>?) throws -> (Descriptor, Descriptor, Descriptor) {
    let query = try Descriptor("q", q, dtypes: attentionDtypes)
    let key = try Descriptor("k", k, dtypes: attentionDtypes)
    let value = try Descriptor("v", v, dtypes: attentionDtypes)
    for operand in [key, value] { try operand.requireDtype(query.dtype, sameAs: "q") }
    return (query, key, value)
}

/// Calls `body` with the storage type of a float dtype code.
func withStorage(_ dtype: attn_dtype, _ body: (any AttnStorage.Type) throws -> Void) throws {
    switch Int(dtype) {
    case ATTN_DTYPE_F32: try body(Float.self)
    case ATTN_DTYPE_F64: try body(Double.self)
    case ATTN_DTYPE_F16: try body(Float16.self)
    case ATTN_DTYPE_BF16: try body(BFloat16.self)
    default: throw ABIError(status: ATTN_ERR_DTYPE, message: "unsupported dtype \(dtypeName(dtype))")
    }
}

/// The largest struct_size any params struct may declare.
let maximumStructSize = 4096

/// Reads a params struct whose first field is its size, with the rule of the
/// Linux kernel's copy_struct_from_user:
/// - a caller built against an older header passes a smaller struct: every
///   field it has is read, and the fields added since read as zero, which each
///   struct documents as the old behaviour (`minimumSize` is the size of the
///   struct's first released version);
/// - a caller built against a newer header may pass a larger struct only if
///   every byte past the fields this library knows is zero (a nonzero one asks
///   for something this version cannot do);
/// - struct_size above maximumStructSize is rejected.
func readParams<P>(_ name: String, _ pointer: UnsafePointer<P>?, minimumSize: Int? = nil) throws -> P {
    guard let pointer else { throw ABIError(status: ATTN_ERR_NULL_POINTER, message: "\(name) must not be NULL") }
    let declared = Int(UnsafeRawPointer(pointer).load(as: UInt32.self))
    let required = minimumSize ?? MemoryLayout<P>.size
    guard declared >= required else {
        throw ABIError(status: ATTN_ERR_STRUCT_SIZE,
                       message: "\(name)->struct_size must be at least \(required), got \(declared)")
    }
    guard declared <= maximumStructSize else {
        throw ABIError(status: ATTN_ERR_STRUCT_SIZE,
                       message: "\(name)->struct_size must be at most \(maximumStructSize), got \(declared)")
    }
    let known = MemoryLayout<P>.size
    if declared > known {
        let bytes = UnsafeRawPointer(pointer)
        for offset in known..<declared where bytes.load(fromByteOffset: offset, as: UInt8.self) != 0 {
            throw ABIError(status: ATTN_ERR_STRUCT_SIZE,
                           message: "\(name): bytes past the \(known) this library knows must be 0 (struct_size \(declared)), "
                               + "got a nonzero byte at offset \(offset)")
        }
    }
    if declared >= MemoryLayout<P>.size { return pointer.pointee }
    let copy = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<P>.size, alignment: MemoryLayout<P>.alignment)
    defer { copy.deallocate() }
    copy.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<P>.size)
    copy.copyMemory(from: UnsafeRawPointer(pointer), byteCount: declared)
    return copy.load(as: P.self)
}
