/* libFuzzer harness: attn_sdpa_forward (torch's scaled_dot_product_attention).
 * The input decides the rank (2 to 5), batch dims, heads (GQA), lengths, head
 * dims, dtype, layouts, the mask (none, bool, u8 or additive, broadcast over
 * any dims), causal, scale, dropout and thread counts; now and then it breaks
 * one rule on purpose. */
#include "fuzz_common.h"

typedef struct {
    attn_sdpa_params params;
    int rank;
    int64_t heads_q, heads_k, seq_q, seq_k, dim, value_dim;
    attn_tensor q, k, v, mask, out;
    int has_mask;
} sdpa_call;

/* mask[index] for the full index (N..., Hq, L, S), with broadcasting. */
static double mask_at(const sdpa_call *c, const int64_t *full) {
    int64_t index[ATTN_MAX_RANK];
    int skip = c->rank - c->mask.rank;
    for (int a = 0; a < c->mask.rank; a++) index[a] = c->mask.shape[a] == 1 ? 0 : full[a + skip];
    return fz_get(&c->mask, index);
}

static void check_reference(const sdpa_call *c) {
    if (c->params.dropout_p != 0) return;
    if (!fz_all_finite(&c->q) || !fz_all_finite(&c->k) || !fz_all_finite(&c->v)) return;
    int keep_mask = c->has_mask && !fz_is_float(c->mask.dtype);
    if (c->has_mask && !keep_mask && !fz_all_finite(&c->mask)) {
        /* -inf entries are fine (excluded keys); NaN would make rows NaN: skip those inputs. */
        int64_t index[ATTN_MAX_RANK] = {0};
        do if (isnan(fz_get(&c->mask, index)) || fz_get(&c->mask, index) == INFINITY) return;
        while (fz_advance(&c->mask, index));
    }
    double scale = c->params.has_scale ? c->params.scale : 1.0 / sqrt((double)c->dim);
    double tolerance = fz_tolerance(c->q.dtype) * (1 + fz_max_abs(&c->v)) * (1 + fabs(scale) * c->dim);
    int64_t group = c->heads_q / c->heads_k;
    int r = c->rank;
    double *scores = malloc(sizeof(double) * (size_t)(c->seq_k + 1));
    /* Walk every output row: out's index without its last axis. */
    int64_t row[ATTN_MAX_RANK] = {0};
    if (fz_elements(&c->out) == 0) { free(scores); return; }
    do {
        if (row[r - 1] != 0) continue;
        int64_t i = row[r - 2];
        int64_t h = r >= 3 ? row[r - 3] : 0;
        int64_t full[ATTN_MAX_RANK], qi[ATTN_MAX_RANK], ki[ATTN_MAX_RANK];
        memcpy(full, row, sizeof full);
        memcpy(qi, row, sizeof qi);
        memcpy(ki, row, sizeof ki);
        if (r >= 3) ki[r - 3] = h / group;
        for (int64_t j = 0; j < c->seq_k; j++) {
            full[r - 1] = j;
            double bias = 0;
            if (c->params.is_causal && j > i) { scores[j] = -INFINITY; continue; }
            if (c->has_mask) {
                double m = mask_at(c, full);
                if (keep_mask) { if (m == 0) { scores[j] = -INFINITY; continue; } }
                else bias = m;
            }
            ki[r - 2] = j;
            double dot = 0;
            for (int64_t d = 0; d < c->dim; d++) {
                qi[r - 1] = d; ki[r - 1] = d;
                dot += fz_get(&c->q, qi) * fz_get(&c->k, ki);
            }
            scores[j] = scale * dot + bias;
        }
        fz_softmax(scores, c->seq_k);
        for (int64_t e = 0; e < c->value_dim; e++) {
            double want = 0;
            for (int64_t j = 0; j < c->seq_k; j++) {
                if (scores[j] == 0) continue;
                ki[r - 2] = j; ki[r - 1] = e;
                want += scores[j] * fz_get(&c->v, ki);
            }
            int64_t oi[ATTN_MAX_RANK];
            memcpy(oi, row, sizeof oi);
            oi[r - 1] = e;
            fz_expect_close(fz_get(&c->out, oi), want, tolerance, "out");
        }
    } while (fz_advance(&c->out, row));
    free(scores);
}

static attn_status call_sdpa(sdpa_call *c) {
    return attn_sdpa_forward(&c->params, &c->q, &c->k, &c->v, c->has_mask ? &c->mask : NULL, &c->out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_input in = {data, size, 0, size};
    for (size_t i = 0; i < size && i < 64; i++) in.fill_state = in.fill_state * 131 + data[i];
    static sdpa_call c;
    memset(&c, 0, sizeof c);
    fz_broken = "";
    fz_no_reference = 0;

    attn_dtype dtype = fz_float_dtypes[fz_pick(&in, 4)];
    int r = c.rank = 2 + (int)fz_pick(&in, 4);
    c.params.struct_size = sizeof c.params;
    c.params.enable_gqa = fz_chance(&in, 40);
    c.heads_k = r >= 3 ? 1 + fz_pick(&in, 2) : 1;
    c.heads_q = r >= 3 && c.params.enable_gqa ? c.heads_k * (1 + fz_pick(&in, 3)) : c.heads_k;
    c.seq_q = fz_length(&in);
    c.seq_k = fz_length(&in);
    c.dim = fz_head_dim(&in);
    c.value_dim = fz_chance(&in, 80) ? c.dim : fz_head_dim(&in);
    int64_t qs[ATTN_MAX_RANK], ks[ATTN_MAX_RANK], vs[ATTN_MAX_RANK], os[ATTN_MAX_RANK];
    for (int a = 0; a < r - 3; a++) qs[a] = ks[a] = vs[a] = os[a] = fz_pick(&in, 3) + (fz_chance(&in, 90) ? 1 : 0);
    if (r >= 3) { qs[r - 3] = os[r - 3] = c.heads_q; ks[r - 3] = vs[r - 3] = c.heads_k; }
    qs[r - 2] = os[r - 2] = c.seq_q;
    ks[r - 2] = vs[r - 2] = c.seq_k;
    qs[r - 1] = ks[r - 1] = c.dim;
    vs[r - 1] = os[r - 1] = c.value_dim;
    int specials = fz_chance(&in, 20);
    fz_make(&in, &c.q, "query", dtype, r, qs, 0, specials);
    fz_make(&in, &c.k, "key", dtype, r, ks, 0, specials);
    fz_make(&in, &c.v, "value", dtype, r, vs, 0, specials);
    fz_make(&in, &c.out, "out", dtype, r, os, 1, 0);
    c.has_mask = fz_chance(&in, 50);
    if (c.has_mask) {
        /* Broadcastable to (N..., Hq, L, S): trailing dims, any of them 1. */
        int mask_rank = 1 + (int)fz_pick(&in, (unsigned)r);
        int64_t shape[ATTN_MAX_RANK];
        for (int a = 0; a < mask_rank; a++) {
            int64_t full = a + r - mask_rank == r - 1 ? c.seq_k : qs[a + r - mask_rank];
            shape[a] = fz_chance(&in, 30) ? 1 : full;
        }
        static const attn_dtype kinds[] = {ATTN_DTYPE_BOOL, ATTN_DTYPE_U8, 0};
        attn_dtype mask_dtype = kinds[fz_pick(&in, 3)];
        if (!mask_dtype) mask_dtype = dtype;
        fz_make(&in, &c.mask, "attn_mask", mask_dtype, mask_rank, shape, 0, 0);
        uint64_t salt = fz_byte(&in);
        if (fz_is_float(mask_dtype)) {
            FZ_FILL(&c.mask, ((index[0] * 7 + index[mask_rank - 1] * 3 + salt) % 11 == 0) ? -INFINITY
                             : (double)((int)((index[mask_rank - 1] + salt) % 9) - 4) / 4.0);
        } else {
            FZ_FILL(&c.mask, (double)((index[mask_rank - 1] * 5 + index[0] + salt) % 4 != 0 ? 1 + salt % 3 : 0));
        }
    }
    c.params.is_causal = fz_chance(&in, 40);
    c.params.has_scale = fz_chance(&in, 30);
    c.params.scale = c.params.has_scale ? (double)((int)fz_pick(&in, 17) - 8) / 8.0 : 0;
    c.params.dropout_p = fz_chance(&in, 15) ? (double)fz_pick(&in, 5) / 4.0 : 0;
    c.params.seed = fz_byte(&in);

    int must_reject = 0;
    switch (fz_chance(&in, 25) ? fz_pick(&in, 8) : 99) {
    case 0: fz_corrupt_tensor(&in, &c.q); must_reject = 1; break;
    case 1: fz_corrupt_tensor(&in, &c.k); must_reject = 1; break;
    case 2: fz_corrupt_tensor(&in, &c.out); must_reject = 1; break;
    case 3: c.params.struct_size = fz_chance(&in, 50) ? 4097 : 3; fz_broken = "struct_size"; must_reject = 1; break;
    case 4: c.params.dropout_p = fz_chance(&in, 50) ? 1.5 : NAN; fz_broken = "dropout_p"; must_reject = 1; break;
    case 5: c.params.has_scale = 1; c.params.scale = NAN; fz_broken = "scale"; must_reject = 1; break;
    case 6: c.params.is_causal = 2; fz_broken = "is_causal"; must_reject = 1; break;
    case 7:
        if (c.has_mask) {
            c.mask.shape[c.mask.rank - 1] = c.seq_k + 2; fz_broken = "mask not broadcastable"; must_reject = 1;
        }
        break;
    }
    if (!must_reject && r >= 4 && fz_chance(&in, 8)) {
        /* Huge but empty: 2^20..2^40 batches, no query rows. */
        int64_t huge = fz_huge(&in);
        fz_no_reference = 1;
        fz_give_data_to_all();
        c.q.shape[0] = c.k.shape[0] = c.v.shape[0] = c.out.shape[0] = huge;
        c.q.shape[r - 2] = c.out.shape[r - 2] = 0;
        if (c.has_mask && c.mask.rank == r && c.mask.shape[0] != 1) c.mask.shape[0] = huge;
        if (c.has_mask && c.mask.rank >= 2 && c.mask.shape[c.mask.rank - 2] != 1) c.mask.shape[c.mask.rank - 2] = 0;
        c.seq_q = 0;
    }
    FZ_RUN(&in, must_reject, call_sdpa(&c), check_reference(&c));
    fz_release_all();
    return 0;
}
