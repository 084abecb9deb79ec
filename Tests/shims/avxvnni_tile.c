/* attn_shim_int8_tile_avxvnni (the AVX2 tier's int8 QKᵀ on AVX-VNNI CPUs)
 * against a plain scalar twin: every int32 must be equal, on odd dims and key
 * counts and on all-±127 operands.
 *
 * Built twice by scripts/test.sh: with -DATTNKIT_EMULATE_VNNI, vpdpbusd is
 * replaced by a lane loop, so the tile's layout, blocking and remainders are
 * checked on any AVX2 CPU; without it, the real instruction runs, on CPUs
 * that have AVX-VNNI only. */
#ifdef ATTNKIT_EMULATE_VNNI
#include <immintrin.h>
#include <stdint.h>
static inline __m256i emulated_dpbusd(__m256i acc, __m256i a, __m256i b) {
    int32_t sums[8];
    uint8_t unsigned_bytes[32];
    int8_t signed_bytes[32];
    _mm256_storeu_si256((__m256i *)sums, acc);
    _mm256_storeu_si256((__m256i *)unsigned_bytes, a);
    _mm256_storeu_si256((__m256i *)signed_bytes, b);
    for (int lane = 0; lane < 8; lane++) {
        for (int t = 0; t < 4; t++) sums[lane] += (int32_t)unsigned_bytes[4 * lane + t] * signed_bytes[4 * lane + t];
    }
    return _mm256_loadu_si256((const __m256i *)sums);
}
#define _mm256_dpbusd_avx_epi32 emulated_dpbusd
#endif
#include "attnkit_shims.h"

#include <stdio.h>
#include <stdlib.h>

int main(void) {
#ifndef ATTNKIT_EMULATE_VNNI
    if (!attn_shim_cpu_has_avx_vnni()) {
        printf("avxvnni_tile: CPU lacks AVX-VNNI, skipped\n");
        return 0;
    }
#endif
    unsigned seed = 1;
    long mismatches = 0, checked = 0;
    for (int pattern = 0; pattern < 3; pattern++) {   /* random, all +127, q = −127 against k = 127 */
        for (int dim = 1; dim <= 128; dim += (dim < 17 ? 4 : 37)) {
            for (int keys = 1; keys <= 70; keys += 3) {
                const long groups = (dim + 3) / 4;
                unsigned char *q = malloc(groups * 64 * 4);
                signed char *k = calloc(keys * groups * 4, 1);
                int *sums = calloc(keys, sizeof(int)), *acc = calloc(keys * 64, sizeof(int));
                for (long i = 0; i < groups * 64 * 4; i++) q[i] = 128;   /* q8 = 0 in padding */
                for (int r = 0; r < 64; r++) {
                    for (int d = 0; d < dim; d++) {
                        seed = seed * 1103515245u + 12345u;
                        const int level = pattern == 0 ? (int)(seed >> 16) % 255 - 127 : pattern == 1 ? 127 : -127;
                        q[((d / 4) * 64 + r) * 4 + d % 4] = (unsigned char)(level + 128);
                    }
                }
                for (int j = 0; j < keys; j++) {
                    for (int d = 0; d < dim; d++) {
                        seed = seed * 1103515245u + 12345u;
                        k[j * groups * 4 + d] = (signed char)(pattern == 0 ? (int)(seed >> 16) % 255 - 127 : 127);
                        sums[j] += k[j * groups * 4 + d];
                    }
                }
                attn_shim_int8_tile_avxvnni(q, groups, k, sums, keys, acc);
                for (int j = 0; j < keys; j++) {
                    for (int r = 0; r < 64; r++) {
                        int expected = 0;
                        for (int d = 0; d < groups * 4; d++) {
                            expected += (q[((d / 4) * 64 + r) * 4 + d % 4] - 128) * k[j * groups * 4 + d];
                        }
                        mismatches += expected != acc[j * 64 + r];
                        checked++;
                    }
                }
                free(q); free(k); free(sums); free(acc);
            }
        }
    }
    printf("avxvnni_tile%s: %ld of %ld sums differ from the scalar twin\n",
#ifdef ATTNKIT_EMULATE_VNNI
           " (vpdpbusd emulated)",
#else
           "",
#endif
           mismatches, checked);
    return mismatches != 0;
}
