/* libFuzzer harness: flash attention, fixed-length (attn_flash_forward and
 * _probs, and attn_flash_block_forward with a fuzzed diagonal) or, built with -DFZ_VARLEN, packed variable-length
 * (attn_flash_varlen_forward and _probs). The input decides the batch, the
 * sequence lengths, heads (GQA ratios), head dims, dtype, layouts, causal,
 * window, softcap, scale, ALiBi, dropout and the thread counts; now and then it
 * breaks one rule on purpose and the call must be rejected. */
#include "fuzz_common.h"

typedef struct {
    attn_flash_params params;
    int64_t batch, heads_q, heads_k, dim, value_dim;
    int64_t seq_q[4], seq_k[4];      /* per sequence */
    int64_t start_q[4], start_k[4];  /* first packed row (varlen), 0 otherwise */
    int64_t max_q, max_k;
    attn_tensor q, k, v, out, lse, slopes, cu_q, cu_k, dmask;
    int has_lse, has_slopes, has_dmask;
    int use_block;       /* attn_flash_block_forward: key i + diagonal is aligned with query i */
    int64_t diagonal;
} flash_call;

/* The row index of (sequence b, position i, head h) in q/k/v/out as the
 * descriptors lay them out. */
static void row_index(const flash_call *c, int64_t b, int64_t start, int64_t i, int64_t h, int64_t *index) {
#ifdef FZ_VARLEN
    (void)b;
    index[0] = start + i; index[1] = h;
#else
    (void)start;
    index[0] = b; index[1] = i; index[2] = h;
#endif
    (void)c;
}

static double slope_of(const flash_call *c, int64_t b, int64_t h) {
    if (!c->has_slopes) return 0;
    int64_t index[2] = {c->slopes.rank == 1 ? h : b, h};
    return fz_get(&c->slopes, index);
}

/* Checks out, lse and S_dmask against the fp64 reference (dropout 0 only). */
static void check_reference(const flash_call *c) {
    if (c->params.dropout_p != 0) return;
    if (!fz_all_finite(&c->q) || !fz_all_finite(&c->k) || !fz_all_finite(&c->v)) return;
    const attn_flash_params *p = &c->params;
    double scale = p->has_scale ? p->softmax_scale : 1.0 / sqrt((double)c->dim);
    double tolerance = fz_tolerance(c->q.dtype) * (1 + fz_max_abs(&c->v)) * (1 + fabs(scale) * c->dim);
    int64_t group = c->heads_q / c->heads_k;
    double *scores = malloc(sizeof(double) * (size_t)(c->max_k + 1));
    for (int64_t b = 0; b < c->batch; b++) {
        int64_t sq = c->seq_q[b], sk = c->seq_k[b];
        for (int64_t h = 0; h < c->heads_q; h++) {
            for (int64_t i = 0; i < sq; i++) {
                int64_t diagonal = i + (c->use_block ? c->diagonal : sk - sq);
                int64_t qi[4], ki[4];
                row_index(c, b, c->start_q[b], i, h, qi);
                for (int64_t j = 0; j < sk; j++) {
                    int allowed = 1;
                    int64_t right = p->causal ? 0 : p->window_right;
                    if (p->window_left >= 0 && j < diagonal - p->window_left) allowed = 0;
                    if (right >= 0 && j > diagonal + right) allowed = 0;
                    if (!allowed) { scores[j] = -INFINITY; continue; }
                    row_index(c, b, c->start_k[b], j, h / group, ki);
                    double dot = 0;
                    for (int64_t d = 0; d < c->dim; d++) {
                        qi[c->q.rank - 1] = d; ki[c->k.rank - 1] = d;
                        dot += fz_get(&c->q, qi) * fz_get(&c->k, ki);
                    }
                    double s = scale * dot;
                    if (p->softcap > 0) s = p->softcap * tanh(s / p->softcap);
                    s -= slope_of(c, b, h) * fabs((double)(diagonal - j));
                    scores[j] = s;
                }
                double lse = fz_softmax(scores, sk);
                if (c->has_lse) {
#ifdef FZ_VARLEN
                    int64_t li[2] = {h, c->start_q[b] + i};
#else
                    int64_t li[3] = {b, h, i};
#endif
                    double got = fz_get(&c->lse, li);
                    if (isinf(lse)) { if (got != INFINITY) fz_fail("reference", "lse of an empty row is not +inf"); }
                    else fz_expect_close(got, lse, 1e-4 * (1 + fabs(lse)) + (c->q.dtype == ATTN_DTYPE_F64 ? 0 : tolerance), "lse");
                }
                for (int64_t e = 0; e < c->value_dim; e++) {
                    double want = 0;
                    for (int64_t j = 0; j < sk; j++) {
                        if (scores[j] == 0) continue;
                        row_index(c, b, c->start_k[b], j, h / group, ki);
                        ki[c->v.rank - 1] = e;
                        want += scores[j] * fz_get(&c->v, ki);
                    }
                    int64_t oi[4];
                    row_index(c, b, c->start_q[b], i, h, oi);
                    oi[c->out.rank - 1] = e;
                    fz_expect_close(fz_get(&c->out, oi), want, tolerance, "out");
                }
                if (c->has_dmask) {
                    for (int64_t j = 0; j < c->dmask.shape[3]; j++) {
                        int64_t di[4] = {b, h, i, j};
                        double want = j < sk ? scores[j] : 0;
                        fz_expect_close(fabs(fz_get(&c->dmask, di)), want, fz_tolerance(c->q.dtype) * 4, "s_dmask");
                    }
                }
            }
        }
    }
    free(scores);
}

static flash_call *described;
static void describe(void) {
    const attn_flash_params *p = &described->params;
    fprintf(stderr, "  params: causal %d has_scale %d scale %g window (%lld, %lld) softcap %g dropout %g seed %llu "
                    "max_seqlen (%lld, %lld) dmask %d\n", p->causal, p->has_scale, p->softmax_scale,
            (long long)p->window_left, (long long)p->window_right, p->softcap, p->dropout_p,
            (unsigned long long)p->seed, (long long)p->max_seqlen_q, (long long)p->max_seqlen_k, described->has_dmask);
    if (described->use_block) fprintf(stderr, "  attn_flash_block_forward, diagonal %lld\n", (long long)described->diagonal);
}

static attn_status call_flash(flash_call *c) {
    const attn_tensor *lse = c->has_lse ? &c->lse : NULL, *slopes = c->has_slopes ? &c->slopes : NULL;
#ifdef FZ_VARLEN
    if (c->has_dmask)
        return attn_flash_varlen_forward_probs(&c->params, &c->q, &c->k, &c->v, &c->cu_q, &c->cu_k, slopes, &c->out, lse,
                                               &c->dmask);
    return attn_flash_varlen_forward(&c->params, &c->q, &c->k, &c->v, &c->cu_q, &c->cu_k, slopes, &c->out, lse);
#else
    if (c->use_block) return attn_flash_block_forward(&c->params, c->diagonal, &c->q, &c->k, &c->v, slopes, &c->out, lse);
    if (c->has_dmask) return attn_flash_forward_probs(&c->params, &c->q, &c->k, &c->v, slopes, &c->out, lse, &c->dmask);
    return attn_flash_forward(&c->params, &c->q, &c->k, &c->v, slopes, &c->out, lse);
#endif
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_input in = {data, size, 0, size};
    for (size_t i = 0; i < size && i < 64; i++) in.fill_state = in.fill_state * 131 + data[i];
    static flash_call c;
    memset(&c, 0, sizeof c);
    described = &c;
    fz_describe = describe;
    fz_broken = "";
    fz_no_reference = 0;

    attn_dtype dtype = fz_float_dtypes[fz_pick(&in, 4)];
    c.batch = 1 + fz_pick(&in, 3);
    c.heads_k = 1 + fz_pick(&in, 2);
    c.heads_q = c.heads_k * (1 + fz_pick(&in, 3));
    c.dim = fz_head_dim(&in);
    c.value_dim = fz_chance(&in, 80) ? c.dim : fz_head_dim(&in);
#ifdef FZ_VARLEN
    int64_t total_q = 0, total_k = 0;
    for (int64_t b = 0; b < c.batch; b++) {
        c.start_q[b] = total_q; c.start_k[b] = total_k;
        c.seq_q[b] = fz_length(&in); c.seq_k[b] = fz_length(&in);
        total_q += c.seq_q[b]; total_k += c.seq_k[b];
        if (c.seq_q[b] > c.max_q) c.max_q = c.seq_q[b];
        if (c.seq_k[b] > c.max_k) c.max_k = c.seq_k[b];
    }
    int64_t q_shape[3] = {total_q, c.heads_q, c.dim}, k_shape[3] = {total_k, c.heads_k, c.dim};
    int64_t v_shape[3] = {total_k, c.heads_k, c.value_dim}, o_shape[3] = {total_q, c.heads_q, c.value_dim};
    int64_t lse_shape[2] = {c.heads_q, total_q};
    int rank = 3, lse_rank = 2;
#else
    int64_t sq = fz_length(&in), sk = fz_length(&in);
    for (int64_t b = 0; b < c.batch; b++) { c.seq_q[b] = sq; c.seq_k[b] = sk; }
    c.max_q = sq; c.max_k = sk;
    int64_t q_shape[4] = {c.batch, sq, c.heads_q, c.dim}, k_shape[4] = {c.batch, sk, c.heads_k, c.dim};
    int64_t v_shape[4] = {c.batch, sk, c.heads_k, c.value_dim}, o_shape[4] = {c.batch, sq, c.heads_q, c.value_dim};
    int64_t lse_shape[3] = {c.batch, c.heads_q, sq};
    int rank = 4, lse_rank = 3;
#endif
    int specials = fz_chance(&in, 20);
    fz_make(&in, &c.q, "q", dtype, rank, q_shape, 0, specials);
    fz_make(&in, &c.k, "k", dtype, rank, k_shape, 0, specials);
    fz_make(&in, &c.v, "v", dtype, rank, v_shape, 0, specials);
    fz_make(&in, &c.out, "out", dtype, rank, o_shape, 1, 0);
    c.has_lse = fz_chance(&in, 60);
    if (c.has_lse) fz_make(&in, &c.lse, "softmax_lse", ATTN_DTYPE_F32, lse_rank, lse_shape, 1, 0);
    c.has_slopes = fz_chance(&in, 25);
    if (c.has_slopes) {
        int per_batch = fz_chance(&in, 50);
        int64_t shape[2] = {per_batch ? c.batch : c.heads_q, c.heads_q};
        fz_make(&in, &c.slopes, "alibi_slopes", ATTN_DTYPE_F32, per_batch ? 2 : 1, per_batch ? shape : shape + 1, 0, 0);
        FZ_FILL(&c.slopes, (double)(index[0] + index[1] + 1) / 16.0);
    }
#ifdef FZ_VARLEN
    attn_dtype index_dtype = fz_chance(&in, 50) ? ATTN_DTYPE_I32 : ATTN_DTYPE_I64;
    int64_t cu_shape[1] = {c.batch + 1};
    fz_make_index(&in, &c.cu_q, "cu_seqlens_q", index_dtype, 1, cu_shape);
    fz_make_index(&in, &c.cu_k, "cu_seqlens_k", index_dtype, 1, cu_shape);
    FZ_FILL(&c.cu_q, (double)(index[0] == c.batch ? total_q : c.start_q[index[0]]));
    FZ_FILL(&c.cu_k, (double)(index[0] == c.batch ? total_k : c.start_k[index[0]]));
#endif
    attn_flash_params *p = &c.params;
    p->struct_size = sizeof *p;
    p->causal = fz_chance(&in, 40);
    p->has_scale = fz_chance(&in, 30);
    p->softmax_scale = p->has_scale ? (double)((int)fz_pick(&in, 17) - 8) / 8.0 : 0;
    p->window_left = fz_chance(&in, 25) ? (int64_t)fz_pick(&in, 20) : -1;
    p->window_right = fz_chance(&in, 25) ? (int64_t)fz_pick(&in, 20) : -1;
    p->softcap = fz_chance(&in, 20) ? 0.5 + fz_pick(&in, 40) : 0;
    p->dropout_p = fz_chance(&in, 15) ? (double)fz_pick(&in, 5) / 4.0 : 0;
    p->seed = fz_byte(&in);
    p->max_seqlen_q = c.max_q + (fz_chance(&in, 20) ? fz_pick(&in, 100) : 0);
    p->max_seqlen_k = c.max_k + (fz_chance(&in, 20) ? fz_pick(&in, 100) : 0);
#ifndef FZ_VARLEN
    c.use_block = fz_chance(&in, 30);
    if (c.use_block) c.diagonal = (int64_t)fz_pick(&in, 81) - 40;
#endif
    c.has_dmask = !c.use_block && fz_chance(&in, 15) && c.max_q * c.max_k <= 4096;
    if (c.has_dmask) {
        int64_t shape[4] = {c.batch, c.heads_q, c.max_q + fz_pick(&in, 3), c.max_k + fz_pick(&in, 3)};
        fz_make(&in, &c.dmask, "s_dmask", dtype, 4, shape, 1, 0);
    }

    /* Break one rule on purpose, now and then. */
    int must_reject = 0;
    switch (fz_chance(&in, 25) ? fz_pick(&in, 11) : 99) {
    case 0: fz_corrupt_tensor(&in, &c.q); must_reject = 1; break;
    case 1: fz_corrupt_tensor(&in, &c.k); must_reject = 1; break;
    case 2: fz_corrupt_tensor(&in, &c.v); must_reject = 1; break;
    case 3: fz_corrupt_tensor(&in, &c.out); must_reject = 1; break;
    case 4: p->struct_size = fz_chance(&in, 50) ? 4097 : 3; fz_broken = "struct_size"; must_reject = 1; break;
    case 5: p->reserved = 1; fz_broken = "reserved"; must_reject = 1; break;
    case 6: p->dropout_p = fz_chance(&in, 50) ? -0.25 : NAN; fz_broken = "dropout_p"; must_reject = 1; break;
    case 7: p->has_scale = 1; p->softmax_scale = fz_chance(&in, 50) ? NAN : INFINITY; fz_broken = "scale"; must_reject = 1; break;
    case 8: p->window_left = -2 - (int64_t)fz_pick(&in, 5); fz_broken = "window_left"; must_reject = 1; break;
    case 9:
        if (c.heads_q > 1) { c.k.shape[c.k.rank - 2] = c.heads_q + 1; fz_broken = "Hk not dividing Hq"; must_reject = 1; }
        break;
    case 10:
        if (c.use_block) {
            c.diagonal = (fz_chance(&in, 50) ? 1 : -1) * (((int64_t)1 << 30) + 1 + (int64_t)fz_pick(&in, 1000));
            fz_broken = "diagonal"; must_reject = 1;
        }
        break;
    }
#ifdef FZ_VARLEN
    if (!must_reject && fz_chance(&in, 10) && c.max_q > 0) {
        p->max_seqlen_q = c.max_q - 1; fz_broken = "max_seqlen_q below the longest sequence"; must_reject = 1;
    }
#endif
    if (!must_reject && fz_chance(&in, 8)) {
        int64_t huge = fz_huge(&in);
        fz_no_reference = 1;
        fz_give_data_to_all();
#ifdef FZ_VARLEN
        /* Huge but empty: no query rows, 2^20..2^40 query heads, and cu_seqlens
         * broadcast views claiming as many sequences (never read). */
        int64_t group = c.heads_q / c.heads_k;
        huge = (int64_t)1 << (20 + fz_pick(&in, 9));   /* (B, Hq) slopes: B x Hq must stay below 2^62 */
        c.q.shape[0] = c.out.shape[0] = 0;
        c.q.shape[1] = c.out.shape[1] = huge * c.heads_k * group;
        if (c.has_lse) { c.lse.shape[0] = c.q.shape[1]; c.lse.shape[1] = 0; }
        if (c.has_slopes) { c.slopes.shape[c.slopes.rank - 1] = c.q.shape[1]; c.slopes.strides[c.slopes.rank - 1] = 0; }
        if (c.has_slopes && c.slopes.rank == 2) { c.slopes.shape[0] = huge; c.slopes.strides[0] = 0; }
        c.cu_q.shape[0] = c.cu_k.shape[0] = huge + 1;
        c.cu_q.strides[0] = c.cu_k.strides[0] = 0;
        if (c.has_dmask) { c.dmask.shape[0] = huge; c.dmask.shape[1] = c.q.shape[1]; c.dmask.shape[2] = 0; }
#else
        /* Huge but empty: 2^20..2^40 batches, no query rows. */
        c.q.shape[0] = c.k.shape[0] = c.v.shape[0] = c.out.shape[0] = huge;
        c.q.shape[1] = c.out.shape[1] = 0;
        if (c.has_lse) { c.lse.shape[0] = huge; c.lse.shape[2] = 0; }
        if (c.has_slopes && c.slopes.rank == 2) c.slopes.shape[0] = huge;
        if (c.has_dmask) { c.dmask.shape[0] = huge; c.dmask.shape[2] = 0; }
#endif
        c.batch = 0;   /* the reference has nothing to check */
    }
    /* A valid call whose outputs are all empty may skip some checks (header: it
     * returns ATTN_OK once its descriptors are checked), so the value-level
     * breaks above are only required to fail when there is work. */
    FZ_RUN(&in, must_reject, call_flash(&c), check_reference(&c));
    fz_release_all();
    return 0;
}
