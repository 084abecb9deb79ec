import AttnKit
import CAttnKitABI
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Version

@_cdecl("attn_version_number")
public func attn_version_number() -> UInt32 {
    UInt32(ATTNKIT_VERSION_MAJOR * 10000 + ATTNKIT_VERSION_MINOR * 100 + ATTNKIT_VERSION_PATCH)
}

// MARK: - Status names

@_cdecl("attn_status_string")
public func attn_status_string(_ status: attn_status) -> UnsafePointer<CChar> {
    let name: StaticString
    switch Int(status) {
    case ATTN_OK: name = "ATTN_OK"
    case ATTN_ERR_NULL_POINTER: name = "ATTN_ERR_NULL_POINTER"
    case ATTN_ERR_INVALID_ARGUMENT: name = "ATTN_ERR_INVALID_ARGUMENT"
    case ATTN_ERR_SHAPE: name = "ATTN_ERR_SHAPE"
    case ATTN_ERR_DTYPE: name = "ATTN_ERR_DTYPE"
    case ATTN_ERR_OVERFLOW: name = "ATTN_ERR_OVERFLOW"
    case ATTN_ERR_OUT_OF_MEMORY: name = "ATTN_ERR_OUT_OF_MEMORY"
    case ATTN_ERR_STRUCT_SIZE: name = "ATTN_ERR_STRUCT_SIZE"
    case ATTN_ERR_INTERNAL: name = "ATTN_ERR_INTERNAL"
    case ATTN_ERR_UNSUPPORTED_CPU: name = "ATTN_ERR_UNSUPPORTED_CPU"
    default: name = "ATTN_UNKNOWN_STATUS"
    }
    return cString(name)
}

func cString(_ string: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(string.utf8Start).assumingMemoryBound(to: CChar.self)
}

// MARK: - Thread-local last error

/// Each thread's last message lives in a malloc'd C string owned by this key.
private let lastErrorKey: pthread_key_t = {
    var key = pthread_key_t()
    _ = pthread_key_create(&key) { free($0) }
    return key
}()

func setLastError(_ message: String) {
    free(pthread_getspecific(lastErrorKey))
    _ = pthread_setspecific(lastErrorKey, strdup(message))
}

@_cdecl("attn_last_error")
public func attn_last_error() -> UnsafePointer<CChar> {
    guard let message = pthread_getspecific(lastErrorKey) else { return cString("") }
    return UnsafePointer(message.assumingMemoryBound(to: CChar.self))
}

// MARK: - Mapping errors to codes

/// An ABI-level failure found before the core is called.
struct ABIError: Error {
    let status: Int
    let message: String
}

/// Runs `body`, turning every thrown error into its status code and message.
func withStatus(_ function: String, _ body: () throws -> Void) -> attn_status {
    KernelDispatch.prepare()
    do {
        try body()
        return attn_status(ATTN_OK)
    } catch let error as ABIError {
        setLastError("[\(function)] \(error.message)")
        return attn_status(error.status)
    } catch let error as AttnError {
        setLastError("[\(function)] \(error.description)")
        return attn_status(statusCode(error))
    } catch {
        setLastError("[\(function)] unexpected error: \(error)")
        return attn_status(ATTN_ERR_INTERNAL)
    }
}

func statusCode(_ error: AttnError) -> Int {
    switch error {
    case .shape: return ATTN_ERR_SHAPE
    case .invalidArgument: return ATTN_ERR_INVALID_ARGUMENT
    case .dtype: return ATTN_ERR_DTYPE
    case .overflow: return ATTN_ERR_OVERFLOW
    case .outOfMemory: return ATTN_ERR_OUT_OF_MEMORY
    }
}

// MARK: - ISA

@_cdecl("attn_get_isa")
public func attn_get_isa(_ isa: UnsafeMutablePointer<Int32>?) -> attn_status {
    withStatus("attn_get_isa") {
        guard let isa else { throw ABIError(status: ATTN_ERR_NULL_POINTER, message: "isa must not be NULL") }
        isa.pointee = isaCode(KernelDispatch.isa)
    }
}

@_cdecl("attn_get_available_isas")
public func attn_get_available_isas(_ mask: UnsafeMutablePointer<UInt32>?) -> attn_status {
    withStatus("attn_get_available_isas") {
        guard let mask else { throw ABIError(status: ATTN_ERR_NULL_POINTER, message: "mask must not be NULL") }
        mask.pointee = KernelDispatch.availableISAs.reduce(0) { $0 | (1 << UInt32(isaCode($1))) }
    }
}

/// The header's ATTN_ISA_* code of a tier.
func isaCode(_ isa: KernelISA) -> Int32 {
    switch isa {
    case .generic: return Int32(ATTN_ISA_GENERIC)
    case .avx2: return Int32(ATTN_ISA_AVX2)
    case .avx512: return Int32(ATTN_ISA_AVX512)
    case .avx512bf16: return Int32(ATTN_ISA_AVX512_BF16)
    }
}

@_cdecl("attn_get_int8_pv_dtype")
public func attn_get_int8_pv_dtype(_ dtype: UnsafeMutablePointer<Int32>?) -> attn_status {
    withStatus("attn_get_int8_pv_dtype") {
        guard let dtype else { throw ABIError(status: ATTN_ERR_NULL_POINTER, message: "dtype must not be NULL") }
        dtype.pointee = Int32(KernelDispatch.int8HalfPrecisionValues ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32)
    }
}

// MARK: - Threads

@_cdecl("attn_set_num_threads")
public func attn_set_num_threads(_ count: Int32) -> attn_status {
    withStatus("attn_set_num_threads") { try ThreadSettings.setNumThreads(Int(count)) }
}

@_cdecl("attn_get_num_threads")
public func attn_get_num_threads(_ count: UnsafeMutablePointer<Int32>?) -> attn_status {
    withStatus("attn_get_num_threads") {
        guard let count else { throw ABIError(status: ATTN_ERR_NULL_POINTER, message: "num_threads must not be NULL") }
        count.pointee = Int32(ThreadSettings.numThreads)
    }
}
