/* libFuzzer harness: attn_eager_forward (the seed API: [B, S, H*D] tensors, a
 * key mask, top-left causal, optional attention weights) and attn_eager_backward
 * (dq, dk, dv from an optional dout and an optional dweights) against fp64. */
#include "fuzz_common.h"

typedef struct {
    attn_eager_params params;
    int64_t batch, seq_q, seq_k, heads, dim;
    attn_tensor q, k, v, mask, out, weights;
    int has_mask, has_weights;
    int backward, has_dout, has_dweights;
    attn_tensor dout, dweights, dq, dk, dv;
} eager_call;

/* Row i of (b, h)'s probabilities into scores[0..seq_k), as the forward defines them. */
static void probabilities(const eager_call *c, int64_t b, int64_t h, int64_t i, double *scores) {
    double scale = 1.0 / sqrt((double)c->dim);
    for (int64_t j = 0; j < c->seq_k; j++) {
        int64_t mi[2] = {b, j};
        if ((c->params.mask_mode == ATTN_MASK_CAUSAL_TOP_LEFT && j > i) || (c->has_mask && fz_get(&c->mask, mi) == 0)) {
            scores[j] = -INFINITY;
            continue;
        }
        double dot = 0;
        for (int64_t d = 0; d < c->dim; d++) {
            int64_t qi[3] = {b, i, h * c->dim + d}, ki[3] = {b, j, h * c->dim + d};
            dot += fz_get(&c->q, qi) * fz_get(&c->k, ki);
        }
        scores[j] = scale * dot;
    }
    fz_softmax(scores, c->seq_k);
}

/* dq, dk, dv by the chain rule in fp64: dS = P * (dP - rowsum(P * dP)), dP = dout.v^T + dweights. */
static void check_backward(const eager_call *c) {
    if (!fz_all_finite(&c->q) || !fz_all_finite(&c->k) || !fz_all_finite(&c->v)) return;
    if ((c->has_dout && !fz_all_finite(&c->dout)) || (c->has_dweights && !fz_all_finite(&c->dweights))) return;
    int64_t width = c->heads * c->dim;
    double scale = 1.0 / sqrt((double)c->dim);
    size_t nq = (size_t)(c->batch * c->seq_q * width), nk = (size_t)(c->batch * c->seq_k * width);
    double *dq = calloc(nq + 1, sizeof(double)), *dk = calloc(nk + 1, sizeof(double)), *dv = calloc(nk + 1, sizeof(double));
    double *p = malloc(sizeof(double) * (size_t)(c->seq_k + 1)), *dp = malloc(sizeof(double) * (size_t)(c->seq_k + 1));
    double largest = 1;   /* the gradient's scale: |dout| * |v| + |dweights|, times |q| or |k| */
    largest += (c->has_dout ? fz_max_abs(&c->dout) * (1 + fz_max_abs(&c->v)) : 0) + (c->has_dweights ? fz_max_abs(&c->dweights) : 0);
    largest *= 1 + fz_max_abs(&c->q) + fz_max_abs(&c->k) + (c->has_dout ? fz_max_abs(&c->dout) : 0);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->heads; h++)
            for (int64_t i = 0; i < c->seq_q; i++) {
                probabilities(c, b, h, i, p);
                double row = 0;
                for (int64_t j = 0; j < c->seq_k; j++) {
                    dp[j] = 0;
                    if (p[j] == 0) continue;
                    for (int64_t d = 0; d < c->dim && c->has_dout; d++) {
                        int64_t oi[3] = {b, i, h * c->dim + d}, vi[3] = {b, j, h * c->dim + d};
                        dp[j] += fz_get(&c->dout, oi) * fz_get(&c->v, vi);
                    }
                    int64_t wi[4] = {b, h, i, j};
                    if (c->has_dweights) dp[j] += fz_get(&c->dweights, wi);
                    row += p[j] * dp[j];
                }
                for (int64_t j = 0; j < c->seq_k; j++) {
                    if (p[j] == 0) continue;
                    double ds = p[j] * (dp[j] - row);
                    for (int64_t d = 0; d < c->dim; d++) {
                        size_t at_q = (size_t)((b * c->seq_q + i) * width + h * c->dim + d);
                        size_t at_k = (size_t)((b * c->seq_k + j) * width + h * c->dim + d);
                        int64_t qi[3] = {b, i, h * c->dim + d}, ki[3] = {b, j, h * c->dim + d};
                        dq[at_q] += scale * ds * fz_get(&c->k, ki);
                        dk[at_k] += scale * ds * fz_get(&c->q, qi);
                        if (c->has_dout) dv[at_k] += p[j] * fz_get(&c->dout, qi);
                    }
                }
            }
    double tolerance = fz_tolerance(c->q.dtype) * 4 * largest * (1 + scale * c->dim);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t col = 0; col < width; col++) {
            for (int64_t i = 0; i < c->seq_q; i++) {
                int64_t index[3] = {b, i, col};
                fz_expect_close(fz_get(&c->dq, index), dq[(b * c->seq_q + i) * width + col], tolerance, "dq");
            }
            for (int64_t j = 0; j < c->seq_k; j++) {
                int64_t index[3] = {b, j, col};
                fz_expect_close(fz_get(&c->dk, index), dk[(b * c->seq_k + j) * width + col], tolerance, "dk");
                fz_expect_close(fz_get(&c->dv, index), dv[(b * c->seq_k + j) * width + col], tolerance, "dv");
            }
        }
    free(dq); free(dk); free(dv); free(p); free(dp);
}

static void check_reference(const eager_call *c) {
    if (c->backward) { check_backward(c); return; }
    if (!fz_all_finite(&c->q) || !fz_all_finite(&c->k) || !fz_all_finite(&c->v)) return;
    double scale = 1.0 / sqrt((double)c->dim);
    double tolerance = fz_tolerance(c->q.dtype) * (1 + fz_max_abs(&c->v)) * (1 + scale * c->dim);
    double *scores = malloc(sizeof(double) * (size_t)(c->seq_k + 1));
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->heads; h++)
            for (int64_t i = 0; i < c->seq_q; i++) {
                probabilities(c, b, h, i, scores);
                for (int64_t d = 0; d < c->dim; d++) {
                    double want = 0;
                    for (int64_t j = 0; j < c->seq_k; j++) {
                        int64_t vi[3] = {b, j, h * c->dim + d};
                        if (scores[j] != 0) want += scores[j] * fz_get(&c->v, vi);
                    }
                    int64_t oi[3] = {b, i, h * c->dim + d};
                    fz_expect_close(fz_get(&c->out, oi), want, tolerance, "out");
                }
                if (c->has_weights)
                    for (int64_t j = 0; j < c->seq_k; j++) {
                        int64_t wi[4] = {b, h, i, j};
                        fz_expect_close(fz_get(&c->weights, wi), scores[j], tolerance, "weights");
                    }
            }
    free(scores);
}

static attn_status call_eager(eager_call *c) {
    if (c->backward)
        return attn_eager_backward(&c->params, c->has_dout ? &c->dout : NULL, c->has_dweights ? &c->dweights : NULL,
                                   &c->q, &c->k, &c->v, c->has_mask ? &c->mask : NULL, &c->dq, &c->dk, &c->dv);
    return attn_eager_forward(&c->params, &c->q, &c->k, &c->v, c->has_mask ? &c->mask : NULL, &c->out,
                              c->has_weights ? &c->weights : NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_input in = {data, size, 0, size};
    for (size_t i = 0; i < size && i < 64; i++) in.fill_state = in.fill_state * 131 + data[i];
    static eager_call c;
    memset(&c, 0, sizeof c);
    fz_broken = "";
    fz_no_reference = 0;

    attn_dtype dtype = fz_float_dtypes[fz_pick(&in, 4)];
    c.batch = fz_pick(&in, 3) + (fz_chance(&in, 90) ? 1 : 0);
    c.seq_q = fz_length(&in);
    c.seq_k = fz_length(&in);
    c.heads = 1 + fz_pick(&in, 3);
    c.dim = fz_head_dim(&in);
    int64_t qs[3] = {c.batch, c.seq_q, c.heads * c.dim}, ks[3] = {c.batch, c.seq_k, c.heads * c.dim};
    int specials = fz_chance(&in, 20);
    fz_make(&in, &c.q, "q", dtype, 3, qs, 0, specials);
    fz_make(&in, &c.k, "k", dtype, 3, ks, 0, specials);
    fz_make(&in, &c.v, "v", dtype, 3, ks, 0, specials);
    c.backward = fz_chance(&in, 35);
    if (c.backward) {
        int64_t ws[4] = {c.batch, c.heads, c.seq_q, c.seq_k};
        c.has_dout = fz_chance(&in, 75);
        c.has_dweights = !c.has_dout || fz_chance(&in, 50);
        if (c.has_dout) fz_make(&in, &c.dout, "dout", dtype, 3, qs, 0, specials);
        if (c.has_dweights) fz_make(&in, &c.dweights, "dweights", dtype, 4, ws, 0, specials);
        fz_make(&in, &c.dq, "dq", dtype, 3, qs, 1, 0);
        fz_make(&in, &c.dk, "dk", dtype, 3, ks, 1, 0);
        fz_make(&in, &c.dv, "dv", dtype, 3, ks, 1, 0);
    } else {
        fz_make(&in, &c.out, "out", dtype, 3, qs, 1, 0);
    }
    c.has_mask = fz_chance(&in, 50);
    if (c.has_mask) {
        int64_t ms[2] = {c.batch, c.seq_k};
        fz_make(&in, &c.mask, "key_mask", fz_chance(&in, 50) ? ATTN_DTYPE_BOOL : ATTN_DTYPE_U8, 2, ms, 0, 0);
        uint64_t salt = fz_byte(&in);
        FZ_FILL(&c.mask, (double)((index[0] * 3 + index[1] + salt) % 3 != 0 ? 1 + salt % 5 : 0));
    }
    c.has_weights = !c.backward && fz_chance(&in, 40);
    if (c.has_weights) {
        int64_t ws[4] = {c.batch, c.heads, c.seq_q, c.seq_k};
        fz_make(&in, &c.weights, "weights", dtype, 4, ws, 1, 0);
    }
    c.params.struct_size = sizeof c.params;
    c.params.mask_mode = fz_chance(&in, 40) ? ATTN_MASK_CAUSAL_TOP_LEFT : ATTN_MASK_NONE;
    c.params.num_heads = c.heads;
    c.params.head_dim = c.dim;

    attn_tensor *out = c.backward ? &c.dq : &c.out;   /* the output the cases below corrupt or empty */
    int must_reject = 0;
    switch (fz_chance(&in, 25) ? fz_pick(&in, 8) : 99) {
    case 0: fz_corrupt_tensor(&in, &c.q); must_reject = 1; break;
    case 1: fz_corrupt_tensor(&in, &c.v); must_reject = 1; break;
    case 2: fz_corrupt_tensor(&in, out); must_reject = 1; break;
    case 3: c.params.struct_size = fz_chance(&in, 50) ? 4097 : 3; fz_broken = "struct_size"; must_reject = 1; break;
    case 4: c.params.mask_mode = 2 + (int)fz_pick(&in, 5); fz_broken = "mask_mode"; must_reject = 1; break;
    case 5: c.params.num_heads = fz_chance(&in, 50) ? -c.heads : c.heads + 1; fz_broken = "num_heads"; must_reject = 1; break;
    case 6: c.params.head_dim = fz_chance(&in, 50) ? 0 : INT64_MAX; fz_broken = "head_dim"; must_reject = 1; break;
    case 7: if (c.has_mask) { c.mask.dtype = ATTN_DTYPE_F32; fz_broken = "key_mask dtype"; must_reject = 1; } break;
    }
    if (!must_reject && fz_chance(&in, 8)) {
        /* Huge but empty: 2^20..2^40 batches, no query rows. */
        int64_t huge = fz_huge(&in);
        fz_no_reference = 1;
        fz_give_data_to_all();
        c.q.shape[0] = c.k.shape[0] = c.v.shape[0] = out->shape[0] = huge;
        c.q.shape[1] = out->shape[1] = 0;
        if (c.backward) {
            c.dk.shape[0] = c.dv.shape[0] = huge;
            c.dk.shape[1] = c.dv.shape[1] = c.k.shape[1] = c.v.shape[1] = 0;
            if (c.has_dout) { c.dout.shape[0] = huge; c.dout.shape[1] = 0; }
            if (c.has_dweights) { c.dweights.shape[0] = huge; c.dweights.shape[2] = 0; c.dweights.shape[3] = 0; }
            if (c.has_mask) c.mask.shape[1] = 0;
        }
        if (c.has_mask) c.mask.shape[0] = huge;
        if (c.has_weights) { c.weights.shape[0] = huge; c.weights.shape[2] = 0; }
        c.batch = 0;   /* the reference has nothing to check */
    }
    FZ_RUN(&in, must_reject, call_eager(&c), check_reference(&c));
    fz_release_all();
    return 0;
}
