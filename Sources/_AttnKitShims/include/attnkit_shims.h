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

// Pair layout for the fp16 P·V below: the keys of a tile go in pairs, and a
// pair's two fp16 values share one 32-bit word (first key in the low half),
// so a pair of V values is one vbroadcastss, a pure load.

// The 16 words (fp16(first[i]), fp16(second[i])), first in the low half.
__attribute__((target("avx512f,avx512bw,avx512vl,f16c")))
static inline __m512i attn_shim_f16_pairs(__m512 first, __m512 second) {
    const __m512i low = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(first, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m512i high = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(second, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return _mm512_or_si512(low, _mm512_slli_epi32(high, 16));
}

// dst[pair][e] = (fp16(src[2·pair][e]), fp16(src[2·pair + 1][e])) for e < width,
// from fp32 rows src[row][width]; rows ≥ count read as zero. dst holds
// ceil(count / 2)·width words.
__attribute__((target("avx512f,avx512bw,avx512vl,f16c")))
static inline void attn_shim_pair_rows_f16(const float *src, long count, long width, uint32_t *dst) {
    for (long pair = 0; 2 * pair < count; pair++) {
        const float *first = src + 2 * pair * width;
        const int has_second = 2 * pair + 1 < count;
        for (long e = 0; e < width; e += 16) {
            const __mmask16 lanes = width - e >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (width - e)) - 1);
            const __mmask16 second = has_second ? lanes : 0;
            _mm512_mask_storeu_epi32(dst + pair * width + e, lanes,
                                     attn_shim_f16_pairs(_mm512_maskz_loadu_ps(lanes, first + e),
                                                         _mm512_maskz_loadu_ps(second, first + width + e)));
        }
    }
}

// The probabilities of one block, from probs ([keys][64] fp32) to pairs
// ([pairs][64] words): lead (0 or 1) zero columns go first, so the block's
// first key can take the second half of a pair; columns past lead + keys are
// zero up to the end of the last pair. Returns the number of pairs.
__attribute__((target("avx512f,avx512bw,avx512vl,f16c")))
static inline long attn_shim_pair_probs_f16(const float *probs, long keys, long lead, uint32_t *dst) {
    const long pairs = (lead + keys + 1) / 2;
    for (long pair = 0; pair < pairs; pair++) {
        const long first = 2 * pair - lead, second = first + 1;
        for (long row = 0; row < 64; row += 16) {
            const __m512 a = first >= 0 && first < keys ? _mm512_loadu_ps(probs + first * 64 + row) : _mm512_setzero_ps();
            const __m512 b = second < keys ? _mm512_loadu_ps(probs + second * 64 + row) : _mm512_setzero_ps();
            _mm512_storeu_si512(dst + pair * 64 + row, attn_shim_f16_pairs(a, b));
        }
    }
    return pairs;
}

// outT[e][row] = rescale[row]·outT[e][row] + Σ_key values[key][e]·probs[key][row]
// for 64 rows and e < value_dim, where probs ([pairs][64]) and values
// ([pairs][value_dim]) are fp16 pairs as above. Each lane of a vfmadd231ph
// register holds one row and one key of a pair; the sum over the tile's keys
// (at most 64) is accumulated in fp16, the two halves of each pair are added
// (still fp16), widened, and added to the fp32 outT: two-level accumulation,
// fp32 across tiles. The caller keeps |values| small enough that 64 of them
// cannot overflow fp16.
__attribute__((target("avx512fp16,avx512bw,avx512vl,avx512dq,avx512f,f16c,fma")))
static inline void attn_shim_pv_f16(float *outT, long value_dim, const uint32_t *probs, const uint32_t *values,
                                    long pairs, const float *rescale) {
    const __m512 r0 = _mm512_loadu_ps(rescale), r1 = _mm512_loadu_ps(rescale + 16);
    const __m512 r2 = _mm512_loadu_ps(rescale + 32), r3 = _mm512_loadu_ps(rescale + 48);
    // Word lanes 2i (first keys) and 2i + 1 (second keys) of two registers, as
    // rows 0..15 of the first register and rows 16..31 of the second.
    const __m512i firsts = _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32,
                                            30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i seconds = _mm512_add_epi16(firsts, _mm512_set1_epi16(1));
    // Four value dims × 64 rows in 16 named registers (an array here would live
    // in memory); each register holds 16 rows × 2 keys.
#define ATTN_PV_LOAD(pair) const uint32_t *p = probs + (pair) * 64; \
        const __m512h p0 = _mm512_loadu_ph(p), p1 = _mm512_loadu_ph(p + 16); \
        const __m512h p2 = _mm512_loadu_ph(p + 32), p3 = _mm512_loadu_ph(p + 48); \
        const float *pair_values = (const float *)(values + (pair) * value_dim + e);
#define ATTN_PV_STEP(i, a, b, c, d) { const __m512h w = _mm512_castps_ph(_mm512_set1_ps(pair_values[i])); \
        a = _mm512_fmadd_ph(p0, w, a); b = _mm512_fmadd_ph(p1, w, b); \
        c = _mm512_fmadd_ph(p2, w, c); d = _mm512_fmadd_ph(p3, w, d); }
#define ATTN_PV_FOLD(x, y) _mm512_add_ph( \
        _mm512_castsi512_ph(_mm512_permutex2var_epi16(_mm512_castph_si512(x), firsts, _mm512_castph_si512(y))), \
        _mm512_castsi512_ph(_mm512_permutex2var_epi16(_mm512_castph_si512(x), seconds, _mm512_castph_si512(y))))
#define ATTN_PV_ADD(o, r, h) _mm512_storeu_ps(o, _mm512_fmadd_ps(_mm512_loadu_ps(o), r, _mm512_cvtxph_ps(h)))
#define ATTN_PV_STORE(i, a, b, c, d) { float *o = outT + (e + i) * 64; \
        const __m512i low = _mm512_castph_si512(ATTN_PV_FOLD(a, b)), high = _mm512_castph_si512(ATTN_PV_FOLD(c, d)); \
        ATTN_PV_ADD(o, r0, _mm256_castsi256_ph(_mm512_castsi512_si256(low))); \
        ATTN_PV_ADD(o + 16, r1, _mm256_castsi256_ph(_mm512_extracti64x4_epi64(low, 1))); \
        ATTN_PV_ADD(o + 32, r2, _mm256_castsi256_ph(_mm512_castsi512_si256(high))); \
        ATTN_PV_ADD(o + 48, r3, _mm256_castsi256_ph(_mm512_extracti64x4_epi64(high, 1))); }
    long e = 0;
    for (; e + 4 <= value_dim; e += 4) {
        __m512h a0 = _mm512_setzero_ph(), b0 = a0, c0 = a0, d0 = a0, a1 = a0, b1 = a0, c1 = a0, d1 = a0;
        __m512h a2 = a0, b2 = a0, c2 = a0, d2 = a0, a3 = a0, b3 = a0, c3 = a0, d3 = a0;
        for (long pair = 0; pair < pairs; pair++) {
            ATTN_PV_LOAD(pair)
            ATTN_PV_STEP(0, a0, b0, c0, d0) ATTN_PV_STEP(1, a1, b1, c1, d1)
            ATTN_PV_STEP(2, a2, b2, c2, d2) ATTN_PV_STEP(3, a3, b3, c3, d3)
        }
        ATTN_PV_STORE(0, a0, b0, c0, d0) ATTN_PV_STORE(1, a1, b1, c1, d1)
        ATTN_PV_STORE(2, a2, b2, c2, d2) ATTN_PV_STORE(3, a3, b3, c3, d3)
    }
    for (; e < value_dim; e++) {
        __m512h a0 = _mm512_setzero_ph(), b0 = a0, c0 = a0, d0 = a0;
        for (long pair = 0; pair < pairs; pair++) {
            ATTN_PV_LOAD(pair)
            ATTN_PV_STEP(0, a0, b0, c0, d0)
        }
        ATTN_PV_STORE(0, a0, b0, c0, d0)
    }
#undef ATTN_PV_LOAD
#undef ATTN_PV_STEP
#undef ATTN_PV_FOLD
#undef ATTN_PV_ADD
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
