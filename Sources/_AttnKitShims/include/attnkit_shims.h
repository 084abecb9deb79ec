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

// 1 if the AVX-512 kernels' features are there and AVX512_FP16 too (fp16
// arithmetic: the int8 paths' P·V below).
static inline int attn_shim_cpu_has_avx512_fp16(void) {
    if (!attn_shim_cpu_has_avx512()) return 0;
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return (edx >> 23) & 1;
}

// Asks for the cache line holding p to be brought into L2 (prefetcht1); a
// hint that never faults. Swift has no prefetch of its own.
static inline void attn_shim_prefetch_l2(const void *p) {
    __builtin_prefetch(p, 0, 2);
}

// fp16 helpers for the int8 paths' P·V. Each carries its own target
// attribute, so it compiles into any module; callers must check the CPU
// first (attn_shim_cpu_has_avx512 / _avx512_fp16). Not inlined into Swift.
#include <immintrin.h>

// dst[i] = fp16(src[i]), round to nearest even, for i < count; reads and
// writes nothing past count.
__attribute__((target("avx512f,avx512bw,avx512vl,f16c")))
static inline void attn_shim_f32_to_f16(const float *src, uint16_t *dst, long count) {
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        __m256i half = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_si256((__m256i *)(dst + i), half);
    }
    if (i < count) {
        const __mmask16 tail = (__mmask16)((1u << (count - i)) - 1);
        __m256i half = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(tail, src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(dst + i, tail, half);
    }
}

// outT[e][row] = rescale[row]·outT[e][row] + Σ_key values[key][e]·probs[key][row]
// for 64 rows, e < value_dim and key < keys (at most 64), where probs ([keys][64])
// and values ([keys][value_stride]) are fp16 and the sum over the tile's keys
// is accumulated in fp16 (vfmadd231ph, 32 rows per register), then widened and
// added to the fp32 outT: two-level accumulation, fp32 across tiles. The caller
// keeps |values| small enough that 64 of them cannot overflow fp16.
__attribute__((target("avx512fp16,avx512bw,avx512vl,avx512dq,avx512f,f16c,fma")))
static inline void attn_shim_pv_f16(float *outT, long value_dim, const uint16_t *probs, const uint16_t *values,
                                    long value_stride, long keys, const float *rescale) {
    const _Float16 *v = (const _Float16 *)values;
    const __m512 r0 = _mm512_loadu_ps(rescale), r1 = _mm512_loadu_ps(rescale + 16);
    const __m512 r2 = _mm512_loadu_ps(rescale + 32), r3 = _mm512_loadu_ps(rescale + 48);
    long e = 0;
    // Eight value dims × 64 rows in 16 named registers (an array here would
    // live in memory).
#define ATTN_PV_STEP(i, lo, hi) { const __m512h b = _mm512_set1_ph(row[i]); \
        lo = _mm512_fmadd_ph(p0, b, lo); hi = _mm512_fmadd_ph(p1, b, hi); }
#define ATTN_PV_STORE(i, lo, hi) { float *o = outT + (e + i) * 64; \
        _mm512_storeu_ps(o, _mm512_fmadd_ps(_mm512_loadu_ps(o), r0, _mm512_cvtxph_ps(_mm512_castph512_ph256(lo)))); \
        _mm512_storeu_ps(o + 16, _mm512_fmadd_ps(_mm512_loadu_ps(o + 16), r1, _mm512_cvtxph_ps( \
            _mm256_castsi256_ph(_mm512_extracti64x4_epi64(_mm512_castph_si512(lo), 1))))); \
        _mm512_storeu_ps(o + 32, _mm512_fmadd_ps(_mm512_loadu_ps(o + 32), r2, _mm512_cvtxph_ps(_mm512_castph512_ph256(hi)))); \
        _mm512_storeu_ps(o + 48, _mm512_fmadd_ps(_mm512_loadu_ps(o + 48), r3, _mm512_cvtxph_ps( \
            _mm256_castsi256_ph(_mm512_extracti64x4_epi64(_mm512_castph_si512(hi), 1))))); }
    for (; e + 8 <= value_dim; e += 8) {
        __m512h a0 = _mm512_setzero_ph(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
        __m512h a4 = a0, b4 = a0, a5 = a0, b5 = a0, a6 = a0, b6 = a0, a7 = a0, b7 = a0;
        for (long key = 0; key < keys; key++) {
            const __m512h p0 = _mm512_loadu_ph(probs + key * 64), p1 = _mm512_loadu_ph(probs + key * 64 + 32);
            const _Float16 *row = v + key * value_stride + e;
            ATTN_PV_STEP(0, a0, b0) ATTN_PV_STEP(1, a1, b1) ATTN_PV_STEP(2, a2, b2) ATTN_PV_STEP(3, a3, b3)
            ATTN_PV_STEP(4, a4, b4) ATTN_PV_STEP(5, a5, b5) ATTN_PV_STEP(6, a6, b6) ATTN_PV_STEP(7, a7, b7)
        }
        ATTN_PV_STORE(0, a0, b0) ATTN_PV_STORE(1, a1, b1) ATTN_PV_STORE(2, a2, b2) ATTN_PV_STORE(3, a3, b3)
        ATTN_PV_STORE(4, a4, b4) ATTN_PV_STORE(5, a5, b5) ATTN_PV_STORE(6, a6, b6) ATTN_PV_STORE(7, a7, b7)
    }
    for (; e < value_dim; e++) {
        __m512h a0 = _mm512_setzero_ph(), b0 = a0;
        for (long key = 0; key < keys; key++) {
            const __m512h p0 = _mm512_loadu_ph(probs + key * 64), p1 = _mm512_loadu_ph(probs + key * 64 + 32);
            const _Float16 *row = v + key * value_stride + e;
            ATTN_PV_STEP(0, a0, b0)
        }
        ATTN_PV_STORE(0, a0, b0)
    }
#undef ATTN_PV_STEP
#undef ATTN_PV_STORE
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
