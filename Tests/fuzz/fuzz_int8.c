/* libFuzzer harness: the int8 entries.
 *   attn_int8_sdpa_forward: SDPA shapes (N, Hq, L, E) with Q and K quantized
 *     on the fly; checked against fp64 attention within a bound derived from
 *     the quantization step (absmax/127 per group at worst);
 *   attn_flash_varlen_int8_forward: caller-quantized Q and K, so the scores are
 *     exact int32 sums times the scales and the reference is held to fp32's
 *     tolerance (plus fp16's where P.V is fp16, as attn_get_int8_pv_dtype says). */
#include "fuzz_common.h"

static const attn_dtype int8_value_dtypes[] = {ATTN_DTYPE_F32, ATTN_DTYPE_F16, ATTN_DTYPE_BF16};

typedef struct {
    int prequantized; /* 0: int8 SDPA, 1: varlen on int8 Q/K */
    attn_int8_sdpa_params sdpa;
    attn_flash_params flash;
    int64_t batch, heads_q, heads_k, seq_q, seq_k, dim, value_dim;
    int64_t total_q, total_k, start_q[4], start_k[4], len_q[4], len_k[4];
    attn_tensor q, k, v, mask, out, q_scale, k_scale, cu_q, cu_k, lse;
    int has_mask, has_lse;
} int8_call;

/* q and k as the kernel sees them (the dequantized value for int8 input). */
static double q_at(const int8_call *c, int64_t row, int64_t h, int64_t d, int64_t b) {
    if (!c->prequantized) { int64_t i[4] = {b, h, row, d}; return fz_get(&c->q, i); }
    int64_t i[3] = {row, h, d}, s[2] = {row, h};
    return fz_get(&c->q_scale, s) * fz_get(&c->q, i);
}
static double k_at(const int8_call *c, int64_t row, int64_t h, int64_t d, int64_t b) {
    if (!c->prequantized) { int64_t i[4] = {b, h, row, d}; return fz_get(&c->k, i); }
    int64_t i[3] = {row, h, d}, s[2] = {row, h};
    return fz_get(&c->k_scale, s) * fz_get(&c->k, i);
}
static double v_at(const int8_call *c, int64_t row, int64_t h, int64_t e, int64_t b) {
    if (!c->prequantized) { int64_t i[4] = {b, h, row, e}; return fz_get(&c->v, i); }
    int64_t i[3] = {row, h, e};
    return fz_get(&c->v, i);
}

static void check_reference(const int8_call *c) {
    if (!fz_all_finite(&c->q) || !fz_all_finite(&c->k) || !fz_all_finite(&c->v)) return;
    if (c->prequantized && (!fz_all_finite(&c->q_scale) || !fz_all_finite(&c->k_scale))) return;
    int has_scale = c->prequantized ? c->flash.has_scale : c->sdpa.has_scale;
    double given = c->prequantized ? c->flash.softmax_scale : c->sdpa.scale;
    double scale = has_scale ? given : 1.0 / sqrt((double)c->dim);
    double max_v = fz_max_abs(&c->v);
    double tolerance = fz_tolerance(c->v.dtype) * (1 + max_v) * (1 + fabs(scale) * c->dim);
    /* P.V in fp16 (attn_get_int8_pv_dtype, AVX512_FP16 CPUs): P and V are rounded to
     * fp16 and each lane sums a tile's products (up to 64) in fp16, so up to 2 + 63
     * roundings of 2^-11 of a sum bounded by sum(p)*max|v| <= max|v|. */
    int32_t pv_dtype = ATTN_DTYPE_F32;
    if (attn_get_int8_pv_dtype(&pv_dtype) == ATTN_OK && pv_dtype == ATTN_DTYPE_F16)
        tolerance += 65 * ldexp(1, -11) * max_v;
    if (!c->prequantized) {
        /* Each quantized operand is off by at most half a step, absmax/254, and
         * smooth_k at most doubles K's absmax: bound the score error, then the
         * output's (softmax weights move by at most e^(2*delta) - 1). */
        double a_q = fz_max_abs(&c->q), a_k = 2 * fz_max_abs(&c->k);
        double delta = fabs(scale) * c->dim * (a_q * a_k / 127 + (a_q / 254) * (a_k / 254));
        tolerance += (exp(2 * delta) - 1) * max_v;
    }
    int64_t group = c->heads_q / c->heads_k;
    double *scores = malloc(sizeof(double) * (size_t)(c->seq_k + c->total_k + 1));
    int64_t batches = c->prequantized ? c->batch : c->batch;
    for (int64_t b = 0; b < batches; b++) {
        int64_t sq = c->prequantized ? c->len_q[b] : c->seq_q, sk = c->prequantized ? c->len_k[b] : c->seq_k;
        int64_t oq = c->prequantized ? c->start_q[b] : 0, ok = c->prequantized ? c->start_k[b] : 0;
        for (int64_t h = 0; h < c->heads_q; h++)
            for (int64_t i = 0; i < sq; i++) {
                for (int64_t j = 0; j < sk; j++) {
                    int excluded;
                    if (c->prequantized) excluded = c->flash.causal && j > i + sk - sq;
                    else {
                        excluded = c->sdpa.is_causal && j > i;
                        int64_t mi[4] = {b, 0, i, j};
                        if (c->has_mask && fz_get(&c->mask, mi) == 0) excluded = 1;
                    }
                    if (excluded) { scores[j] = -INFINITY; continue; }
                    double dot = 0;
                    for (int64_t d = 0; d < c->dim; d++)
                        dot += q_at(c, oq + i, h, d, b) * k_at(c, ok + j, h / group, d, b);
                    scores[j] = scale * dot;
                }
                double lse = fz_softmax(scores, sk);
                if (c->has_lse) {
                    int64_t li[2] = {h, oq + i};
                    double got = fz_get(&c->lse, li);
                    if (isinf(lse)) { if (got != INFINITY) fz_fail("reference", "lse of an empty row is not +inf"); }
                    else fz_expect_close(got, lse, 1e-4 * (1 + fabs(lse)) + tolerance, "lse");
                }
                for (int64_t e = 0; e < c->value_dim; e++) {
                    double want = 0;
                    for (int64_t j = 0; j < sk; j++) if (scores[j] != 0) want += scores[j] * v_at(c, ok + j, h / group, e, b);
                    double got;
                    if (c->prequantized) { int64_t oi[3] = {oq + i, h, e}; got = fz_get(&c->out, oi); }
                    else { int64_t oi[4] = {b, h, i, e}; got = fz_get(&c->out, oi); }
                    fz_expect_close(got, want, tolerance, "out");
                }
            }
    }
    free(scores);
}

static attn_status call_int8(int8_call *c) {
    if (c->prequantized)
        return attn_flash_varlen_int8_forward(&c->flash, &c->q, &c->q_scale, &c->k, &c->k_scale, &c->v, &c->cu_q,
                                              &c->cu_k, NULL, &c->out, c->has_lse ? &c->lse : NULL);
    return attn_int8_sdpa_forward(&c->sdpa, &c->q, &c->k, &c->v, c->has_mask ? &c->mask : NULL, &c->out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_input in = {data, size, 0, size};
    for (size_t i = 0; i < size && i < 64; i++) in.fill_state = in.fill_state * 131 + data[i];
    static int8_call c;
    memset(&c, 0, sizeof c);
    fz_broken = "";
    fz_no_reference = 0;

    c.prequantized = fz_chance(&in, 50);
    attn_dtype dtype = int8_value_dtypes[fz_pick(&in, 3)];
    c.batch = 1 + fz_pick(&in, 2);
    c.heads_k = 1 + fz_pick(&in, 2);
    c.heads_q = c.heads_k * (1 + fz_pick(&in, 2));
    c.dim = fz_head_dim(&in);
    c.value_dim = fz_chance(&in, 80) ? c.dim : fz_head_dim(&in);
    int specials = fz_chance(&in, 10);
    int must_reject = 0;
    if (c.prequantized) {
        for (int64_t b = 0; b < c.batch; b++) {
            c.start_q[b] = c.total_q; c.start_k[b] = c.total_k;
            c.len_q[b] = fz_length(&in); c.len_k[b] = fz_length(&in);
            c.total_q += c.len_q[b]; c.total_k += c.len_k[b];
            if (c.len_q[b] > c.seq_q) c.seq_q = c.len_q[b];
            if (c.len_k[b] > c.seq_k) c.seq_k = c.len_k[b];
        }
        int64_t qs[3] = {c.total_q, c.heads_q, c.dim}, ks[3] = {c.total_k, c.heads_k, c.dim};
        int64_t vs[3] = {c.total_k, c.heads_k, c.value_dim}, os[3] = {c.total_q, c.heads_q, c.value_dim};
        int64_t qss[2] = {c.total_q, c.heads_q}, kss[2] = {c.total_k, c.heads_k}, cu[1] = {c.batch + 1};
        fz_make(&in, &c.q, "q_int8", ATTN_DTYPE_I8, 3, qs, 0, 0);
        fz_make(&in, &c.k, "k_int8", ATTN_DTYPE_I8, 3, ks, 0, 0);
        uint64_t salt = fz_byte(&in);
        FZ_FILL(&c.q, (double)((int)((index[0] * 37 + index[1] * 11 + index[2] * 5 + salt) % 255) - 127));
        FZ_FILL(&c.k, (double)((int)((index[0] * 13 + index[1] * 7 + index[2] * 29 + salt) % 255) - 127));
        fz_make(&in, &c.q_scale, "q_scale", ATTN_DTYPE_F32, 2, qss, 0, 0);
        fz_make(&in, &c.k_scale, "k_scale", ATTN_DTYPE_F32, 2, kss, 0, 0);
        FZ_FILL(&c.q_scale, (double)(1 + (index[0] + index[1] + salt) % 4) / 256.0);
        FZ_FILL(&c.k_scale, (double)(1 + (index[0] * 3 + index[1]) % 4) / 256.0);
        fz_make(&in, &c.v, "v", dtype, 3, vs, 0, specials);
        fz_make(&in, &c.out, "out", dtype, 3, os, 1, 0);
        c.has_lse = fz_chance(&in, 50);
        int64_t ls[2] = {c.heads_q, c.total_q};
        if (c.has_lse) fz_make(&in, &c.lse, "softmax_lse", ATTN_DTYPE_F32, 2, ls, 1, 0);
        attn_dtype index_dtype = fz_chance(&in, 50) ? ATTN_DTYPE_I32 : ATTN_DTYPE_I64;
        fz_make_index(&in, &c.cu_q, "cu_seqlens_q", index_dtype, 1, cu);
        fz_make_index(&in, &c.cu_k, "cu_seqlens_k", index_dtype, 1, cu);
        FZ_FILL(&c.cu_q, (double)(index[0] == c.batch ? c.total_q : c.start_q[index[0]]));
        FZ_FILL(&c.cu_k, (double)(index[0] == c.batch ? c.total_k : c.start_k[index[0]]));
        c.flash.struct_size = sizeof c.flash;
        c.flash.causal = fz_chance(&in, 40);
        c.flash.has_scale = fz_chance(&in, 30);
        c.flash.softmax_scale = c.flash.has_scale ? (double)((int)fz_pick(&in, 9) - 4) / 4.0 : 0;
        c.flash.window_left = c.flash.window_right = -1;
        c.flash.max_seqlen_q = c.seq_q;
        c.flash.max_seqlen_k = c.seq_k;
        switch (fz_chance(&in, 25) ? fz_pick(&in, 5) : 99) {
        case 0: c.q.dtype = ATTN_DTYPE_U8; fz_broken = "q_int8 dtype"; must_reject = 1; break;
        case 1: c.k_scale.shape[1] = c.heads_k + 1; fz_broken = "k_scale shape"; must_reject = 1; break;
        case 2: c.flash.dropout_p = 0.5; fz_broken = "dropout with int8"; must_reject = 1; break;
        case 3: fz_corrupt_tensor(&in, &c.k); must_reject = 1; break;
        case 4: fz_corrupt_tensor(&in, &c.out); must_reject = 1; break;
        }
    } else {
        c.seq_q = fz_length(&in);
        c.seq_k = fz_length(&in);
        int64_t qs[4] = {c.batch, c.heads_q, c.seq_q, c.dim}, ks[4] = {c.batch, c.heads_k, c.seq_k, c.dim};
        int64_t vs[4] = {c.batch, c.heads_k, c.seq_k, c.value_dim}, os[4] = {c.batch, c.heads_q, c.seq_q, c.value_dim};
        fz_make(&in, &c.q, "query", dtype, 4, qs, 0, specials);
        fz_make(&in, &c.k, "key", dtype, 4, ks, 0, specials);
        fz_make(&in, &c.v, "value", dtype, 4, vs, 0, specials);
        fz_make(&in, &c.out, "out", dtype, 4, os, 1, 0);
        c.has_mask = fz_chance(&in, 40);
        if (c.has_mask) {
            int64_t ms[4] = {c.batch, 1, c.seq_q, c.seq_k};
            fz_make(&in, &c.mask, "attn_mask", ATTN_DTYPE_BOOL, 4, ms, 0, 0);
            uint64_t salt = fz_byte(&in);
            FZ_FILL(&c.mask, (double)((index[2] * 3 + index[3] + salt) % 4 != 0));
        }
        c.sdpa.struct_size = sizeof c.sdpa;
        c.sdpa.is_causal = fz_chance(&in, 40);
        c.sdpa.enable_gqa = 1;
        c.sdpa.has_scale = fz_chance(&in, 30);
        c.sdpa.scale = c.sdpa.has_scale ? (double)((int)fz_pick(&in, 9) - 4) / 4.0 : 0;
        c.sdpa.qk_quant = (int32_t)fz_pick(&in, 3);
        c.sdpa.smooth_k = fz_chance(&in, 50);
        switch (fz_chance(&in, 25) ? fz_pick(&in, 5) : 99) {
        case 0: c.sdpa.qk_quant = 3 + (int32_t)fz_pick(&in, 9); fz_broken = "qk_quant"; must_reject = 1; break;
        case 1: c.sdpa.smooth_k = 2; fz_broken = "smooth_k"; must_reject = 1; break;
        case 2: c.q.dtype = c.k.dtype = c.v.dtype = c.out.dtype = ATTN_DTYPE_F64; fz_broken = "f64 for int8"; must_reject = 1; break;
        case 3: fz_corrupt_tensor(&in, &c.q); must_reject = 1; break;
        case 4: c.sdpa.struct_size = 4097; fz_broken = "struct_size"; must_reject = 1; break;
        }
    }
    FZ_RUN(&in, must_reject, call_int8(&c), check_reference(&c));
    fz_release_all();
    return 0;
}
