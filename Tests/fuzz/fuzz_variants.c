/* libFuzzer harness: the attention guide's variants against fp64 —
 * attn_sparse_topk_forward (ties to the lower key, causal, key mask, GQA),
 * attn_aft_forward (full, local with either outside rule, simple; dense or
 * low-rank bias; causal) and attn_linformer_forward (sliced projections, biases). */
#include "fuzz_common.h"

enum { SPARSE, AFT, LINFORMER };

typedef struct {
    int entry;
    attn_dtype dtype;
    int64_t batch, heads_q, heads_k, seq_q, seq_k, dim, value_dim;
    attn_sparse_topk_params sparse;
    attn_aft_params aft;
    attn_linformer_params linformer;
    attn_tensor q, k, v, mask, out, w, u, f, e, be, bf;
    int has_mask, has_w, has_low_rank, has_be, has_bf;
    int64_t rank, projected, max_len;
} variant_call;

/* The compute precision of a storage dtype (fp32 for all but f64). */
static double compute_eps(attn_dtype dtype) { return dtype == ATTN_DTYPE_F64 ? 2.3e-16 : 1.2e-7; }

static double scale_of(const variant_call *c, int has_scale, double scale) {
    return has_scale ? scale : 1.0 / sqrt((double)(c->dim > 0 ? c->dim : 1));
}

/* Sparse top-k: every allowed score of a row, the best top_k by (score desc, key asc). */
static void check_sparse(const variant_call *c) {
    double scale = scale_of(c, c->sparse.has_scale, c->sparse.softmax_scale);
    double *score = malloc(sizeof(double) * (size_t)(c->seq_k + 1));
    int64_t *key = malloc(sizeof(int64_t) * (size_t)(c->seq_k + 1));
    double vmax = fz_max_abs(&c->v), smax = fabs(scale) * fz_max_abs(&c->q) * fz_max_abs(&c->k) * (double)c->dim;
    double tolerance = fz_tolerance(c->dtype) * (1 + vmax) + 16 * compute_eps(c->dtype) * (1 + smax) * (1 + vmax);
    /* Ranks agree with the kernel's fp32 scores only while every dot product is exact there
     * (inputs are multiples of 1/8): skip the special values' huge products. */
    if (fz_max_abs(&c->q) * fz_max_abs(&c->k) * 64.0 * (double)c->dim > 16777216.0) { free(score); free(key); return; }
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->heads_q; h++)
            for (int64_t i = 0; i < c->seq_q; i++) {
                int64_t n = 0, hk = h / (c->heads_q / c->heads_k);
                for (int64_t j = 0; j < c->seq_k; j++) {
                    int64_t mi[2] = {b, j};
                    if (c->sparse.mask_mode == ATTN_MASK_CAUSAL_TOP_LEFT && j > i) continue;
                    if (c->has_mask && fz_get(&c->mask, mi) == 0) continue;
                    double dot = 0;
                    for (int64_t d = 0; d < c->dim; d++) {
                        int64_t qi[4] = {b, h, i, d}, ki[4] = {b, hk, j, d};
                        dot += fz_get(&c->q, qi) * fz_get(&c->k, ki);
                    }
                    /* insertion by (score desc, key asc): keys arrive ascending, so after equal scores */
                    int64_t at = n++;
                    while (at > 0 && score[at - 1] < scale * dot) { score[at] = score[at - 1]; key[at] = key[at - 1]; at--; }
                    score[at] = scale * dot; key[at] = j;
                }
                int64_t kept = n < c->sparse.top_k ? n : c->sparse.top_k;
                fz_softmax(score, kept);
                for (int64_t d = 0; d < c->value_dim; d++) {
                    double want = 0;
                    for (int64_t j = 0; j < kept; j++) {
                        int64_t vi[4] = {b, hk, key[j], d};
                        want += score[j] * fz_get(&c->v, vi);
                    }
                    int64_t oi[4] = {b, h, i, d};
                    fz_expect_close(fz_get(&c->out, oi), want, tolerance, "sparse top-k out");
                }
            }
    free(score); free(key);
}

/* AFT: whether t sees t' at all, and whether W (not 0) applies. */
static int aft_sees(const variant_call *c, int64_t t, int64_t key, int *biased) {
    *biased = c->aft.variant != ATTN_AFT_SIMPLE;
    if (c->aft.causal && key > t) return 0;
    if (c->aft.variant == ATTN_AFT_LOCAL && llabs(t - key) >= c->aft.local_context) {
        *biased = 0;
        return c->aft.outside == ATTN_AFT_OUTSIDE_ZERO_BIAS;
    }
    return 1;
}

static double aft_bias(const variant_call *c, int64_t t, int64_t key) {
    if (c->has_w) { int64_t wi[2] = {t, key}; return fz_get(&c->w, wi); }
    double sum = 0;
    for (int64_t r = 0; r < c->rank; r++) {
        int64_t ui[2] = {t, r}, fi[2] = {key, r};
        sum += fz_get(&c->u, ui) * fz_get(&c->f, fi);
    }
    return sum;
}

static void check_aft(const variant_call *c) {
    int64_t length = c->seq_q, features = c->dim;
    double vmax = fz_max_abs(&c->v), emax = fz_max_abs(&c->k);
    if (c->has_w) emax += fz_max_abs(&c->w);
    if (c->has_low_rank) emax += fz_max_abs(&c->u) * fz_max_abs(&c->f) * (double)c->rank;
    double tolerance = fz_tolerance(c->dtype) * (1 + vmax) + 16 * compute_eps(c->dtype) * (1 + emax) * (1 + vmax);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t t = 0; t < length; t++)
            for (int64_t ch = 0; ch < features; ch++) {
                double top = -INFINITY;
                int biased;
                for (int64_t key = 0; key < length; key++) {
                    if (!aft_sees(c, t, key, &biased)) continue;
                    int64_t ki[3] = {b, key, ch};
                    double x = (biased ? aft_bias(c, t, key) : 0) + fz_get(&c->k, ki);
                    if (x > top) top = x;
                }
                double numerator = 0, denominator = 0;
                for (int64_t key = 0; key < length && top != -INFINITY; key++) {
                    if (!aft_sees(c, t, key, &biased)) continue;
                    int64_t ki[3] = {b, key, ch}, vi[3] = {b, key, ch};
                    double e = exp((biased ? aft_bias(c, t, key) : 0) + fz_get(&c->k, ki) - top);
                    numerator += e * fz_get(&c->v, vi);
                    denominator += e;
                }
                int64_t oi[3] = {b, t, ch};
                double gate = 1 / (1 + exp(-fz_get(&c->q, oi)));
                double want = denominator > 0 ? gate * numerator / denominator : 0;
                fz_expect_close(fz_get(&c->out, oi), want, tolerance, "aft out");
            }
}

static void check_linformer(const variant_call *c) {
    int64_t kp = c->projected, group = c->heads_q / c->heads_k;
    double scale = scale_of(c, c->linformer.has_scale, c->linformer.softmax_scale);
    double *keys = malloc(sizeof(double) * (size_t)(kp * c->dim + 1));
    double *values = malloc(sizeof(double) * (size_t)(kp * c->value_dim + 1));
    double *score = malloc(sizeof(double) * (size_t)(kp + 1));
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t hk = 0; hk < c->heads_k; hk++) {
            double vmax = 0, kmax = 0;
            for (int64_t r = 0; r < kp; r++) {
                int64_t ri[1] = {r};
                for (int64_t d = 0; d < c->dim; d++) {
                    double sum = c->has_be ? fz_get(&c->be, ri) : 0;
                    for (int64_t j = 0; j < c->seq_k; j++) {
                        int64_t ei[2] = {r, j}, ki[4] = {b, hk, j, d};
                        sum += fz_get(&c->e, ei) * fz_get(&c->k, ki);
                    }
                    keys[r * c->dim + d] = sum;
                    if (fabs(sum) > kmax) kmax = fabs(sum);
                }
                for (int64_t d = 0; d < c->value_dim; d++) {
                    double sum = c->has_bf ? fz_get(&c->bf, ri) : 0;
                    for (int64_t j = 0; j < c->seq_k; j++) {
                        int64_t fi[2] = {r, j}, vi[4] = {b, hk, j, d};
                        sum += fz_get(&c->f, fi) * fz_get(&c->v, vi);
                    }
                    values[r * c->value_dim + d] = sum;
                    if (fabs(sum) > vmax) vmax = fabs(sum);
                }
            }
            /* Error in the projections (sums of seq_k products) and in the scores, times the values' size. */
            double reach = (1 + fz_max_abs(&c->e) * fz_max_abs(&c->k) * (double)c->seq_k);
            double smax = fabs(scale) * fz_max_abs(&c->q) * (kmax + reach) * (double)c->dim;
            double tolerance = fz_tolerance(c->dtype) * (1 + vmax) +
                               16 * compute_eps(c->dtype) * (1 + smax + (double)c->seq_k) * (1 + vmax + reach);
            for (int64_t h = hk * group; h < (hk + 1) * group; h++)
                for (int64_t i = 0; i < c->seq_q; i++) {
                    for (int64_t r = 0; r < kp; r++) {
                        double dot = 0;
                        for (int64_t d = 0; d < c->dim; d++) {
                            int64_t qi[4] = {b, h, i, d};
                            dot += fz_get(&c->q, qi) * keys[r * c->dim + d];
                        }
                        score[r] = scale * dot;
                    }
                    fz_softmax(score, kp);
                    for (int64_t d = 0; d < c->value_dim; d++) {
                        double want = 0;
                        for (int64_t r = 0; r < kp; r++) want += score[r] * values[r * c->value_dim + d];
                        int64_t oi[4] = {b, h, i, d};
                        fz_expect_close(fz_get(&c->out, oi), want, tolerance, "linformer out");
                    }
                }
        }
    free(keys); free(values); free(score);
}

static void check_reference(const variant_call *c) {
    const attn_tensor *inputs[] = {&c->q, &c->k, &c->v, c->has_w ? &c->w : NULL, c->has_low_rank ? &c->u : NULL,
                                   (c->has_low_rank || c->entry == LINFORMER) ? &c->f : NULL,
                                   c->entry == LINFORMER ? &c->e : NULL, c->has_be ? &c->be : NULL, c->has_bf ? &c->bf : NULL};
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++)
        if (inputs[i] && !fz_all_finite(inputs[i])) return;
    if (c->entry == SPARSE) check_sparse(c);
    else if (c->entry == AFT) check_aft(c);
    else check_linformer(c);
}

static const variant_call *described;

static void describe(void) {
    const variant_call *c = described;
    static const char *names[] = {"sparse_topk", "aft", "linformer"};
    fprintf(stderr, "  %s: dtype %d B %lld Hq %lld Hk %lld Sq %lld Sk %lld D %lld Dv %lld; top_k %lld mask %d; "
                    "aft variant %d causal %d outside %d context %lld w %d low rank %d; kp %lld\n",
            names[c->entry], c->dtype, (long long)c->batch, (long long)c->heads_q, (long long)c->heads_k,
            (long long)c->seq_q, (long long)c->seq_k, (long long)c->dim, (long long)c->value_dim,
            (long long)c->sparse.top_k, c->has_mask, c->aft.variant, c->aft.causal, c->aft.outside,
            (long long)c->aft.local_context, c->has_w, c->has_low_rank, (long long)c->projected);
}

static attn_status call_variant(variant_call *c) {
    if (c->entry == SPARSE)
        return attn_sparse_topk_forward(&c->sparse, &c->q, &c->k, &c->v, c->has_mask ? &c->mask : NULL, &c->out);
    if (c->entry == AFT)
        return attn_aft_forward(&c->aft, &c->q, &c->k, &c->v, c->has_w ? &c->w : NULL, c->has_low_rank ? &c->u : NULL,
                                c->has_low_rank ? &c->f : NULL, &c->out);
    return attn_linformer_forward(&c->linformer, &c->q, &c->k, &c->v, &c->e, c->has_be ? &c->be : NULL, &c->f,
                                  c->has_bf ? &c->bf : NULL, &c->out);
}

/* q, k, v, out and the entry's own operands; returns nothing, sets c. */
static void make_call(fz_input *in, variant_call *c, int specials) {
    attn_dtype dtype = c->dtype;
    if (c->entry == AFT) {
        int64_t shape[3] = {c->batch, c->seq_q, c->dim};
        c->seq_k = c->seq_q;
        fz_make(in, &c->q, "q", dtype, 3, shape, 0, specials);
        fz_make(in, &c->k, "k", dtype, 3, shape, 0, specials);
        fz_make(in, &c->v, "v", dtype, 3, shape, 0, specials);
        fz_make(in, &c->out, "out", dtype, 3, shape, 1, 0);
        c->aft.struct_size = sizeof c->aft;
        c->aft.variant = (int32_t)fz_pick(in, 3);
        c->aft.causal = fz_chance(in, 40);
        if (c->aft.variant == ATTN_AFT_LOCAL) {
            c->aft.outside = fz_chance(in, 50) ? ATTN_AFT_OUTSIDE_ZERO_BIAS : ATTN_AFT_OUTSIDE_EXCLUDE;
            c->aft.local_context = 1 + fz_pick(in, 9);
        }
        if (c->aft.variant != ATTN_AFT_SIMPLE) {
            c->has_low_rank = fz_chance(in, 40);
            c->has_w = !c->has_low_rank;
            if (c->has_w) {
                int64_t ws[2] = {c->seq_q + fz_pick(in, 3), c->seq_q + fz_pick(in, 3)};
                fz_make(in, &c->w, "w_bias", dtype, 2, ws, 0, specials);
            } else {
                c->rank = 1 + fz_pick(in, 4);
                int64_t us[2] = {c->seq_q + fz_pick(in, 3), c->rank}, fs[2] = {c->seq_q + fz_pick(in, 3), c->rank};
                fz_make(in, &c->u, "w_u", dtype, 2, us, 0, specials);
                fz_make(in, &c->f, "w_v", dtype, 2, fs, 0, specials);
            }
        }
        return;
    }
    int64_t qs[4] = {c->batch, c->heads_q, c->seq_q, c->dim}, ks[4] = {c->batch, c->heads_k, c->seq_k, c->dim};
    int64_t vs[4] = {c->batch, c->heads_k, c->seq_k, c->value_dim}, os[4] = {c->batch, c->heads_q, c->seq_q, c->value_dim};
    fz_make(in, &c->q, "q", dtype, 4, qs, 0, specials);
    fz_make(in, &c->k, "k", dtype, 4, ks, 0, specials);
    fz_make(in, &c->v, "v", dtype, 4, vs, 0, specials);
    fz_make(in, &c->out, "out", dtype, 4, os, 1, 0);
    if (c->entry == SPARSE) {
        c->sparse.struct_size = sizeof c->sparse;
        c->sparse.mask_mode = fz_chance(in, 40) ? ATTN_MASK_CAUSAL_TOP_LEFT : ATTN_MASK_NONE;
        c->sparse.top_k = c->seq_k > 0 ? 1 + (int64_t)fz_pick(in, (unsigned)c->seq_k) : 1;
        if (fz_chance(in, 20)) { c->sparse.has_scale = 1; c->sparse.softmax_scale = (double)fz_pick(in, 9) / 4 - 1; }
        c->has_mask = fz_chance(in, 50);
        if (c->has_mask) {
            int64_t ms[2] = {c->batch, c->seq_k};
            fz_make(in, &c->mask, "key_mask", fz_chance(in, 50) ? ATTN_DTYPE_BOOL : ATTN_DTYPE_U8, 2, ms, 0, 0);
            uint64_t salt = fz_byte(in);
            FZ_FILL(&c->mask, (double)((index[0] * 3 + index[1] + salt) % 3 != 0 ? 1 + salt % 5 : 0));
        }
        return;
    }
    c->linformer.struct_size = sizeof c->linformer;
    if (fz_chance(in, 20)) { c->linformer.has_scale = 1; c->linformer.softmax_scale = (double)fz_pick(in, 9) / 4 - 1; }
    c->projected = 1 + fz_pick(in, 9);
    c->max_len = c->seq_k + fz_pick(in, 4);
    int64_t ps[2] = {c->projected, c->max_len}, bs[1] = {c->projected};
    fz_make(in, &c->e, "proj_e", dtype, 2, ps, 0, specials);
    fz_make(in, &c->f, "proj_f", dtype, 2, ps, 0, specials);
    c->has_be = fz_chance(in, 50);
    c->has_bf = fz_chance(in, 50);
    if (c->has_be) fz_make(in, &c->be, "bias_e", dtype, 1, bs, 0, specials);
    if (c->has_bf) fz_make(in, &c->bf, "bias_f", dtype, 1, bs, 0, specials);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_input in = {data, size, 0, size};
    for (size_t i = 0; i < size && i < 64; i++) in.fill_state = in.fill_state * 131 + data[i];
    static variant_call c;
    memset(&c, 0, sizeof c);
    fz_broken = "";
    fz_no_reference = 0;
    described = &c;
    fz_describe = describe;

    c.entry = (int)fz_pick(&in, 3);
    c.dtype = fz_float_dtypes[fz_pick(&in, 4)];
    c.batch = fz_pick(&in, 3) + (fz_chance(&in, 90) ? 1 : 0);
    c.heads_k = 1 + fz_pick(&in, 2);
    c.heads_q = c.heads_k * (1 + fz_pick(&in, 2));
    c.seq_q = fz_length(&in);
    c.seq_k = fz_length(&in);
    c.dim = fz_head_dim(&in);
    c.value_dim = fz_head_dim(&in);
    if (c.entry == SPARSE && c.seq_k == 0) c.seq_k = 1;   /* top_k >= 1 needs a key */
    make_call(&in, &c, fz_chance(&in, 20));

    int must_reject = 0;
    switch (fz_chance(&in, 25) ? fz_pick(&in, 7) : 99) {
    case 0: fz_corrupt_tensor(&in, &c.q); must_reject = 1; break;
    case 1: fz_corrupt_tensor(&in, &c.v); must_reject = 1; break;
    case 2: fz_corrupt_tensor(&in, &c.out); must_reject = 1; break;
    case 3:
        c.sparse.struct_size = c.aft.struct_size = c.linformer.struct_size = fz_chance(&in, 50) ? 4097 : 3;
        fz_broken = "struct_size"; must_reject = 1; break;
    case 4:
        if (c.entry == SPARSE) { c.sparse.top_k = fz_chance(&in, 50) ? 0 : c.seq_k + 1; fz_broken = "top_k"; }
        else if (c.entry == AFT) { c.aft.variant = 3 + (int32_t)fz_pick(&in, 5); fz_broken = "variant"; }
        else { c.linformer.has_scale = 1; c.linformer.softmax_scale = NAN; fz_broken = "softmax_scale"; }
        must_reject = 1; break;
    case 5:
        if (c.entry == LINFORMER) { fz_corrupt_tensor(&in, &c.e); must_reject = 1; }
        /* (an empty w_bias with a huge extent would still be a valid empty tensor) */
        else if (c.entry == AFT && c.has_w && c.w.shape[0] > 0 && c.w.shape[1] > 0) { fz_corrupt_tensor(&in, &c.w); must_reject = 1; }
        else if (c.entry == AFT && c.aft.variant == ATTN_AFT_SIMPLE) { c.aft.causal = 2; fz_broken = "causal"; must_reject = 1; }
        else if (c.entry == SPARSE) { c.sparse.mask_mode = 2 + (int32_t)fz_pick(&in, 5); fz_broken = "mask_mode"; must_reject = 1; }
        break;
    case 6:
        if (c.entry == AFT && c.aft.variant == ATTN_AFT_LOCAL) { c.aft.local_context = -(int64_t)fz_pick(&in, 3); fz_broken = "local_context"; must_reject = 1; }
        else if (c.entry == LINFORMER && c.seq_k > 0) { c.e.shape[1] = c.seq_k - 1; fz_broken = "proj_e S_max"; must_reject = 1; }
        break;
    }
    FZ_RUN(&in, must_reject, call_variant(&c), check_reference(&c));
    fz_release_all();
    return 0;
}
