/// Whether this build of the core was compiled for AVX-512 (a native build on
/// an AVX-512 machine). Inlined into the caller, so reading it executes no
/// code compiled for that ISA.
@inlinable
public var coreRequiresAVX512: Bool {
    #if ATTNKIT_AVX512
    return true
    #else
    return false
    #endif
}
