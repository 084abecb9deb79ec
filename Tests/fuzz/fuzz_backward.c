/* libFuzzer harness: attn_flash_backward and attn_flash_block_backward (fixed-length flash-attn layout). The
 * input decides the batch, lengths, heads (GQA), head dims, dtype, layouts of
 * every operand, causal, window, softcap, scale, ALiBi, dropout and thread
 * counts. A forward call writes out and lse first; then the backward must
 * succeed (or, with a rule broken on purpose, be rejected untouched), give the
 * same bits on another thread count, and, without dropout on finite input,
 * match dq, dk and dv computed here in fp64 from q, k, v and dout alone. */
#include "fuzz_common.h"

typedef struct {
    attn_flash_params params;
    int64_t batch, seq_q, seq_k, heads_q, heads_k, dim, value_dim;
    attn_tensor dout, q, k, v, out, lse, slopes, dq, dk, dv;
    int has_slopes;
    int use_block;       /* attn_flash_block_forward/_backward with this diagonal */
    int64_t diagonal;
} backward_call;

static double slope_of(const backward_call *c, int64_t b, int64_t h) {
    if (!c->has_slopes) return 0;
    int64_t index[2] = {c->slopes.rank == 1 ? h : b, h};
    return fz_get(&c->slopes, index);
}

/* The fp64 gradients of one (batch, query head) row by row, added into dq/dk/dv arrays. */
static void check_reference(const backward_call *c) {
    if (c->params.dropout_p != 0) return;
    /* Ordinary values only (within [-2, 2]): the ±1024 specials make one-hot rows whose dS = P·(dP − Δ)
     * cancels to nothing in fp64 and to rounding noise in fp32. */
    if (fz_max_abs(&c->q) > 2 || fz_max_abs(&c->k) > 2 || fz_max_abs(&c->v) > 2 || fz_max_abs(&c->dout) > 2) return;
    if (!fz_all_finite(&c->q) || !fz_all_finite(&c->k) || !fz_all_finite(&c->v) || !fz_all_finite(&c->dout)) return;
    const attn_flash_params *p = &c->params;
    double scale = p->has_scale ? p->softmax_scale : 1.0 / sqrt((double)c->dim);
    int64_t group = c->heads_q / c->heads_k, sq = c->seq_q, sk = c->seq_k, D = c->dim, Dv = c->value_dim;
    size_t kv_rows = (size_t)(c->batch * sk * c->heads_k);
    double *dk = calloc(kv_rows * (size_t)D + 1, sizeof(double)), *dv = calloc(kv_rows * (size_t)Dv + 1, sizeof(double));
    double *dq = calloc((size_t)(c->batch * sq * c->heads_q * D) + 1, sizeof(double));
    double *scores = malloc(sizeof(double) * (size_t)(sk + 1)), *raw = malloc(sizeof(double) * (size_t)(sk + 1));
    double largest = 0;
    for (int64_t b = 0; b < c->batch; b++) {
        for (int64_t h = 0; h < c->heads_q; h++) {
            int64_t kh = h / group;
            for (int64_t i = 0; i < sq; i++) {
                int64_t diagonal = i + (c->use_block ? c->diagonal : sk - sq), right = p->causal ? 0 : p->window_right;
                for (int64_t j = 0; j < sk; j++) {
                    if ((p->window_left >= 0 && j < diagonal - p->window_left) || (right >= 0 && j > diagonal + right)) {
                        scores[j] = -INFINITY; continue;
                    }
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++) {
                        int64_t qi[4] = {b, i, h, d}, ki[4] = {b, j, kh, d};
                        dot += fz_get(&c->q, qi) * fz_get(&c->k, ki);
                    }
                    raw[j] = scale * dot;
                    double s = p->softcap > 0 ? p->softcap * tanh(raw[j] / p->softcap) : raw[j];
                    scores[j] = s - slope_of(c, b, h) * fabs((double)(diagonal - j));
                }
                fz_softmax(scores, sk);   /* P; all 0 for a row with no key */
                double delta = 0;
                for (int64_t e = 0; e < Dv; e++) {
                    int64_t oi[4] = {b, i, h, e};
                    double o = 0;
                    for (int64_t j = 0; j < sk; j++) {
                        int64_t vi[4] = {b, j, kh, e};
                        if (scores[j] != 0) o += scores[j] * fz_get(&c->v, vi);
                    }
                    delta += fz_get(&c->dout, oi) * o;
                }
                for (int64_t j = 0; j < sk; j++) {
                    if (scores[j] == 0) continue;
                    double dp = 0;
                    for (int64_t e = 0; e < Dv; e++) {
                        int64_t oi[4] = {b, i, h, e}, vi[4] = {b, j, kh, e};
                        double g = fz_get(&c->dout, oi);
                        dp += g * fz_get(&c->v, vi);
                        dv[((size_t)(b * sk + j) * (size_t)c->heads_k + (size_t)kh) * (size_t)Dv + (size_t)e] += scores[j] * g;
                    }
                    double ds = scores[j] * (dp - delta) * scale;
                    if (p->softcap > 0) { double t = tanh(raw[j] / p->softcap); ds *= 1 - t * t; }
                    for (int64_t d = 0; d < D; d++) {
                        int64_t qi[4] = {b, i, h, d}, ki[4] = {b, j, kh, d};
                        dq[((size_t)(b * sq + i) * (size_t)c->heads_q + (size_t)h) * (size_t)D + (size_t)d] += ds * fz_get(&c->k, ki);
                        dk[((size_t)(b * sk + j) * (size_t)c->heads_k + (size_t)kh) * (size_t)D + (size_t)d] += ds * fz_get(&c->q, qi);
                    }
                }
            }
        }
    }
    for (size_t n = 0; n < kv_rows * (size_t)D; n++) largest = fmax(largest, fabs(dk[n]));
    for (size_t n = 0; n < kv_rows * (size_t)Dv; n++) largest = fmax(largest, fabs(dv[n]));
    for (size_t n = 0; n < (size_t)(c->batch * sq * c->heads_q * D); n++) largest = fmax(largest, fabs(dq[n]));
    /* fp32 sums (fp64 for f64) over up to 65 keys or rows, then the gradient's own rounding. */
    double tolerance = fz_tolerance(c->q.dtype) * 4 * (1 + largest) * (1 + fabs(scale) * (double)D);
    int64_t index[4] = {0};
    if (fz_elements(&c->dq) > 0) do
        fz_expect_close(fz_get(&c->dq, index), dq[((size_t)(index[0] * sq + index[1]) * (size_t)c->heads_q + (size_t)index[2]) * (size_t)D + (size_t)index[3]], tolerance, "dq");
    while (fz_advance(&c->dq, index));
    memset(index, 0, sizeof index);
    if (fz_elements(&c->dk) > 0) do
        fz_expect_close(fz_get(&c->dk, index), dk[((size_t)(index[0] * sk + index[1]) * (size_t)c->heads_k + (size_t)index[2]) * (size_t)D + (size_t)index[3]], tolerance, "dk");
    while (fz_advance(&c->dk, index));
    memset(index, 0, sizeof index);
    if (fz_elements(&c->dv) > 0) do
        fz_expect_close(fz_get(&c->dv, index), dv[((size_t)(index[0] * sk + index[1]) * (size_t)c->heads_k + (size_t)index[2]) * (size_t)Dv + (size_t)index[3]], tolerance, "dv");
    while (fz_advance(&c->dv, index));
    free(dk); free(dv); free(dq); free(scores); free(raw);
}

static backward_call *described;
static void describe(void) {
    const attn_flash_params *p = &described->params;
    fprintf(stderr, "  params: causal %d has_scale %d scale %g window (%lld, %lld) softcap %g dropout %g seed %llu "
                    "slopes %d\n", p->causal, p->has_scale, p->softmax_scale, (long long)p->window_left,
            (long long)p->window_right, p->softcap, p->dropout_p, (unsigned long long)p->seed, described->has_slopes);
    if (described->use_block) fprintf(stderr, "  attn_flash_block_backward, diagonal %lld\n", (long long)described->diagonal);
}

static attn_status call_backward(backward_call *c) {
    if (c->use_block)
        return attn_flash_block_backward(&c->params, c->diagonal, &c->dout, &c->q, &c->k, &c->v,
                                         c->has_slopes ? &c->slopes : NULL, &c->out, &c->lse, &c->dq, &c->dk, &c->dv);
    return attn_flash_backward(&c->params, &c->dout, &c->q, &c->k, &c->v, c->has_slopes ? &c->slopes : NULL, &c->out,
                               &c->lse, &c->dq, &c->dk, &c->dv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_input in = {data, size, 0, size};
    for (size_t i = 0; i < size && i < 64; i++) in.fill_state = in.fill_state * 131 + data[i];
    static backward_call c;
    memset(&c, 0, sizeof c);
    described = &c;
    fz_describe = describe;
    fz_broken = "";
    fz_no_reference = 0;

    attn_dtype dtype = fz_float_dtypes[fz_pick(&in, 4)];
    c.batch = 1 + fz_pick(&in, 2);
    c.heads_k = 1 + fz_pick(&in, 2);
    c.heads_q = c.heads_k * (1 + fz_pick(&in, 3));
    c.dim = fz_head_dim(&in);
    c.value_dim = fz_chance(&in, 80) ? c.dim : fz_head_dim(&in);
    c.seq_q = fz_length(&in);
    c.seq_k = fz_length(&in);
    int64_t q_shape[4] = {c.batch, c.seq_q, c.heads_q, c.dim}, k_shape[4] = {c.batch, c.seq_k, c.heads_k, c.dim};
    int64_t v_shape[4] = {c.batch, c.seq_k, c.heads_k, c.value_dim}, o_shape[4] = {c.batch, c.seq_q, c.heads_q, c.value_dim};
    int64_t lse_shape[3] = {c.batch, c.heads_q, c.seq_q};
    int specials = fz_chance(&in, 15);
    fz_make(&in, &c.dout, "dout", dtype, 4, o_shape, 0, specials);
    fz_make(&in, &c.q, "q", dtype, 4, q_shape, 0, specials);
    fz_make(&in, &c.k, "k", dtype, 4, k_shape, 0, specials);
    fz_make(&in, &c.v, "v", dtype, 4, v_shape, 0, specials);
    /* out and lse: inputs of the backward, written by the forward below. */
    fz_no_broadcast = 1;
    fz_make(&in, &c.out, "out", dtype, 4, o_shape, 0, 0);
    fz_make(&in, &c.lse, "softmax_lse", ATTN_DTYPE_F32, 3, lse_shape, 0, 0);
    fz_no_broadcast = 0;
    fz_make(&in, &c.dq, "dq", dtype, 4, q_shape, 1, 0);
    fz_make(&in, &c.dk, "dk", dtype, 4, k_shape, 1, 0);
    fz_make(&in, &c.dv, "dv", dtype, 4, v_shape, 1, 0);
    c.has_slopes = fz_chance(&in, 25);
    if (c.has_slopes) {
        int per_batch = fz_chance(&in, 50);
        int64_t shape[2] = {per_batch ? c.batch : c.heads_q, c.heads_q};
        fz_make(&in, &c.slopes, "alibi_slopes", ATTN_DTYPE_F32, per_batch ? 2 : 1, per_batch ? shape : shape + 1, 0, 0);
        FZ_FILL(&c.slopes, (double)(index[0] + index[1] + 1) / 16.0);
    }
    attn_flash_params *p = &c.params;
    p->struct_size = sizeof *p;
    p->causal = fz_chance(&in, 40);
    p->has_scale = fz_chance(&in, 30);
    p->softmax_scale = p->has_scale ? (double)((int)fz_pick(&in, 17) - 8) / 8.0 : 0;
    p->window_left = fz_chance(&in, 25) ? (int64_t)fz_pick(&in, 20) : -1;
    p->window_right = fz_chance(&in, 25) ? (int64_t)fz_pick(&in, 20) : -1;
    p->softcap = fz_chance(&in, 20) ? 0.5 + fz_pick(&in, 40) : 0;
    p->dropout_p = fz_chance(&in, 15) ? (double)fz_pick(&in, 4) / 4.0 : 0;
    p->seed = fz_byte(&in);
    c.use_block = fz_chance(&in, 30);
    if (c.use_block) c.diagonal = (int64_t)fz_pick(&in, 81) - 40;
    /* The forward the backward differentiates (its inputs are the harness's, so it must succeed). */
    attn_status forward = c.use_block
        ? attn_flash_block_forward(p, c.diagonal, &c.q, &c.k, &c.v, c.has_slopes ? &c.slopes : NULL, &c.out, &c.lse)
        : attn_flash_forward(p, &c.q, &c.k, &c.v, c.has_slopes ? &c.slopes : NULL, &c.out, &c.lse);
    if (forward != ATTN_OK) {
        fz_fail("forward", attn_last_error());
    }

    int must_reject = 0;
    switch (fz_chance(&in, 25) ? fz_pick(&in, 10) : 99) {
    case 0: fz_corrupt_tensor(&in, &c.dout); must_reject = 1; break;
    case 1: fz_corrupt_tensor(&in, &c.dq); must_reject = 1; break;
    case 2: fz_corrupt_tensor(&in, &c.dk); must_reject = 1; break;
    case 3: fz_corrupt_tensor(&in, &c.lse); must_reject = 1; break;
    case 4: p->struct_size = fz_chance(&in, 50) ? 4097 : 3; fz_broken = "struct_size"; must_reject = 1; break;
    case 5: p->int8_qk = 1; fz_broken = "int8_qk"; must_reject = 1; break;
    case 6: p->dropout_p = fz_chance(&in, 50) ? -0.25 : NAN; fz_broken = "dropout_p"; must_reject = 1; break;
    case 7: c.dv.dtype = dtype == ATTN_DTYPE_F32 ? ATTN_DTYPE_F64 : ATTN_DTYPE_F32; fz_broken = "dv dtype"; must_reject = 1; break;
    case 8:
        if (c.dk.rank == 4) { c.dk.shape[1] += 1; fz_broken = "dk shape"; must_reject = 1; }
        break;
    case 9:
        if (c.use_block) { c.diagonal = -(((int64_t)1 << 30) + 1); fz_broken = "diagonal"; must_reject = 1; }
        break;
    }
    FZ_RUN(&in, must_reject, call_backward(&c), check_reference(&c));
    fz_release_all();
    return 0;
}
