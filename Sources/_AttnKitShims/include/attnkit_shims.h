// Internal C helpers for the Swift core: only static inline functions.
#ifndef ATTNKIT_SHIMS_H
#define ATTNKIT_SHIMS_H

#include <cpuid.h>
#include <stdint.h>

// 1 if the CPU and the OS support what attnkit's AVX-512 kernels (compiled as
// cascadelake) execute: AVX-512 F/CD/BW/DQ/VL and VNNI, FMA, F16C, with the
// OS saving the zmm and mask state.
static inline int attn_shim_cpu_has_avx512(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int osxsave = (ecx >> 27) & 1, fma = (ecx >> 12) & 1, f16c = (ecx >> 29) & 1;
    if (!osxsave || !fma || !f16c) return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0xE6) != 0xE6) return 0;  // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    const int f = (ebx >> 16) & 1, dq = (ebx >> 17) & 1, cd = (ebx >> 28) & 1;
    const int bw = (ebx >> 30) & 1, vl = (ebx >> 31) & 1;
    const int vnni = (ecx >> 11) & 1;
    return f && dq && cd && bw && vl && vnni;
}

// 1 if the AVX-512 kernels' features are there and AVX512_BF16 too (the
// cooperlake build: vdpbf16ps).
static inline int attn_shim_cpu_has_avx512_bf16(void) {
    if (!attn_shim_cpu_has_avx512()) return 0;
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return 0;
    return (eax >> 5) & 1;
}

// Asks for the cache line holding p to be brought into L2 (prefetcht1); a
// hint that never faults. Swift has no prefetch of its own.
static inline void attn_shim_prefetch_l2(const void *p) {
    __builtin_prefetch(p, 0, 2);
}

// AVX512_BF16 does not import into Swift; these wrappers are inlined into the
// module compiled for it (cooperlake) and exist only there.
#if defined(__AVX512BF16__)
#include <immintrin.h>
// acc + a[2i]·b[2i] + a[2i+1]·b[2i+1] per fp32 lane, a and b holding bf16 pairs.
static inline __m512 attn_shim_dpbf16(__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}
#endif

#endif
