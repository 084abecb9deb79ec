/* Concurrency stress for the thread-sanitizer build (scripts/sanitize.sh):
 * 8 threads, each making 25 calls of differing shapes (SDPA with and without
 * dropout, fixed-length flash, varlen, KV-cache decoding over a shared
 * read-only cache in three splits), while some threads also change the
 * thread count. Every result must equal, bitwise, the same call made alone on
 * one thread beforehand. Prints "stress: N passed, M failed". */
#include <attnkit.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { THREADS = 8, CALLS = 25, KINDS = 5, MAXN = 2 * 4 * 70 * 16 };

static float inputs[3][MAXN];
static float expected[KINDS][MAXN];

static attn_tensor t4(float *data, int64_t a, int64_t b, int64_t c, int64_t d) {
    attn_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data; t.dtype = ATTN_DTYPE_F32; t.rank = 4;
    t.shape[0] = a; t.shape[1] = b; t.shape[2] = c; t.shape[3] = d;
    t.strides[3] = 1; t.strides[2] = d; t.strides[1] = c * d; t.strides[0] = b * c * d;
    return t;
}

/* Call kind k into out; returns the status. */
static attn_status call(int kind, float *out) {
    if (kind <= 1) {   /* SDPA (B2 H4 L70 D16), causal; kind 1 with dropout */
        attn_sdpa_params p = {sizeof p, 1, 0, 0, 0.0, kind == 1 ? 0.2 : 0.0, 1234};
        attn_tensor q = t4(inputs[0], 2, 4, 70, 16), k = t4(inputs[1], 2, 4, 70, 16), v = t4(inputs[2], 2, 4, 70, 16);
        attn_tensor o = t4(out, 2, 4, 70, 16);
        return attn_sdpa_forward(&p, &q, &k, &v, NULL, &o);
    }
    if (kind == 4) {   /* decoding: q (B2, 1, Hq4, D16) against a cache (2, 70, Hk2, 16) of 33 and 70 tokens */
        attn_kvcache_params p = {sizeof p, 1, 0, 1, 0.0, -1, -1, 0.0, 3, 0};
        int32_t lengths[2] = {33, 70};
        attn_tensor seqlens;
        memset(&seqlens, 0, sizeof seqlens);
        seqlens.data = lengths; seqlens.dtype = ATTN_DTYPE_I32; seqlens.rank = 1; seqlens.shape[0] = 2; seqlens.strides[0] = 1;
        attn_tensor q = t4(inputs[0], 2, 1, 4, 16), k = t4(inputs[1], 2, 70, 2, 16), v = t4(inputs[2], 2, 70, 2, 16);
        attn_tensor o = t4(out, 2, 1, 4, 16);
        return attn_flash_kvcache_forward(&p, &q, &k, &v, NULL, NULL, NULL, NULL, &seqlens, NULL, NULL, NULL, NULL, &o, NULL);
    }
    attn_flash_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p; p.causal = 1; p.window_left = -1; p.window_right = -1;
    p.max_seqlen_q = 70; p.max_seqlen_k = 70;
    if (kind == 2) {   /* flash (B2 S70 H4 D16), window 17 left */
        p.window_left = 17;
        attn_tensor q = t4(inputs[0], 2, 70, 4, 16), k = t4(inputs[1], 2, 70, 4, 16), v = t4(inputs[2], 2, 70, 4, 16);
        attn_tensor o = t4(out, 2, 70, 4, 16);
        return attn_flash_forward(&p, &q, &k, &v, NULL, &o, NULL);
    }
    /* varlen: sequences of 33 and 37 tokens, H4 D16 */
    int32_t cu[3] = {0, 33, 70};
    attn_tensor c;
    memset(&c, 0, sizeof c);
    c.data = cu; c.dtype = ATTN_DTYPE_I32; c.rank = 1; c.shape[0] = 3; c.strides[0] = 1;
    attn_tensor q = t4(inputs[0], 70, 4, 16, 1), k = t4(inputs[1], 70, 4, 16, 1), v = t4(inputs[2], 70, 4, 16, 1);
    attn_tensor o = t4(out, 70, 4, 16, 1);
    q.rank = k.rank = v.rank = o.rank = 3;
    return attn_flash_varlen_forward(&p, &q, &k, &v, &c, &c, NULL, &o, NULL);
}

static int mismatches = 0, calls_done = 0;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg) {
    const int id = (int)(long)arg;
    float *out = malloc(sizeof(float) * MAXN);
    for (int i = 0; i < CALLS; i++) {
        const int kind = (id + i) % KINDS;
        if (id % 3 == 0) attn_set_num_threads(1 + (i % 3));
        memset(out, 0, sizeof(float) * MAXN);
        const int bad = call(kind, out) != ATTN_OK || memcmp(out, expected[kind], sizeof(float) * MAXN) != 0;
        pthread_mutex_lock(&lock);
        mismatches += bad;
        calls_done++;
        pthread_mutex_unlock(&lock);
    }
    free(out);
    return NULL;
}

int main(void) {
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < MAXN; i++) inputs[s][i] = (float)((i * 7919 + s * 104729) % 2003) / 1001.0f - 1.0f;
    attn_set_num_threads(1);
    for (int kind = 0; kind < KINDS; kind++) {
        if (call(kind, expected[kind]) != ATTN_OK) { fprintf(stderr, "reference call %d: %s\n", kind, attn_last_error()); return 1; }
    }
    pthread_t threads[THREADS];
    for (long t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, worker, (void *)t);
    for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
    printf("stress: %d passed, %d failed\n", calls_done - mismatches, mismatches);
    return mismatches != 0;
}
