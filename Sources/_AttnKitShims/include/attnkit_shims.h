// Internal C helpers for the Swift core: only static inline functions.
#ifndef ATTNKIT_SHIMS_H
#define ATTNKIT_SHIMS_H

#include <stdint.h>

// Asks for the cache line holding p to be brought into L2 (prefetcht1 on
// x86-64, prfm pldl2keep on arm64); a hint that never faults. Swift has no
// prefetch of its own.
static inline void attn_shim_prefetch_l2(const void *p) {
    __builtin_prefetch(p, 0, 2);
}

// Everything below is x86-64 only. ATTNKIT_SHIMS_PORTABLE_ONLY lets an x86
// machine compile the portable build exactly as arm64 sees this header
// (scripts/check_portable.sh).
#if defined(__x86_64__) && !defined(ATTNKIT_SHIMS_PORTABLE_ONLY)
#define ATTNKIT_SHIMS_X86 1
#include <cpuid.h>

// XCR0 (which register states the OS saves), or 0 where the CPU has no XGETBV.
static inline uint64_t attn_shim_xcr0(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    if (!((ecx >> 27) & 1)) return 0;   // OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

// 1 if the CPU and the OS support what the AVX2 kernels (compiled as haswell,
// x86-64-v3) execute: AVX, AVX2, FMA, F16C, BMI1, BMI2, LZCNT, MOVBE, with the
// OS saving the xmm and ymm state.
static inline int attn_shim_cpu_has_avx2(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int fma = (ecx >> 12) & 1, movbe = (ecx >> 22) & 1, avx = (ecx >> 28) & 1, f16c = (ecx >> 29) & 1;
    if (!fma || !movbe || !avx || !f16c) return 0;
    if ((attn_shim_xcr0() & 0x6) != 0x6) return 0;   // SSE and AVX state
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    const int bmi1 = (ebx >> 3) & 1, avx2 = (ebx >> 5) & 1, bmi2 = (ebx >> 8) & 1;
    if (!bmi1 || !avx2 || !bmi2) return 0;
    if (!__get_cpuid(0x80000001, &eax, &ebx, &ecx, &edx)) return 0;
    return (ecx >> 5) & 1;   // LZCNT (ABM)
}

// 1 if the CPU has AVX-VNNI (vpdpbusd on ymm without AVX-512: Alder Lake and
// later, Zen 5) on top of the AVX2 kernels' features.
static inline int attn_shim_cpu_has_avx_vnni(void) {
    if (!attn_shim_cpu_has_avx2()) return 0;
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return 0;
    return (eax >> 4) & 1;
}

// CPUID's vendor ("GenuineIntel", "AuthenticAMD", ...) into 13 bytes, and the
// display family (base family plus extended family): the default tier rules
// in KernelDispatch.swift key on these.
static inline int attn_shim_cpu_family(char vendor[13]) {
    unsigned eax, ebx, ecx, edx;
    vendor[0] = 0;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return 0;
    __builtin_memcpy(vendor, &ebx, 4); __builtin_memcpy(vendor + 4, &edx, 4); __builtin_memcpy(vendor + 8, &ecx, 4);
    vendor[12] = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int base = (eax >> 8) & 0xF;
    return base == 0xF ? base + ((eax >> 20) & 0xFF) : base;
}

// 1 if the CPU and the OS support what attnkit's AVX-512 kernels (compiled as
// cascadelake) execute: AVX-512 F/CD/BW/DQ/VL and VNNI, FMA, F16C (and the
// rest of the AVX2 tier), with the OS saving the zmm and mask state.
static inline int attn_shim_cpu_has_avx512(void) {
    if (!attn_shim_cpu_has_avx2()) return 0;
    if ((attn_shim_xcr0() & 0xE6) != 0xE6) return 0;  // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM
    unsigned eax, ebx, ecx, edx;
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

// Layout for the fp16 P·V below: P is [key][64 rows] in fp16, so a key's 64
// rows are two 32-lane registers, and V is [key][dim] in 32-bit words that
// hold the fp16 value twice, so broadcasting one to 32 lanes is a
// vbroadcastss, a pure load (vpbroadcastw would also take a shuffle port).

// dst[row][e] = (fp16(src[row][e]), the same) for row < count, e < width,
// from fp32 rows src[row][width]. Returns the largest |src| (+inf if any value
// is NaN or ±Inf), so that one pass both checks and converts; dst is written
// whatever the values, and callers use it only if the result fits.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c")))
static inline float attn_shim_twin_rows_f16(const float *src, long count, long width, uint32_t *dst) {
    __m512 largest = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (long row = 0; row < count; row++) {
        for (long e = 0; e < width; e += 16) {
            const __mmask16 lanes = width - e >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (width - e)) - 1);
            const __m512 x = _mm512_maskz_loadu_ps(lanes, src + row * width + e);
            largest = _mm512_max_ps(largest, _mm512_abs_ps(x));
            bad |= _mm512_fpclass_ps_mask(x, 0x99);   // QNaN, SNaN, +Inf, −Inf
            const __m512i half = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            _mm512_mask_storeu_epi32(dst + row * width + e, lanes, _mm512_or_si512(half, _mm512_slli_epi32(half, 16)));
        }
    }
    return bad ? __builtin_inff() : _mm512_reduce_max_ps(largest);
}

// e^x for the fp16 P of the int8 paths, x = s − m ≤ 0 (or −inf, or NaN), as
// 2^t with t = x·log2(e): f = t − round(t) in one vreduceps, a degree-4 fit
// of 2^f on |f| ≤ 1/2 (2.6e-6 relative, 1/90 of fp16's half ulp), scaled by
// 2^(t − f) with vscalefps; 0 below −87.33 (−inf included), NaN stays NaN.
// (t's own rounding moves the result by at most |t|·2^-24 relative: 8e-6 at
// the flush point, still far below fp16's rounding.)
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))
static inline __m512 attn_shim_exp_f16_grade(__m512 x) {
    const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    const __m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 n = _mm512_sub_ps(t, f);
    __m512 p = _mm512_set1_ps(0.009570101f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05591786f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24024744f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931218f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.9999993f));
    const __mmask16 kept = ~_mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33f), _CMP_LT_OQ);
    return _mm512_maskz_scalef_ps(kept, p, n);
}

// The online-softmax step of the fp16 P·V path, with P written in fp16 only:
// for each of the first `chunks` 16-row chunks of scores ([keys][64] fp32),
// m_new = max(m_old, max over keys) (a NaN score is skipped there, and turns
// its row NaN through exp), rescale = exp(m_old − m_new) (0 for a row with no
// allowed key yet), l = l·rescale + Σ p in fp32, and p = exp(s − m_new) goes
// to probs ([keys][64] fp16) and nowhere else. Chunks from `chunks` on are not
// written.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))
static inline void attn_shim_softmax_f16(const float *scores, long keys, long chunks, float *row_max, float *row_sum,
                                         float *rescale, uint16_t *probs) {
    const __m512 negative_infinity = _mm512_set1_ps(-__builtin_inff());
    for (long chunk = 0; chunk < chunks; chunk++) {
        const float *column = scores + chunk * 16;   // lane i: row chunk·16 + i
        // m_new = max(m_old, this tile's scores), in four chains of vmaxps.
        const __m512 old_max = _mm512_loadu_ps(row_max + chunk * 16);
        __m512 m0 = old_max, m1 = old_max, m2 = old_max, m3 = old_max;
        long key = 0;
        for (; key + 4 <= keys; key += 4) {   // max(s, m): a NaN s keeps m
            m0 = _mm512_max_ps(_mm512_loadu_ps(column + key * 64), m0);
            m1 = _mm512_max_ps(_mm512_loadu_ps(column + (key + 1) * 64), m1);
            m2 = _mm512_max_ps(_mm512_loadu_ps(column + (key + 2) * 64), m2);
            m3 = _mm512_max_ps(_mm512_loadu_ps(column + (key + 3) * 64), m3);
        }
        for (; key < keys; key++) m0 = _mm512_max_ps(_mm512_loadu_ps(column + key * 64), m0);
        const __m512 tile_max = _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3));
        // A row with every key so far excluded keeps m = −inf: it subtracts 0
        // instead, so exp(−inf − (−inf)) is never evaluated, and its p are 0.
        const __mmask16 has_key = _mm512_cmp_ps_mask(tile_max, negative_infinity, _CMP_NEQ_UQ);
        const __m512 safe_max = _mm512_maskz_mov_ps(has_key, tile_max);
        // exp(m_old − m_new) <= 1 re-expresses what O and l hold against the old
        // maximum in units of the new one (P·V applies it to O).
        const __m512 shrink = _mm512_maskz_mov_ps(has_key, attn_shim_exp_f16_grade(_mm512_sub_ps(old_max, safe_max)));
        __m512 sum = _mm512_setzero_ps();
        for (key = 0; key < keys; key++) {   // p = exp(s − m_new), 0 for an excluded key (s = −inf)
            const __m512 p = attn_shim_exp_f16_grade(_mm512_sub_ps(_mm512_loadu_ps(column + key * 64), safe_max));
            sum = _mm512_add_ps(sum, p);   // l sums the fp32 p; P·V takes them rounded to fp16
            _mm256_storeu_si256((__m256i *)(probs + key * 64 + chunk * 16),
                                _mm512_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
        // l_new = l_old·exp(m_old − m_new) + Σ_tile exp(s − m_new)
        _mm512_storeu_ps(row_sum + chunk * 16, _mm512_fmadd_ps(_mm512_loadu_ps(row_sum + chunk * 16), shrink, sum));
        _mm512_storeu_ps(row_max + chunk * 16, tile_max);
        _mm512_storeu_ps(rescale + chunk * 16, shrink);
    }
}

// outT[e][row] = rescale[row]·outT[e][row] + Σ_key values[key][e]·probs[key][row]
// for 64 rows and e < value_dim, with probs ([keys][64] fp16) and values
// ([keys][value_dim] twin words) as above. A vfmadd231ph lane is one row; the
// sum over the tile's keys (at most 64) runs in fp16, then is widened and
// added to the fp32 outT: two-level accumulation, fp32 across tiles. The
// caller keeps |values| small enough that 64 products cannot overflow fp16.
__attribute__((target("avx512fp16,avx512bw,avx512vl,avx512dq,avx512f,f16c,fma")))
static inline void attn_shim_pv_f16(float *outT, long value_dim, const uint16_t *probs, const uint32_t *values,
                                    long keys, const float *rescale) {
    const __m512 r0 = _mm512_loadu_ps(rescale), r1 = _mm512_loadu_ps(rescale + 16);
    const __m512 r2 = _mm512_loadu_ps(rescale + 32), r3 = _mm512_loadu_ps(rescale + 48);
    // Dims e + i (named registers: an array here would live in memory); a
    // holds rows 0..31, b rows 32..63.
#define ATTN_PV_LOAD(key) const uint16_t *p = probs + (key) * 64; \
        const __m512h p0 = _mm512_loadu_ph(p), p1 = _mm512_loadu_ph(p + 32); \
        const float *key_values = (const float *)(values + (key) * value_dim + e);
#define ATTN_PV_STEP(i, a, b) { const __m512h w = _mm512_castps_ph(_mm512_set1_ps(key_values[i])); \
        a = _mm512_fmadd_ph(p0, w, a); b = _mm512_fmadd_ph(p1, w, b); }
#define ATTN_PV_ADD(o, r, h) _mm512_storeu_ps(o, _mm512_fmadd_ps(_mm512_loadu_ps(o), r, _mm512_cvtxph_ps(h)))
#define ATTN_PV_STORE(i, a, b) { float *o = outT + (e + i) * 64; \
        ATTN_PV_ADD(o, r0, _mm512_castph512_ph256(a)); \
        ATTN_PV_ADD(o + 16, r1, _mm256_castsi256_ph(_mm512_extracti64x4_epi64(_mm512_castph_si512(a), 1))); \
        ATTN_PV_ADD(o + 32, r2, _mm512_castph512_ph256(b)); \
        ATTN_PV_ADD(o + 48, r3, _mm256_castsi256_ph(_mm512_extracti64x4_epi64(_mm512_castph_si512(b), 1))); }
    long e = 0;
    for (; e + 8 <= value_dim; e += 8) {
        __m512h a0 = _mm512_setzero_ph(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
        __m512h a4 = a0, b4 = a0, a5 = a0, b5 = a0, a6 = a0, b6 = a0, a7 = a0, b7 = a0;
        // Unrolled: the loop's own instructions otherwise cost 4-8% (benchmarks/NOTES.md).
        _Pragma("clang loop unroll_count(4)")
        for (long key = 0; key < keys; key++) {
            ATTN_PV_LOAD(key)
            ATTN_PV_STEP(0, a0, b0) ATTN_PV_STEP(1, a1, b1) ATTN_PV_STEP(2, a2, b2) ATTN_PV_STEP(3, a3, b3)
            ATTN_PV_STEP(4, a4, b4) ATTN_PV_STEP(5, a5, b5) ATTN_PV_STEP(6, a6, b6) ATTN_PV_STEP(7, a7, b7)
        }
        ATTN_PV_STORE(0, a0, b0) ATTN_PV_STORE(1, a1, b1) ATTN_PV_STORE(2, a2, b2) ATTN_PV_STORE(3, a3, b3)
        ATTN_PV_STORE(4, a4, b4) ATTN_PV_STORE(5, a5, b5) ATTN_PV_STORE(6, a6, b6) ATTN_PV_STORE(7, a7, b7)
    }
    for (; e + 2 <= value_dim; e += 2) {
        __m512h a0 = _mm512_setzero_ph(), b0 = a0, a1 = a0, b1 = a0;
        for (long key = 0; key < keys; key++) {
            ATTN_PV_LOAD(key)
            ATTN_PV_STEP(0, a0, b0) ATTN_PV_STEP(1, a1, b1)
        }
        ATTN_PV_STORE(0, a0, b0) ATTN_PV_STORE(1, a1, b1)
    }
    for (; e < value_dim; e++) {
        __m512h a0 = _mm512_setzero_ph(), b0 = a0;
        for (long key = 0; key < keys; key++) {
            ATTN_PV_LOAD(key)
            ATTN_PV_STEP(0, a0, b0)
        }
        ATTN_PV_STORE(0, a0, b0)
    }
#undef ATTN_PV_LOAD
#undef ATTN_PV_STEP
#undef ATTN_PV_ADD
#undef ATTN_PV_STORE
}

// The AVX2 tier's int8 score tile on CPUs with AVX-VNNI (vpdpbusd on ymm:
// Alder Lake, Sapphire Rapids, Zen 5 and later). acc[key][row] = Σ_d q8·k8 for
// 64 rows, exact in int32, from the engine's query layout (for dim group g
// and row r, the 4 bytes at queryU8[(g·64 + r)·4] are q8 + 128 as u8) and
// int8 keys [key][groups·4]: vpdpbusd sums four u8 × s8 products per lane
// without saturation, and 128·Σ k8 (keySums) is subtracted at the end.
// 16 rows (two vectors) by six keys per step: 12 accumulators. Callers check
// attn_shim_cpu_has_avx_vnni() first.
__attribute__((target("avx2,avxvnni")))
static inline void attn_shim_int8_tile_avxvnni(const uint8_t *query_u8, long groups, const int8_t *keys,
                                               const int32_t *key_sums, long key_count, int32_t *acc) {
    const long stride = groups * 4;
    for (long chunk = 0; chunk < 4; chunk++) {
        const uint8_t *q = query_u8 + chunk * 16 * 4;
        for (long key = 0; key < key_count; key += 6) {
            const long count = key_count - key < 6 ? key_count - key : 6;
            const int8_t *k[6];
            for (long i = 0; i < 6; i++) k[i] = keys + (key + (i < count ? i : count - 1)) * stride;  // repeats unused
            __m256i a[6], b[6];
            for (long i = 0; i < 6; i++) { a[i] = _mm256_setzero_si256(); b[i] = _mm256_setzero_si256(); }
            for (long g = 0; g < groups; g++) {
                const __m256i x0 = _mm256_loadu_si256((const __m256i *)(q + g * 64 * 4));
                const __m256i x1 = _mm256_loadu_si256((const __m256i *)(q + g * 64 * 4 + 32));
                for (long i = 0; i < 6; i++) {
                    int32_t word;
                    __builtin_memcpy(&word, k[i] + g * 4, 4);
                    const __m256i w = _mm256_set1_epi32(word);
                    a[i] = _mm256_dpbusd_avx_epi32(a[i], x0, w);
                    b[i] = _mm256_dpbusd_avx_epi32(b[i], x1, w);
                }
            }
            for (long i = 0; i < count; i++) {
                const __m256i correction = _mm256_set1_epi32(128 * key_sums[key + i]);
                int32_t *out = acc + (key + i) * 64 + chunk * 16;
                _mm256_storeu_si256((__m256i *)out, _mm256_sub_epi32(a[i], correction));
                _mm256_storeu_si256((__m256i *)(out + 8), _mm256_sub_epi32(b[i], correction));
            }
        }
    }
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

#endif  // x86-64

#endif
