/* libFuzzer harness: attn_flash_kvcache_forward (decoding with a KV cache) and
 * attn_merge_attention_states. The input decides batch, query count, heads
 * (GQA), head dims, dtype, cache capacity, contiguous or paged (any page size)
 * caches, per-sequence lengths, new tokens, rotary (dims, GPT-J or NeoX),
 * cache_batch_idx, cache_leftpad, causal, window, softcap, ALiBi, num_splits
 * and thread counts; now and then it breaks one rule on purpose. Checks: the
 * caches after the append equal the reference's bits (rotary in fp32, unfused,
 * as flash-attn computes it), out and lse match an fp64 reference, a rejected
 * call leaves the caches untouched, and another thread count gives the same bits. */
#include "fuzz_common.h"

static const attn_dtype cache_dtypes[] = {ATTN_DTYPE_F32, ATTN_DTYPE_F16, ATTN_DTYPE_BF16};

typedef struct {
    attn_kvcache_params params;
    int64_t batch, queries, heads_q, heads_k, dim, value_dim, capacity, page, pages_per_seq, new_tokens, rotary_dim;
    int64_t seqlens[3], slot[3], leftpad[3], table[3][64];
    attn_tensor q, k_cache, v_cache, k, v, cos, sin, seqlens_t, batch_idx_t, leftpad_t, table_t, slopes, out, lse;
    int has_new, has_rotary, has_batch_idx, has_leftpad, paged, has_slopes, has_lse;
    /* The caches before the call, to rebuild what the append must give. */
    unsigned char *k_before, *v_before;
    size_t k_bytes, v_bytes;
} kv_call;

/* An fp32 value rounded to the cache dtype, to nearest even (as the library stores it). */
static double round_to(attn_dtype dtype, double x) {
    if (dtype == ATTN_DTYPE_BF16) {
        float f = (float)x;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        if (!isnan(f)) bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000u;
        memcpy(&f, &bits, 4);
        return f;
    }
    unsigned char buffer[8];
    fz_store(buffer, dtype, (float)x);
    return fz_load(buffer, dtype);
}

/* The cache index of (sequence b, position p): [slot or page, row]. */
static void where(const kv_call *c, int64_t b, int64_t p, int64_t *index) {
    if (c->paged) { index[0] = c->table[b][p / c->page]; index[1] = p % c->page; }
    else { index[0] = c->slot[b]; index[1] = p; }
}

/* x rotated at `position` (only the first rotary_dim dims), in fp32 as the library does. */
static void rotate(const kv_call *c, float *x, int64_t position) {
    int64_t half = c->rotary_dim / 2;
    for (int64_t j = 0; j < half; j++) {
        int64_t ci[2] = {position, j};
        float cs = (float)fz_get(&c->cos, ci), sn = (float)fz_get(&c->sin, ci);
        int64_t a = c->params.rotary_interleaved ? 2 * j : j, b = c->params.rotary_interleaved ? 2 * j + 1 : j + half;
        float xa = x[a], xb = x[b];
        volatile float p1 = xa * cs, p2 = xb * sn, p3 = xa * sn, p4 = xb * cs;   /* unfused, as the library */
        x[a] = p1 - p2;
        x[b] = p3 + p4;
    }
}

static void check_reference(kv_call *c) {
    attn_dtype dtype = c->q.dtype;
    /* 1. The caches: the old bytes with each new token written at its place. */
    attn_tensor before_k = c->k_cache, before_v = c->v_cache;
    for (int i = 0; i < fz_buffer_count; i++) {
        if (!c->k_cache.data || !c->v_cache.data) break;   /* empty caches: nothing to compare */
        if (fz_buffers[i].tensor == &c->k_cache) before_k.data = c->k_before + ((unsigned char *)c->k_cache.data - fz_buffers[i].raw);
        if (fz_buffers[i].tensor == &c->v_cache) before_v.data = c->v_before + ((unsigned char *)c->v_cache.data - fz_buffers[i].raw);
    }
    int64_t index[ATTN_MAX_RANK] = {0};
    float row[64];
    if (fz_elements(&c->k_cache) > 0) do {
        /* Which sequence and token (if any) writes this element: the last one wins. */
        double want = fz_get(&before_k, index);
        for (int64_t b = 0; b < c->batch && c->has_new; b++)
            for (int64_t t = 0; t < c->new_tokens; t++) {
                int64_t at[2];
                where(c, b, c->seqlens[b] + t, at);
                if (at[0] != index[0] || at[1] != index[1]) continue;
                for (int64_t d = 0; d < c->dim; d++) { int64_t ki[4] = {b, t, index[2], d}; row[d] = (float)fz_get(&c->k, ki); }
                if (c->has_rotary) rotate(c, row, c->seqlens[b] + t);
                want = c->has_rotary && index[3] < c->rotary_dim ? round_to(dtype, row[index[3]])
                                                                  : fz_get(&c->k, (int64_t[4]){b, t, index[2], index[3]});
            }
        if (fz_get(&c->k_cache, index) != want && !(isnan(want) && isnan(fz_get(&c->k_cache, index))))
            fz_fail("append", "k_cache element differs from the reference");
    } while (fz_advance(&c->k_cache, index));
    memset(index, 0, sizeof index);
    if (fz_elements(&c->v_cache) > 0) do {
        double want = fz_get(&before_v, index);
        for (int64_t b = 0; b < c->batch && c->has_new; b++)
            for (int64_t t = 0; t < c->new_tokens; t++) {
                int64_t at[2];
                where(c, b, c->seqlens[b] + t, at);
                if (at[0] == index[0] && at[1] == index[1]) want = fz_get(&c->v, (int64_t[4]){b, t, index[2], index[3]});
            }
        if (fz_get(&c->v_cache, index) != want && !(isnan(want) && isnan(fz_get(&c->v_cache, index))))
            fz_fail("append", "v_cache element differs from the reference");
    } while (fz_advance(&c->v_cache, index));

    /* 2. Attention over cache positions leftpad ..< seqlens + new, as flash attention. */
    if (!fz_all_finite(&c->q) || !fz_all_finite(&c->k_cache) || !fz_all_finite(&c->v_cache)) return;
    const attn_kvcache_params *p = &c->params;
    double scale = p->has_scale ? p->softmax_scale : 1.0 / sqrt((double)c->dim);
    double tolerance = fz_tolerance(dtype) * (1 + fz_max_abs(&c->v_cache)) * (1 + fabs(scale) * c->dim);
    int local = p->causal || p->window_left >= 0 || p->window_right >= 0;
    int64_t group = c->heads_q / c->heads_k;
    for (int64_t b = 0; b < c->batch; b++) {
        int64_t first = c->leftpad[b], end = c->seqlens[b] + (c->has_new ? c->new_tokens : 0);
        int64_t keys = end - first, diagonal = keys - c->queries;
        double scores[64];
        for (int64_t h = 0; h < c->heads_q; h++)
            for (int64_t i = 0; i < c->queries; i++) {
                for (int64_t d = 0; d < c->dim; d++) row[d] = (float)fz_get(&c->q, (int64_t[4]){b, i, h, d});
                if (c->has_new && c->has_rotary) {
                    rotate(c, row, c->seqlens[b] + (local ? i : 0));
                    for (int64_t d = 0; d < c->rotary_dim; d++) row[d] = (float)round_to(dtype, row[d]);
                }
                for (int64_t j = 0; j < keys; j++) {
                    int64_t right = p->causal ? 0 : p->window_right;
                    if ((p->window_left >= 0 && j < i + diagonal - p->window_left) || (right >= 0 && j > i + diagonal + right)) {
                        scores[j] = -INFINITY;
                        continue;
                    }
                    int64_t at[2];
                    where(c, b, first + j, at);
                    double dot = 0;
                    for (int64_t d = 0; d < c->dim; d++)
                        dot += (double)row[d] * fz_get(&c->k_cache, (int64_t[4]){at[0], at[1], h / group, d});
                    double s = scale * dot;
                    if (p->softcap > 0) s = p->softcap * tanh(s / p->softcap);
                    if (c->has_slopes) {
                        int64_t si[2] = {c->slopes.rank == 1 ? h : b, h};
                        s -= fz_get(&c->slopes, si) * fabs((double)(i + diagonal - j));
                    }
                    scores[j] = s;
                }
                double lse = fz_softmax(scores, keys);
                if (c->has_lse) {
                    double got = fz_get(&c->lse, (int64_t[3]){b, h, i});
                    if (isinf(lse)) { if (got != INFINITY) fz_fail("reference", "lse of an empty row is not +inf"); }
                    else fz_expect_close(got, lse, 1e-4 * (1 + fabs(lse)) + tolerance, "lse");
                }
                for (int64_t e = 0; e < c->value_dim; e++) {
                    double want = 0;
                    for (int64_t j = 0; j < keys; j++) {
                        if (scores[j] == 0) continue;
                        int64_t at[2];
                        where(c, b, first + j, at);
                        want += scores[j] * fz_get(&c->v_cache, (int64_t[4]){at[0], at[1], h / group, e});
                    }
                    fz_expect_close(fz_get(&c->out, (int64_t[4]){b, i, h, e}), want, tolerance, "out");
                }
            }
    }
}

static attn_status call_kvcache(kv_call *c) {
    /* A second run must see the caches as the first did: restore them first. */
    for (int i = 0; i < fz_buffer_count; i++) {
        if (fz_buffers[i].tensor == &c->k_cache) memcpy(fz_buffers[i].raw, c->k_before, c->k_bytes);
        if (fz_buffers[i].tensor == &c->v_cache) memcpy(fz_buffers[i].raw, c->v_before, c->v_bytes);
    }
    return attn_flash_kvcache_forward(&c->params, &c->q, &c->k_cache, &c->v_cache, c->has_new ? &c->k : NULL,
                                      c->has_new ? &c->v : NULL, c->has_rotary ? &c->cos : NULL,
                                      c->has_rotary ? &c->sin : NULL, &c->seqlens_t,
                                      c->has_batch_idx ? &c->batch_idx_t : NULL, c->has_leftpad ? &c->leftpad_t : NULL,
                                      c->paged ? &c->table_t : NULL, c->has_slopes ? &c->slopes : NULL, &c->out,
                                      c->has_lse ? &c->lse : NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_input in = {data, size, 0, size};
    for (size_t i = 0; i < size && i < 64; i++) in.fill_state = in.fill_state * 131 + data[i];
    static kv_call c;
    memset(&c, 0, sizeof c);
    fz_broken = "";
    fz_no_reference = 0;

    attn_dtype dtype = cache_dtypes[fz_pick(&in, 3)];
    c.batch = 1 + fz_pick(&in, 3);
    c.queries = fz_pick(&in, 4) + (fz_chance(&in, 90) ? 1 : 0);
    c.heads_k = 1 + fz_pick(&in, 2);
    c.heads_q = c.heads_k * (1 + fz_pick(&in, 3));
    c.dim = 2 * (1 + fz_pick(&in, 16));          /* even, up to 32 */
    c.value_dim = fz_chance(&in, 80) ? c.dim : 1 + fz_pick(&in, 32);
    c.has_new = fz_chance(&in, 60);
    c.new_tokens = c.has_new ? fz_pick(&in, 4) : 0;
    c.capacity = c.new_tokens + fz_pick(&in, 40);
    c.paged = fz_chance(&in, 40);
    c.has_batch_idx = !c.paged && fz_chance(&in, 30);
    c.has_leftpad = !c.paged && fz_chance(&in, 30);
    int64_t slots = c.batch + (c.has_batch_idx ? fz_pick(&in, 3) : 0);
    for (int64_t b = 0; b < c.batch; b++) {
        c.seqlens[b] = fz_pick(&in, (unsigned)(c.capacity - c.new_tokens + 1));
        c.slot[b] = c.has_batch_idx ? fz_pick(&in, (unsigned)slots) : b;
        c.leftpad[b] = c.has_leftpad ? fz_pick(&in, (unsigned)(c.seqlens[b] + 1)) : 0;
    }
    int64_t cache_shape[4] = {slots, c.capacity, c.heads_k, c.dim}, vcache_shape[4] = {slots, c.capacity, c.heads_k, c.value_dim};
    if (c.paged) {
        c.page = 1 + fz_pick(&in, 17);
        c.pages_per_seq = (c.capacity + c.page - 1) / c.page;
        int64_t blocks = c.batch * c.pages_per_seq + fz_pick(&in, 3);
        /* Distinct pages per row: a rotation of 0 .. blocks-1 (rows may share pages with each other). */
        int64_t offset = fz_pick(&in, 7);
        for (int64_t b = 0; b < c.batch; b++)
            for (int64_t j = 0; j < c.pages_per_seq; j++) c.table[b][j] = (b * c.pages_per_seq + j + offset) % (blocks ? blocks : 1);
        cache_shape[0] = vcache_shape[0] = blocks;
        cache_shape[1] = vcache_shape[1] = c.page;
    }
    int specials = fz_chance(&in, 10);
    int64_t q_shape[4] = {c.batch, c.queries, c.heads_q, c.dim}, o_shape[4] = {c.batch, c.queries, c.heads_q, c.value_dim};
    fz_make(&in, &c.q, "q", dtype, 4, q_shape, 0, specials);
    fz_make(&in, &c.k_cache, "k_cache", dtype, 4, cache_shape, 1, 0);
    fz_make(&in, &c.v_cache, "v_cache", dtype, 4, vcache_shape, 1, 0);
    /* Caches are read and written: give them values, then keep a copy of the bytes. */
    FZ_FILL(&c.k_cache, fz_value(&in, specials));
    FZ_FILL(&c.v_cache, fz_value(&in, specials));
    for (int i = 0; i < fz_buffer_count; i++) {
        if (fz_buffers[i].tensor == &c.k_cache) {
            c.k_bytes = fz_buffers[i].span_bytes + 2 * FZ_GUARD;
            c.k_before = malloc(c.k_bytes);
            memcpy(c.k_before, fz_buffers[i].raw, c.k_bytes);
        }
        if (fz_buffers[i].tensor == &c.v_cache) {
            c.v_bytes = fz_buffers[i].span_bytes + 2 * FZ_GUARD;
            c.v_before = malloc(c.v_bytes);
            memcpy(c.v_before, fz_buffers[i].raw, c.v_bytes);
        }
    }
    if (c.has_new) {
        int64_t k_shape[4] = {c.batch, c.new_tokens, c.heads_k, c.dim}, v_shape[4] = {c.batch, c.new_tokens, c.heads_k, c.value_dim};
        fz_make(&in, &c.k, "k", dtype, 4, k_shape, 0, specials);
        fz_make(&in, &c.v, "v", dtype, 4, v_shape, 0, specials);
        c.has_rotary = fz_chance(&in, 50);
        if (c.has_rotary) {
            c.rotary_dim = 2 * (1 + fz_pick(&in, (unsigned)(c.dim / 2)));
            int64_t table_shape[2] = {c.capacity + c.queries + fz_pick(&in, 3), c.rotary_dim / 2};
            fz_make(&in, &c.cos, "rotary_cos", dtype, 2, table_shape, 0, 0);
            fz_make(&in, &c.sin, "rotary_sin", dtype, 2, table_shape, 0, 0);
            FZ_FILL(&c.cos, round_to(dtype, cos(0.1 * (double)index[0] * (double)(index[1] + 1))));
            FZ_FILL(&c.sin, round_to(dtype, sin(0.1 * (double)index[0] * (double)(index[1] + 1))));
        }
    }
    attn_dtype index_dtype = fz_chance(&in, 50) ? ATTN_DTYPE_I32 : ATTN_DTYPE_I64;
    int64_t b_shape[1] = {c.batch};
    fz_make_index(&in, &c.seqlens_t, "cache_seqlens", index_dtype, 1, b_shape);
    FZ_FILL(&c.seqlens_t, (double)c.seqlens[index[0]]);
    if (c.has_batch_idx) {
        fz_make_index(&in, &c.batch_idx_t, "cache_batch_idx", index_dtype, 1, b_shape);
        FZ_FILL(&c.batch_idx_t, (double)c.slot[index[0]]);
    }
    if (c.has_leftpad) {
        fz_make_index(&in, &c.leftpad_t, "cache_leftpad", index_dtype, 1, b_shape);
        FZ_FILL(&c.leftpad_t, (double)c.leftpad[index[0]]);
    }
    if (c.paged) {
        int64_t t_shape[2] = {c.batch, c.pages_per_seq};
        fz_make_index(&in, &c.table_t, "block_table", index_dtype, 2, t_shape);
        FZ_FILL(&c.table_t, (double)c.table[index[0]][index[1]]);
    }
    c.has_slopes = fz_chance(&in, 20);
    if (c.has_slopes) {
        int per_batch = fz_chance(&in, 50);
        int64_t s_shape[2] = {per_batch ? c.batch : c.heads_q, c.heads_q};
        fz_make(&in, &c.slopes, "alibi_slopes", ATTN_DTYPE_F32, per_batch ? 2 : 1, per_batch ? s_shape : s_shape + 1, 0, 0);
        FZ_FILL(&c.slopes, (double)(index[0] + index[1] + 1) / 16.0);
    }
    fz_make(&in, &c.out, "out", dtype, 4, o_shape, 1, 0);
    c.has_lse = fz_chance(&in, 60);
    if (c.has_lse) {
        int64_t l_shape[3] = {c.batch, c.heads_q, c.queries};
        fz_make(&in, &c.lse, "softmax_lse", ATTN_DTYPE_F32, 3, l_shape, 1, 0);
    }
    attn_kvcache_params *p = &c.params;
    p->struct_size = sizeof *p;
    p->causal = fz_chance(&in, 50);
    p->has_scale = fz_chance(&in, 20);
    p->softmax_scale = p->has_scale ? (double)((int)fz_pick(&in, 9) - 4) / 4.0 : 0;
    p->rotary_interleaved = fz_chance(&in, 50);
    p->window_left = fz_chance(&in, 25) ? (int64_t)fz_pick(&in, 20) : -1;
    p->window_right = fz_chance(&in, 25) ? (int64_t)fz_pick(&in, 20) : -1;
    p->softcap = fz_chance(&in, 15) ? 0.5 + fz_pick(&in, 30) : 0;
    p->num_splits = fz_chance(&in, 30) ? (int32_t)fz_pick(&in, 6) : 0;

    int must_reject = 0;
    switch (fz_chance(&in, 25) ? fz_pick(&in, 9) : 99) {
    case 0: fz_corrupt_tensor(&in, &c.q); must_reject = 1; break;
    case 1: fz_corrupt_tensor(&in, &c.k_cache); must_reject = 1; break;
    case 2: fz_corrupt_tensor(&in, &c.out); must_reject = 1; break;
    case 3: p->struct_size = 4097; fz_broken = "struct_size"; must_reject = 1; break;
    case 4: p->num_splits = -1; fz_broken = "num_splits"; must_reject = 1; break;
    case 5: /* one sequence past the capacity */
        c.seqlens[0] = c.paged ? c.pages_per_seq * c.page - c.new_tokens + 1 : c.capacity - c.new_tokens + 1;
        FZ_FILL(&c.seqlens_t, (double)c.seqlens[index[0]]);
        fz_broken = "cache_seqlens past the capacity"; must_reject = 1;
        break;
    case 6:
        if (c.paged && c.seqlens[0] + c.new_tokens > 0) {
            FZ_FILL(&c.table_t, index[0] == 0 && index[1] == 0 ? 1e6 : (double)c.table[index[0]][index[1]]);
            fz_broken = "block_table entry out of range"; must_reject = 1;
        }
        break;
    case 7: if (c.has_new) { c.k.dtype = dtype == ATTN_DTYPE_F32 ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32; fz_broken = "k dtype"; must_reject = 1; } break;
    case 8: p->rotary_interleaved = 3; fz_broken = "rotary_interleaved"; must_reject = 1; break;
    }
    FZ_RUN(&in, must_reject, call_kvcache(&c), check_reference(&c));
    free(c.k_before);
    free(c.v_before);
    fz_release_all();
    return 0;
}
