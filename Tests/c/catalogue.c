/* The bad-call catalogue: every export called with one argument broken at a
 * time, each call in a forked child. For each case it asserts
 *   - the exact status code and a message naming the argument;
 *   - untouched canaries around every buffer, unchanged inputs and outputs
 *     (a rejected call writes nothing);
 *   - nothing printed on stdout or stderr, and no crash or exit.
 * Then positive controls: odd, negative and broadcast strides and padded
 * outputs, each compared bitwise with the same call on contiguous copies.
 * Exit code 0 means every case passed; the last line counts them. */
#include <attnkit.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { GUARD = 64, MAX_ARGS = 16, BUFFER_FLOATS = 4096 };

/* One buffer per argument slot: GUARD canary bytes, the data, GUARD canary bytes. */
static unsigned char *slots[MAX_ARGS];
static unsigned char *snapshots[MAX_ARGS];

static void *slot_data(int i) { return slots[i] + GUARD; }

static void fill_slots(void) {
    for (int i = 0; i < MAX_ARGS; i++) {
        if (!slots[i]) {
            slots[i] = malloc(BUFFER_FLOATS * 8 + 2 * GUARD);
            snapshots[i] = malloc(BUFFER_FLOATS * 8 + 2 * GUARD);
        }
        memset(slots[i], 0xA5, GUARD);
        memset(slots[i] + GUARD + BUFFER_FLOATS * 8, 0xA5, GUARD);
        float *f = slot_data(i);
        for (int j = 0; j < BUFFER_FLOATS * 2; j++) f[j] = (float)((j * 37 + i * 11) % 17) / 8.0f - 1.0f;
    }
}

static void fill_index(int i, int64_t first, int64_t second, int64_t third) {
    int32_t *c = slot_data(i);
    c[0] = (int32_t)first; c[1] = (int32_t)second; c[2] = (int32_t)third;
}

static void take_snapshots(void) {
    for (int i = 0; i < MAX_ARGS; i++) memcpy(snapshots[i], slots[i], BUFFER_FLOATS * 8 + 2 * GUARD);
}

/* 0 if every slot (canaries, inputs and outputs) is as it was. */
static int slots_untouched(char *where, size_t size) {
    for (int i = 0; i < MAX_ARGS; i++) {
        if (memcmp(snapshots[i], slots[i], BUFFER_FLOATS * 8 + 2 * GUARD) != 0) {
            for (size_t b = 0; b < BUFFER_FLOATS * 8 + 2 * GUARD; b++) {
                if (snapshots[i][b] != slots[i][b]) {
                    snprintf(where, size, "slot %d byte %zd changed (%s)", i, (ssize_t)b - GUARD,
                             b < GUARD || b >= GUARD + BUFFER_FLOATS * 8 ? "canary" : "data");
                    return 1;
                }
            }
        }
    }
    return 0;
}

static attn_tensor contiguous(int slot, attn_dtype dtype, int rank, const int64_t *shape) {
    attn_tensor t;
    memset(&t, 0, sizeof t);
    t.data = slot_data(slot);
    t.dtype = dtype;
    t.rank = rank;
    int64_t stride = 1;
    for (int a = rank - 1; a >= 0; a--) {
        t.shape[a] = shape[a];
        t.strides[a] = stride;
        stride *= shape[a] > 0 ? shape[a] : 1;
    }
    return t;
}

/* A call: tensors in argument order (NULL where absent), names, and the params. */
typedef struct {
    const char *entry;
    int count;
    attn_tensor tensors[MAX_ARGS];
    int present[MAX_ARGS];
    int required[MAX_ARGS];
    int is_output[MAX_ARGS];
    const char *names[MAX_ARGS];
    attn_eager_params eager;
    attn_sdpa_params sdpa;
    attn_flash_params flash;
    attn_int8_sdpa_params int8;
    attn_kvcache_params kvcache;
    attn_sparse_topk_params sparse;
    attn_aft_params aft;
    attn_linformer_params linformer;
    int params_null;
    int64_t diagonal;
    int32_t num_bits;
    double scale, zero_point;
} call;

static const attn_tensor *arg(call *c, int i) { return c->present[i] ? &c->tensors[i] : NULL; }

static attn_status run(call *c) {
    const char *e = c->entry;
    if (!strcmp(e, "eager"))
        return attn_eager_forward(c->params_null ? NULL : &c->eager, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4),
                                  arg(c, 5));
    if (!strcmp(e, "eager_backward"))
        return attn_eager_backward(c->params_null ? NULL : &c->eager, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3),
                                   arg(c, 4), arg(c, 5), arg(c, 6), arg(c, 7), arg(c, 8));
    if (!strcmp(e, "sdpa"))
        return attn_sdpa_forward(c->params_null ? NULL : &c->sdpa, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4));
    if (!strcmp(e, "int8_sdpa"))
        return attn_int8_sdpa_forward(c->params_null ? NULL : &c->int8, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3),
                                      arg(c, 4));
    const attn_flash_params *fp = c->params_null ? NULL : &c->flash;
    if (!strcmp(e, "flash"))
        return attn_flash_forward(fp, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4), arg(c, 5));
    if (!strcmp(e, "flash_probs"))
        return attn_flash_forward_probs(fp, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4), arg(c, 5), arg(c, 6));
    if (!strcmp(e, "varlen"))
        return attn_flash_varlen_forward(fp, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4), arg(c, 5), arg(c, 6),
                                         arg(c, 7));
    if (!strcmp(e, "varlen_probs"))
        return attn_flash_varlen_forward_probs(fp, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4), arg(c, 5),
                                               arg(c, 6), arg(c, 7), arg(c, 8));
    if (!strcmp(e, "varlen_int8"))
        return attn_flash_varlen_int8_forward(fp, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4), arg(c, 5),
                                              arg(c, 6), arg(c, 7), arg(c, 8), arg(c, 9));
    if (!strcmp(e, "kvcache"))
        return attn_flash_kvcache_forward(c->params_null ? NULL : &c->kvcache, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3),
                                          arg(c, 4), arg(c, 5), arg(c, 6), arg(c, 7), arg(c, 8), arg(c, 9), arg(c, 10),
                                          arg(c, 11), arg(c, 12), arg(c, 13));
    if (!strcmp(e, "kvcache_int8"))
        return attn_flash_kvcache_int8_forward(c->params_null ? NULL : &c->kvcache, arg(c, 0), arg(c, 1), arg(c, 2),
                                               arg(c, 3), arg(c, 4), arg(c, 5), arg(c, 6), arg(c, 7), arg(c, 8),
                                               arg(c, 9), arg(c, 10), arg(c, 11), arg(c, 12), arg(c, 13), arg(c, 14),
                                               arg(c, 15));
    if (!strcmp(e, "sdpa_lse"))
        return attn_sdpa_forward_lse(c->params_null ? NULL : &c->sdpa, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3),
                                     arg(c, 4), arg(c, 5));
    if (!strcmp(e, "sdpa_backward"))
        return attn_sdpa_backward(c->params_null ? NULL : &c->sdpa, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4),
                                  arg(c, 5), arg(c, 6), arg(c, 7), arg(c, 8), arg(c, 9));
    if (!strcmp(e, "flash_block"))
        return attn_flash_block_forward(fp, c->diagonal, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4),
                                        arg(c, 5));
    if (!strcmp(e, "flash_block_backward"))
        return attn_flash_block_backward(fp, c->diagonal, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4),
                                         arg(c, 5), arg(c, 6), arg(c, 7), arg(c, 8), arg(c, 9));
    if (!strcmp(e, "flash_backward"))
        return attn_flash_backward(fp, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4), arg(c, 5), arg(c, 6),
                                   arg(c, 7), arg(c, 8), arg(c, 9));
    if (!strcmp(e, "varlen_backward"))
        return attn_flash_varlen_backward(fp, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4), arg(c, 5), arg(c, 6),
                                          arg(c, 7), arg(c, 8), arg(c, 9), arg(c, 10), arg(c, 11));
    if (!strcmp(e, "sparse_topk"))
        return attn_sparse_topk_forward(c->params_null ? NULL : &c->sparse, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3),
                                        arg(c, 4));
    if (!strcmp(e, "aft"))
        return attn_aft_forward(c->params_null ? NULL : &c->aft, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4),
                                arg(c, 5), arg(c, 6));
    if (!strcmp(e, "linformer"))
        return attn_linformer_forward(c->params_null ? NULL : &c->linformer, arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3),
                                      arg(c, 4), arg(c, 5), arg(c, 6), arg(c, 7));
    if (!strcmp(e, "merge"))
        return attn_merge_attention_states(arg(c, 0), arg(c, 1), arg(c, 2), arg(c, 3), arg(c, 4), arg(c, 5));
    if (!strcmp(e, "quantize"))
        return attn_quantize_per_tensor(arg(c, 0), c->num_bits, arg(c, 1), c->params_null ? NULL : &c->scale,
                                        c->params_null ? NULL : &c->zero_point);
    if (!strcmp(e, "dequantize"))
        return attn_dequantize_per_tensor(arg(c, 0), c->scale, c->zero_point, arg(c, 1));
    return (attn_status)-1;
}

static void add(call *c, const char *name, attn_tensor t, int required, int output) {
    int i = c->count++;
    c->tensors[i] = t; c->present[i] = 1; c->required[i] = required; c->is_output[i] = output; c->names[i] = name;
}

static void absent(call *c, const char *name) {
    int i = c->count++;
    memset(&c->tensors[i], 0, sizeof c->tensors[i]);
    c->present[i] = 0; c->required[i] = 0; c->is_output[i] = 0; c->names[i] = name;
}

/* A valid call of each entry point on small shapes (each slot a distinct buffer). */
static call baseline(const char *entry) {
    call c;
    memset(&c, 0, sizeof c);
    c.entry = entry;
    const int64_t eager_shape[3] = {1, 3, 8}, mask_shape[2] = {1, 3}, weights_shape[4] = {1, 2, 3, 3};
    const int64_t sdpa_shape[4] = {1, 2, 3, 4};
    const int64_t bshd[4] = {1, 3, 2, 4}, lse_b[3] = {1, 2, 3}, dmask_b[4] = {1, 2, 128, 128};
    const int64_t packed[3] = {5, 2, 4}, cu[1] = {3}, lse_v[2] = {2, 5}, dmask_v[4] = {2, 2, 128, 128};
    const int64_t scales[2] = {5, 2}, flat[2] = {4, 6};
    c.eager = (attn_eager_params){sizeof(attn_eager_params), ATTN_MASK_NONE, 2, 4};
    c.sdpa = (attn_sdpa_params){sizeof(attn_sdpa_params), 0, 0, 0, 0.0, 0.0, 0};
    memset(&c.flash, 0, sizeof c.flash);
    c.flash.struct_size = sizeof c.flash;
    c.flash.window_left = -1; c.flash.window_right = -1;
    c.flash.max_seqlen_q = 3; c.flash.max_seqlen_k = 3;
    c.int8 = (attn_int8_sdpa_params){sizeof(attn_int8_sdpa_params), 0, 0, 0, 0.0, ATTN_QK_QUANT_PER_BLOCK, 0};
    if (!strcmp(entry, "eager")) {
        add(&c, "q", contiguous(0, ATTN_DTYPE_F32, 3, eager_shape), 1, 0);
        add(&c, "k", contiguous(1, ATTN_DTYPE_F32, 3, eager_shape), 1, 0);
        add(&c, "v", contiguous(2, ATTN_DTYPE_F32, 3, eager_shape), 1, 0);
        add(&c, "key_mask", contiguous(3, ATTN_DTYPE_BOOL, 2, mask_shape), 0, 0);
        memset(slot_data(3), 1, 3);
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 3, eager_shape), 1, 1);
        add(&c, "weights", contiguous(5, ATTN_DTYPE_F32, 4, weights_shape), 0, 1);
    } else if (!strcmp(entry, "eager_backward")) {
        /* dout, dweights, q, k, v, key_mask: inputs; dq, dk, dv: outputs. */
        add(&c, "dout", contiguous(8, ATTN_DTYPE_F32, 3, eager_shape), 0, 0);
        add(&c, "dweights", contiguous(6, ATTN_DTYPE_F32, 4, weights_shape), 0, 0);
        add(&c, "q", contiguous(0, ATTN_DTYPE_F32, 3, eager_shape), 1, 0);
        add(&c, "k", contiguous(1, ATTN_DTYPE_F32, 3, eager_shape), 1, 0);
        add(&c, "v", contiguous(2, ATTN_DTYPE_F32, 3, eager_shape), 1, 0);
        add(&c, "key_mask", contiguous(3, ATTN_DTYPE_BOOL, 2, mask_shape), 0, 0);
        memset(slot_data(3), 1, 3);
        add(&c, "dq", contiguous(9, ATTN_DTYPE_F32, 3, eager_shape), 1, 1);
        add(&c, "dk", contiguous(10, ATTN_DTYPE_F32, 3, eager_shape), 1, 1);
        add(&c, "dv", contiguous(11, ATTN_DTYPE_F32, 3, eager_shape), 1, 1);
    } else if (!strcmp(entry, "sdpa") || !strcmp(entry, "int8_sdpa")) {
        add(&c, "query", contiguous(0, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 0);
        add(&c, "key", contiguous(1, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 0);
        add(&c, "value", contiguous(2, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 0);
        absent(&c, "attn_mask");
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 1);
    } else if (!strcmp(entry, "sdpa_lse")) {
        const int64_t lse_shape[3] = {1, 2, 3};
        add(&c, "query", contiguous(0, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 0);
        add(&c, "key", contiguous(1, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 0);
        add(&c, "value", contiguous(2, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 0);
        absent(&c, "attn_mask");
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 1);
        add(&c, "lse", contiguous(5, ATTN_DTYPE_F32, 3, lse_shape), 0, 1);
    } else if (!strcmp(entry, "sdpa_backward")) {
        /* dout, query, key, value, attn_mask, out, lse: inputs; dquery, dkey, dvalue: outputs. */
        const int64_t lse_shape[3] = {1, 2, 3};
        add(&c, "dout", contiguous(8, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 0);
        add(&c, "query", contiguous(0, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 0);
        add(&c, "key", contiguous(1, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 0);
        add(&c, "value", contiguous(2, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 0);
        absent(&c, "attn_mask");
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 0);
        add(&c, "lse", contiguous(5, ATTN_DTYPE_F32, 3, lse_shape), 1, 0);
        add(&c, "dquery", contiguous(9, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 1);
        add(&c, "dkey", contiguous(10, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 1);
        add(&c, "dvalue", contiguous(11, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 1);
    } else if (!strcmp(entry, "flash_backward") || !strcmp(entry, "flash_block_backward")) {
        add(&c, "dout", contiguous(8, ATTN_DTYPE_F32, 4, bshd), 1, 0);
        add(&c, "q", contiguous(0, ATTN_DTYPE_F32, 4, bshd), 1, 0);
        add(&c, "k", contiguous(1, ATTN_DTYPE_F32, 4, bshd), 1, 0);
        add(&c, "v", contiguous(2, ATTN_DTYPE_F32, 4, bshd), 1, 0);
        absent(&c, "alibi_slopes");
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 4, bshd), 1, 0);
        add(&c, "softmax_lse", contiguous(5, ATTN_DTYPE_F32, 3, lse_b), 1, 0);
        add(&c, "dq", contiguous(9, ATTN_DTYPE_F32, 4, bshd), 1, 1);
        add(&c, "dk", contiguous(10, ATTN_DTYPE_F32, 4, bshd), 1, 1);
        add(&c, "dv", contiguous(11, ATTN_DTYPE_F32, 4, bshd), 1, 1);
    } else if (!strcmp(entry, "varlen_backward")) {
        add(&c, "dout", contiguous(8, ATTN_DTYPE_F32, 3, packed), 1, 0);
        add(&c, "q", contiguous(0, ATTN_DTYPE_F32, 3, packed), 1, 0);
        add(&c, "k", contiguous(1, ATTN_DTYPE_F32, 3, packed), 1, 0);
        add(&c, "v", contiguous(2, ATTN_DTYPE_F32, 3, packed), 1, 0);
        add(&c, "cu_seqlens_q", contiguous(3, ATTN_DTYPE_I32, 1, cu), 1, 0);
        fill_index(3, 0, 2, 5);
        add(&c, "cu_seqlens_k", contiguous(7, ATTN_DTYPE_I32, 1, cu), 1, 0);
        fill_index(7, 0, 2, 5);
        absent(&c, "alibi_slopes");
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 3, packed), 1, 0);
        add(&c, "softmax_lse", contiguous(5, ATTN_DTYPE_F32, 2, lse_v), 1, 0);
        add(&c, "dq", contiguous(9, ATTN_DTYPE_F32, 3, packed), 1, 1);
        add(&c, "dk", contiguous(10, ATTN_DTYPE_F32, 3, packed), 1, 1);
        add(&c, "dv", contiguous(11, ATTN_DTYPE_F32, 3, packed), 1, 1);
    } else if (!strncmp(entry, "flash", 5)) {
        add(&c, "q", contiguous(0, ATTN_DTYPE_F32, 4, bshd), 1, 0);
        add(&c, "k", contiguous(1, ATTN_DTYPE_F32, 4, bshd), 1, 0);
        add(&c, "v", contiguous(2, ATTN_DTYPE_F32, 4, bshd), 1, 0);
        absent(&c, "alibi_slopes");
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 4, bshd), 1, 1);
        add(&c, "softmax_lse", contiguous(5, ATTN_DTYPE_F32, 3, lse_b), 0, 1);
        if (!strcmp(entry, "flash_probs")) add(&c, "s_dmask", contiguous(6, ATTN_DTYPE_F32, 4, dmask_b), 1, 1);
    } else if (!strcmp(entry, "varlen") || !strcmp(entry, "varlen_probs")) {
        add(&c, "q", contiguous(0, ATTN_DTYPE_F32, 3, packed), 1, 0);
        add(&c, "k", contiguous(1, ATTN_DTYPE_F32, 3, packed), 1, 0);
        add(&c, "v", contiguous(2, ATTN_DTYPE_F32, 3, packed), 1, 0);
        add(&c, "cu_seqlens_q", contiguous(3, ATTN_DTYPE_I32, 1, cu), 1, 0);
        fill_index(3, 0, 2, 5);
        add(&c, "cu_seqlens_k", contiguous(7, ATTN_DTYPE_I32, 1, cu), 1, 0);
        fill_index(7, 0, 2, 5);
        absent(&c, "alibi_slopes");
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 3, packed), 1, 1);
        add(&c, "softmax_lse", contiguous(5, ATTN_DTYPE_F32, 2, lse_v), 0, 1);
        if (!strcmp(entry, "varlen_probs")) add(&c, "s_dmask", contiguous(6, ATTN_DTYPE_F32, 4, dmask_v), 1, 1);
    } else if (!strcmp(entry, "varlen_int8")) {
        add(&c, "q_int8", contiguous(0, ATTN_DTYPE_I8, 3, packed), 1, 0);
        add(&c, "q_scale", contiguous(8, ATTN_DTYPE_F32, 2, scales), 1, 0);
        add(&c, "k_int8", contiguous(1, ATTN_DTYPE_I8, 3, packed), 1, 0);
        add(&c, "k_scale", contiguous(9, ATTN_DTYPE_F32, 2, scales), 1, 0);
        add(&c, "v", contiguous(2, ATTN_DTYPE_F32, 3, packed), 1, 0);
        add(&c, "cu_seqlens_q", contiguous(3, ATTN_DTYPE_I32, 1, cu), 1, 0);
        fill_index(3, 0, 2, 5);
        add(&c, "cu_seqlens_k", contiguous(7, ATTN_DTYPE_I32, 1, cu), 1, 0);
        fill_index(7, 0, 2, 5);
        absent(&c, "alibi_slopes");
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 3, packed), 1, 1);
        add(&c, "softmax_lse", contiguous(5, ATTN_DTYPE_F32, 2, lse_v), 0, 1);
    } else if (!strcmp(entry, "kvcache")) {
        /* B 2, two queries, Hq 2 over Hk 1, D 4; caches of 4 positions; one new token each. */
        const int64_t q_shape[4] = {2, 2, 2, 4}, cache[4] = {2, 4, 1, 4}, new_kv[4] = {2, 1, 1, 4}, b[1] = {2};
        const int64_t lse_shape[3] = {2, 2, 2};
        c.kvcache = (attn_kvcache_params){sizeof(attn_kvcache_params), 1, 0, 1, 0.0, -1, -1, 0.0, 0, 0};
        add(&c, "q", contiguous(0, ATTN_DTYPE_F32, 4, q_shape), 1, 0);
        add(&c, "k_cache", contiguous(1, ATTN_DTYPE_F32, 4, cache), 1, 1);
        add(&c, "v_cache", contiguous(2, ATTN_DTYPE_F32, 4, cache), 1, 1);
        add(&c, "k", contiguous(3, ATTN_DTYPE_F32, 4, new_kv), 0, 0);
        add(&c, "v", contiguous(10, ATTN_DTYPE_F32, 4, new_kv), 0, 0);
        absent(&c, "rotary_cos");
        absent(&c, "rotary_sin");
        add(&c, "cache_seqlens", contiguous(6, ATTN_DTYPE_I32, 1, b), 1, 0);
        fill_index(6, 1, 2, 0);
        absent(&c, "cache_batch_idx");
        absent(&c, "cache_leftpad");
        absent(&c, "block_table");
        absent(&c, "alibi_slopes");
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 4, q_shape), 1, 1);
        add(&c, "softmax_lse", contiguous(5, ATTN_DTYPE_F32, 3, lse_shape), 0, 1);
    } else if (!strcmp(entry, "kvcache_int8")) {
        /* The kvcache baseline on an int8 cache (Hk 2) with per (row, position, head) scales. */
        const int64_t q_shape[4] = {2, 2, 2, 4}, cache[4] = {2, 4, 2, 4}, scales[3] = {2, 4, 2}, new_kv[4] = {2, 1, 2, 4};
        const int64_t b[1] = {2}, lse_shape[3] = {2, 2, 2};
        c.kvcache = (attn_kvcache_params){sizeof(attn_kvcache_params), 1, 0, 1, 0.0, -1, -1, 0.0, 0, 0};
        add(&c, "q", contiguous(0, ATTN_DTYPE_F32, 4, q_shape), 1, 0);
        add(&c, "k_cache", contiguous(1, ATTN_DTYPE_I8, 4, cache), 1, 1);
        add(&c, "k_scale", contiguous(11, ATTN_DTYPE_F32, 3, scales), 1, 1);
        add(&c, "v_cache", contiguous(2, ATTN_DTYPE_I8, 4, cache), 1, 1);
        add(&c, "v_scale", contiguous(12, ATTN_DTYPE_F32, 3, scales), 1, 1);
        add(&c, "k", contiguous(3, ATTN_DTYPE_F32, 4, new_kv), 0, 0);
        add(&c, "v", contiguous(10, ATTN_DTYPE_F32, 4, new_kv), 0, 0);
        absent(&c, "rotary_cos");
        absent(&c, "rotary_sin");
        add(&c, "cache_seqlens", contiguous(6, ATTN_DTYPE_I32, 1, b), 1, 0);
        fill_index(6, 1, 2, 0);
        absent(&c, "cache_batch_idx");
        absent(&c, "cache_leftpad");
        absent(&c, "block_table");
        absent(&c, "alibi_slopes");
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 4, q_shape), 1, 1);
        add(&c, "softmax_lse", contiguous(5, ATTN_DTYPE_F32, 3, lse_shape), 0, 1);
    } else if (!strcmp(entry, "merge")) {
        const int64_t out_shape[3] = {2, 3, 4}, lse_shape[2] = {3, 2};
        add(&c, "out_a", contiguous(0, ATTN_DTYPE_F32, 3, out_shape), 1, 0);
        add(&c, "lse_a", contiguous(1, ATTN_DTYPE_F32, 2, lse_shape), 1, 0);
        add(&c, "out_b", contiguous(2, ATTN_DTYPE_F32, 3, out_shape), 1, 0);
        add(&c, "lse_b", contiguous(3, ATTN_DTYPE_F32, 2, lse_shape), 1, 0);
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 3, out_shape), 1, 1);
        add(&c, "lse", contiguous(5, ATTN_DTYPE_F32, 2, lse_shape), 0, 1);
    } else if (!strcmp(entry, "sparse_topk") || !strcmp(entry, "linformer")) {
        /* q (1, 2, 3, 4) over one KV head (GQA) */
        const int64_t kv_shape[4] = {1, 1, 3, 4}, projection[2] = {2, 5}, bias[1] = {2};
        c.sparse = (attn_sparse_topk_params){sizeof(attn_sparse_topk_params), ATTN_MASK_NONE, 2, 0, 0, 0.0};
        c.linformer = (attn_linformer_params){sizeof(attn_linformer_params), 0, 0.0};
        add(&c, "q", contiguous(0, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 0);
        add(&c, "k", contiguous(1, ATTN_DTYPE_F32, 4, kv_shape), 1, 0);
        add(&c, "v", contiguous(2, ATTN_DTYPE_F32, 4, kv_shape), 1, 0);
        if (!strcmp(entry, "sparse_topk")) {
            add(&c, "key_mask", contiguous(3, ATTN_DTYPE_BOOL, 2, mask_shape), 0, 0);
            memset(slot_data(3), 1, 3);
        } else {
            add(&c, "proj_e", contiguous(3, ATTN_DTYPE_F32, 2, projection), 1, 0);
            add(&c, "bias_e", contiguous(5, ATTN_DTYPE_F32, 1, bias), 0, 0);
            add(&c, "proj_f", contiguous(6, ATTN_DTYPE_F32, 2, projection), 1, 0);
            add(&c, "bias_f", contiguous(7, ATTN_DTYPE_F32, 1, bias), 0, 0);
        }
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 4, sdpa_shape), 1, 1);
    } else if (!strcmp(entry, "aft")) {
        const int64_t aft_shape[3] = {1, 3, 4}, square[2] = {3, 3};
        c.aft = (attn_aft_params){sizeof(attn_aft_params), ATTN_AFT_FULL, 0, 0, 0};
        add(&c, "q", contiguous(0, ATTN_DTYPE_F32, 3, aft_shape), 1, 0);
        add(&c, "k", contiguous(1, ATTN_DTYPE_F32, 3, aft_shape), 1, 0);
        add(&c, "v", contiguous(2, ATTN_DTYPE_F32, 3, aft_shape), 1, 0);
        add(&c, "w_bias", contiguous(3, ATTN_DTYPE_F32, 2, square), 0, 0);
        absent(&c, "w_u");
        absent(&c, "w_v");
        add(&c, "out", contiguous(4, ATTN_DTYPE_F32, 3, aft_shape), 1, 1);
    } else if (!strcmp(entry, "quantize")) {
        add(&c, "x", contiguous(0, ATTN_DTYPE_F32, 2, flat), 1, 0);
        add(&c, "q", contiguous(1, ATTN_DTYPE_U8, 2, flat), 1, 1);
        c.num_bits = 8;
    } else if (!strcmp(entry, "dequantize")) {
        add(&c, "q", contiguous(0, ATTN_DTYPE_U8, 2, flat), 1, 0);
        add(&c, "out", contiguous(1, ATTN_DTYPE_F32, 2, flat), 1, 1);
        c.scale = 0.5; c.zero_point = 3;
    }
    return c;
}

/* `entry`'s baseline with no query heads: every output is empty. */
static call empty_outputs(const char *entry, int head_axis) {
    call c = baseline(entry);
    for (int i = 0; i < c.count; i++) {
        const char *n = c.names[i];
        if (!strcmp(n, "q") || !strcmp(n, "q_int8") || !strcmp(n, "out")) c.tensors[i].shape[head_axis] = 0;
        if (!strcmp(n, "q_scale")) c.tensors[i].shape[1] = 0;
        if (!strcmp(n, "softmax_lse")) c.present[i] = 0;
        if (!strcmp(n, "s_dmask")) c.tensors[i].shape[1] = 0;
    }
    return c;
}

static int cases = 0, failed = 0;

/* Runs `c` in a forked child and checks everything listed at the top. */
static void expect(const char *label, call c, attn_status expected, const char *needle) {
    cases++;
    if (getenv("CATALOGUE_VERBOSE")) fprintf(stderr, "case %d: %s/%s\n", cases, c.entry, label);
    int report[2], output[2];
    if (pipe(report) != 0 || pipe(output) != 0) { perror("pipe"); exit(2); }
    fflush(stdout); fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(report[0]); close(output[0]);
        dup2(output[1], 1); dup2(output[1], 2);
        take_snapshots();
        attn_status status = run(&c);
        char message[1024];
        snprintf(message, sizeof message, "%s", attn_last_error());
        char where[256] = "";
        int touched = slots_untouched(where, sizeof where);
        char line[1600];
        int n = snprintf(line, sizeof line, "%d\t%d\t%s\t%s", (int)status, touched, where, message);
        if (write(report[1], line, (size_t)n) < 0) _exit(3);
        _exit(0);
    }
    close(report[1]); close(output[1]);
    char line[1600] = "", printed[256] = "";
    ssize_t got = read(report[0], line, sizeof line - 1);
    line[got > 0 ? got : 0] = 0;
    ssize_t spoke = read(output[0], printed, sizeof printed - 1);
    int wstatus = 0;
    waitpid(pid, &wstatus, 0);
    close(report[0]); close(output[0]);
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        fprintf(stderr, "FAIL %s/%s: child died (%s %d)\n", c.entry, label, WIFSIGNALED(wstatus) ? "signal" : "exit",
                WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus));
        failed++;
        return;
    }
    int status = atoi(line), touched = 0;
    char *fields[4] = {line, NULL, NULL, NULL};
    for (int f = 1; f < 4; f++) {
        fields[f] = fields[f - 1] ? strchr(fields[f - 1], '\t') : NULL;
        if (fields[f]) *fields[f]++ = 0;
    }
    touched = fields[1] ? atoi(fields[1]) : 1;
    const char *message = fields[3] ? fields[3] : "";
    int ok = status == (int)expected && (expected == ATTN_OK || (needle && strstr(message, needle))) &&
             (expected == ATTN_OK || !touched) && spoke <= 0;
    if (!ok) {
        fprintf(stderr, "FAIL %s/%s: status %d (want %d), message \"%s\" (want \"%s\"), %s%s%s\n", c.entry, label, status,
                (int)expected, message, needle ? needle : "", touched ? "memory changed: " : "memory untouched",
                touched ? fields[2] : "", spoke > 0 ? ", printed output" : "");
        failed++;
    }
}

/* Every per-tensor mutation of one entry point. */
static void tensor_cases(const char *entry) {
    call base = baseline(entry);
    char label[128];
    for (int i = 0; i < base.count; i++) {
        const char *name = base.names[i];
        if (!base.present[i]) continue;
        call c = base;
        if (base.required[i]) {
            c.present[i] = 0;
            snprintf(label, sizeof label, "%s NULL", name);
            expect(label, c, ATTN_ERR_NULL_POINTER, name);
        }
        c = base; c.tensors[i].rank = ATTN_MAX_RANK + 1;
        snprintf(label, sizeof label, "%s rank %d", name, ATTN_MAX_RANK + 1);
        expect(label, c, ATTN_ERR_SHAPE, name);
        c = base; c.tensors[i].rank = -1;
        snprintf(label, sizeof label, "%s rank -1", name);
        expect(label, c, ATTN_ERR_SHAPE, name);
        c = base; c.tensors[i].dtype = (attn_dtype)77;
        snprintf(label, sizeof label, "%s dtype 77", name);
        expect(label, c, ATTN_ERR_DTYPE, name);
        c = base; c.tensors[i].data = NULL;
        snprintf(label, sizeof label, "%s data NULL", name);
        expect(label, c, ATTN_ERR_INVALID_ARGUMENT, name);
        c = base; c.tensors[i].strides[0] = INT64_MAX / 2; c.tensors[i].shape[0] = c.tensors[i].shape[0] > 1 ? c.tensors[i].shape[0] : 2;
        snprintf(label, sizeof label, "%s stride 2^62", name);
        /* Either the stride overflows, or the grown dim no longer matches another argument. */
        if (base.tensors[i].shape[0] > 1) expect(label, c, ATTN_ERR_OVERFLOW, name);
        c = base; c.tensors[i].rank = base.tensors[i].rank - 1 > 0 ? base.tensors[i].rank - 1 : base.tensors[i].rank + 1;
        snprintf(label, sizeof label, "%s wrong rank", name);
        expect(label, c, ATTN_ERR_SHAPE, name);
        if (base.is_output[i] && base.tensors[i].rank >= 2) {
            c = base; c.tensors[i].strides[base.tensors[i].rank - 1] = 0;
            snprintf(label, sizeof label, "%s zero stride", name);
            expect(label, c, ATTN_ERR_SHAPE, name);
        }
    }
}

/* Params mutations shared by the flash entries. */
static void flash_param_cases(const char *entry) {
    call c;
    c = baseline(entry); c.params_null = 1; expect("params NULL", c, ATTN_ERR_NULL_POINTER, "params");
    c = baseline(entry); c.flash.struct_size = 8; expect("struct_size 8", c, ATTN_ERR_STRUCT_SIZE, "struct_size");
    c = baseline(entry); c.flash.struct_size = 0xFFFFFFFFu; expect("struct_size max", c, ATTN_ERR_STRUCT_SIZE, "at most 4096");
    c = baseline(entry); c.flash.causal = 2; expect("causal 2", c, ATTN_ERR_INVALID_ARGUMENT, "causal");
    c = baseline(entry); c.flash.has_scale = 1; c.flash.softmax_scale = NAN;
    expect("scale NaN", c, ATTN_ERR_INVALID_ARGUMENT, "softmax_scale");
    c = baseline(entry); c.flash.has_scale = 1; c.flash.softmax_scale = 1e300;
    expect("scale 1e300", c, ATTN_ERR_INVALID_ARGUMENT, "softmax_scale");
    c = baseline(entry); c.flash.window_left = -2; expect("window -2", c, ATTN_ERR_INVALID_ARGUMENT, "window_size");
    c = baseline(entry); c.flash.softcap = -1; expect("softcap -1", c, ATTN_ERR_INVALID_ARGUMENT, "softcap");
    c = baseline(entry); c.flash.softcap = NAN; expect("softcap NaN", c, ATTN_ERR_INVALID_ARGUMENT, "softcap");
    c = baseline(entry); c.flash.dropout_p = 1.5; expect("dropout 1.5", c, ATTN_ERR_INVALID_ARGUMENT, "dropout_p");
    c = baseline(entry); c.flash.reserved = 1; expect("reserved 1", c, ATTN_ERR_INVALID_ARGUMENT, "reserved");
    c = baseline(entry); c.flash.int8_qk = 3; expect("int8_qk 3", c, ATTN_ERR_INVALID_ARGUMENT, "int8_qk");
}

/* The variants' params and their cross-argument rules. */
static void variant_param_cases(void) {
    call c;
    const int64_t low_rank[2] = {3, 2}, other_rank[2] = {3, 1};
    c = baseline("sparse_topk"); c.params_null = 1; expect("params NULL", c, ATTN_ERR_NULL_POINTER, "params");
    c = baseline("sparse_topk"); c.sparse.struct_size = 4; expect("struct_size 4", c, ATTN_ERR_STRUCT_SIZE, "struct_size");
    c = baseline("sparse_topk"); c.sparse.mask_mode = 3; expect("mask_mode 3", c, ATTN_ERR_INVALID_ARGUMENT, "mask_mode");
    c = baseline("sparse_topk"); c.sparse.top_k = 0; expect("top_k 0", c, ATTN_ERR_INVALID_ARGUMENT, "top_k");
    c = baseline("sparse_topk"); c.sparse.top_k = 4; expect("top_k > Sk", c, ATTN_ERR_INVALID_ARGUMENT, "top_k");
    c = baseline("sparse_topk"); c.sparse.has_scale = 2; expect("has_scale 2", c, ATTN_ERR_INVALID_ARGUMENT, "has_scale");
    c = baseline("sparse_topk"); c.sparse.has_scale = 1; c.sparse.softmax_scale = NAN;
    expect("scale NaN", c, ATTN_ERR_INVALID_ARGUMENT, "softmax_scale");
    c = baseline("sparse_topk"); c.sparse.reserved = 1; expect("reserved 1", c, ATTN_ERR_INVALID_ARGUMENT, "reserved");
    c = baseline("sparse_topk"); c.tensors[1].shape[1] = 3; c.tensors[2].shape[1] = 3;
    expect("kv heads do not divide", c, ATTN_ERR_SHAPE, "k.shape[1]");
    c = baseline("sparse_topk"); c.tensors[3].shape[1] = 2; expect("key_mask seq", c, ATTN_ERR_SHAPE, "key_mask");
    c = baseline("aft"); c.params_null = 1; expect("params NULL", c, ATTN_ERR_NULL_POINTER, "params");
    c = baseline("aft"); c.aft.variant = 3; expect("variant 3", c, ATTN_ERR_INVALID_ARGUMENT, "variant");
    c = baseline("aft"); c.aft.causal = 2; expect("causal 2", c, ATTN_ERR_INVALID_ARGUMENT, "causal");
    c = baseline("aft"); c.aft.local_context = 2; expect("local_context on FULL", c, ATTN_ERR_INVALID_ARGUMENT, "local_context");
    c = baseline("aft"); c.aft.outside = 1; expect("outside on FULL", c, ATTN_ERR_INVALID_ARGUMENT, "outside");
    c = baseline("aft"); c.aft.variant = ATTN_AFT_LOCAL; expect("local_context 0", c, ATTN_ERR_INVALID_ARGUMENT, "local_context");
    c = baseline("aft"); c.aft.variant = ATTN_AFT_LOCAL; c.aft.local_context = 1; c.aft.outside = 2;
    expect("outside 2", c, ATTN_ERR_INVALID_ARGUMENT, "outside");
    c = baseline("aft"); c.aft.variant = ATTN_AFT_SIMPLE; expect("bias on SIMPLE", c, ATTN_ERR_INVALID_ARGUMENT, "w_bias");
    c = baseline("aft"); c.present[3] = 0; expect("no bias on FULL", c, ATTN_ERR_INVALID_ARGUMENT, "w_bias");
    c = baseline("aft"); c.tensors[3].shape[1] = 2; expect("w_bias too narrow", c, ATTN_ERR_SHAPE, "w_bias.shape[1]");
    c = baseline("aft"); c.present[3] = 0; c.tensors[4] = contiguous(5, ATTN_DTYPE_F32, 2, low_rank); c.present[4] = 1;
    expect("w_u without w_v", c, ATTN_ERR_INVALID_ARGUMENT, "w_u and w_v");
    c = baseline("aft"); c.tensors[4] = contiguous(5, ATTN_DTYPE_F32, 2, low_rank); c.present[4] = 1;
    c.tensors[5] = contiguous(6, ATTN_DTYPE_F32, 2, low_rank); c.present[5] = 1;
    expect("w_bias and w_u", c, ATTN_ERR_INVALID_ARGUMENT, "w_bias and (w_u, w_v)");
    c = baseline("aft"); c.present[3] = 0; c.tensors[4] = contiguous(5, ATTN_DTYPE_F32, 2, low_rank); c.present[4] = 1;
    c.tensors[5] = contiguous(6, ATTN_DTYPE_F32, 2, other_rank); c.present[5] = 1;
    expect("ranks differ", c, ATTN_ERR_SHAPE, "w_v.shape[1]");
    c = baseline("aft"); c.tensors[1].shape[1] = 2; expect("k length", c, ATTN_ERR_SHAPE, "k.shape[1]");
    c = baseline("aft"); c.tensors[3].dtype = ATTN_DTYPE_F64; expect("w_bias dtype", c, ATTN_ERR_DTYPE, "w_bias");
    c = baseline("linformer"); c.params_null = 1; expect("params NULL", c, ATTN_ERR_NULL_POINTER, "params");
    c = baseline("linformer"); c.linformer.has_scale = 1; c.linformer.softmax_scale = INFINITY;
    expect("scale inf", c, ATTN_ERR_INVALID_ARGUMENT, "softmax_scale");
    c = baseline("linformer"); c.tensors[3].shape[1] = 2; expect("proj_e too short", c, ATTN_ERR_SHAPE, "proj_e.shape[1]");
    c = baseline("linformer"); c.tensors[5].shape[0] = 1; expect("proj_f rows", c, ATTN_ERR_SHAPE, "proj_f.shape[0]");
    c = baseline("linformer"); c.tensors[4].shape[0] = 3; expect("bias_e length", c, ATTN_ERR_SHAPE, "bias_e.shape[0]");
    c = baseline("linformer"); c.tensors[6].dtype = ATTN_DTYPE_F64; expect("bias_f dtype", c, ATTN_ERR_DTYPE, "bias_f");
    c = baseline("linformer"); c.tensors[3].shape[0] = 0; c.tensors[5].shape[0] = 0;
    c.present[4] = 0; c.present[6] = 0; expect("no projected keys", c, ATTN_ERR_SHAPE, "proj_e.shape[0]");
}

static void param_cases(void) {
    call c;
    c = baseline("eager"); c.params_null = 1; expect("params NULL", c, ATTN_ERR_NULL_POINTER, "params");
    c = baseline("eager"); c.eager.struct_size = 4; expect("struct_size 4", c, ATTN_ERR_STRUCT_SIZE, "struct_size");
    c = baseline("eager"); c.eager.mask_mode = 5; expect("mask_mode 5", c, ATTN_ERR_INVALID_ARGUMENT, "mask_mode");
    c = baseline("eager"); c.eager.num_heads = 0; expect("num_heads 0", c, ATTN_ERR_INVALID_ARGUMENT, "num_heads");
    c = baseline("eager"); c.eager.head_dim = -4; expect("head_dim -4", c, ATTN_ERR_INVALID_ARGUMENT, "got -4");
    c = baseline("eager"); c.eager.num_heads = 3; expect("num_heads 3", c, ATTN_ERR_SHAPE, "num_heads");
    c = baseline("sdpa"); c.params_null = 1; expect("params NULL", c, ATTN_ERR_NULL_POINTER, "params");
    c = baseline("sdpa"); c.sdpa.struct_size = 0; expect("struct_size 0", c, ATTN_ERR_STRUCT_SIZE, "struct_size");
    c = baseline("sdpa"); c.sdpa.is_causal = -1; expect("is_causal -1", c, ATTN_ERR_INVALID_ARGUMENT, "is_causal");
    c = baseline("sdpa"); c.sdpa.enable_gqa = 9; expect("enable_gqa 9", c, ATTN_ERR_INVALID_ARGUMENT, "enable_gqa");
    c = baseline("sdpa"); c.sdpa.has_scale = 1; c.sdpa.scale = INFINITY;
    expect("scale inf", c, ATTN_ERR_INVALID_ARGUMENT, "scale");
    c = baseline("sdpa"); c.sdpa.has_scale = 1; c.sdpa.scale = -1e300;
    expect("scale -1e300", c, ATTN_ERR_INVALID_ARGUMENT, "scale");
    c = baseline("sdpa"); c.sdpa.dropout_p = -0.5; expect("dropout -0.5", c, ATTN_ERR_INVALID_ARGUMENT, "dropout_p");
    c = baseline("sdpa"); c.tensors[1].shape[1] = 3; c.tensors[2].shape[1] = 3;
    expect("heads differ", c, ATTN_ERR_SHAPE, "key.shape");
    c = baseline("sdpa"); c.tensors[3] = contiguous(3, ATTN_DTYPE_BOOL, 2, (int64_t[]){4, 4}); c.present[3] = 1;
    expect("mask does not broadcast", c, ATTN_ERR_SHAPE, "attn_mask");
    c = baseline("sdpa"); c.tensors[3] = contiguous(3, ATTN_DTYPE_I32, 2, (int64_t[]){3, 3}); c.present[3] = 1;
    expect("mask int32", c, ATTN_ERR_DTYPE, "attn_mask");
    c = baseline("sdpa"); c.tensors[0].shape[3] = -8; c.tensors[1].shape[3] = -8;
    expect("head dim -8", c, ATTN_ERR_SHAPE, "got -8");
    c = baseline("int8_sdpa"); c.params_null = 1; expect("params NULL", c, ATTN_ERR_NULL_POINTER, "params");
    c = baseline("int8_sdpa"); c.int8.qk_quant = 7; expect("qk_quant 7", c, ATTN_ERR_INVALID_ARGUMENT, "qk_quant");
    c = baseline("int8_sdpa"); c.int8.smooth_k = 2; expect("smooth_k 2", c, ATTN_ERR_INVALID_ARGUMENT, "smooth_k");
    c = baseline("int8_sdpa"); c.int8.struct_size = 3; expect("struct_size 3", c, ATTN_ERR_STRUCT_SIZE, "struct_size");
    const char *flash_entries[] = {"flash", "flash_probs", "varlen", "varlen_probs", "varlen_int8"};
    for (int e = 0; e < 5; e++) flash_param_cases(flash_entries[e]);
    /* The backward entries: the forward's rules, and the gradients' own. */
    flash_param_cases("flash_backward");
    flash_param_cases("varlen_backward");
    /* The block entries: the fixed-length rules, and the diagonal's range. */
    flash_param_cases("flash_block");
    flash_param_cases("flash_block_backward");
    for (int e = 0; e < 2; e++) {
        const char *block = e ? "flash_block_backward" : "flash_block";
        c = baseline(block); c.diagonal = (INT64_C(1) << 30) + 1;
        expect("diagonal 2^30+1", c, ATTN_ERR_INVALID_ARGUMENT, "diagonal");
        c = baseline(block); c.diagonal = INT64_MIN; expect("diagonal INT64_MIN", c, ATTN_ERR_INVALID_ARGUMENT, "diagonal");
        c = baseline(block); c.diagonal = -(INT64_C(1) << 30); expect("diagonal -2^30", c, ATTN_OK, NULL);
        c = baseline(block); c.diagonal = 2; expect("diagonal 2", c, ATTN_OK, NULL);
    }
    c = baseline("sdpa_backward"); c.params_null = 1; expect("params NULL", c, ATTN_ERR_NULL_POINTER, "params");
    c = baseline("sdpa_backward"); c.sdpa.is_causal = 3; expect("is_causal 3", c, ATTN_ERR_INVALID_ARGUMENT, "is_causal");
    c = baseline("sdpa_backward"); c.tensors[7].shape[2] = 2; c.tensors[7].strides[1] = 8;
    expect("dquery shape", c, ATTN_ERR_SHAPE, "dquery");
    c = baseline("sdpa_backward"); c.tensors[0].dtype = ATTN_DTYPE_F64;
    expect("dout dtype", c, ATTN_ERR_DTYPE, "dout");
    c = baseline("sdpa_backward"); c.tensors[6].shape[2] = 2; expect("lse shape", c, ATTN_ERR_SHAPE, "lse");
    c = baseline("eager_backward"); c.params_null = 1; expect("params NULL", c, ATTN_ERR_NULL_POINTER, "params");
    c = baseline("eager_backward"); c.eager.mask_mode = 2; expect("mask_mode 2", c, ATTN_ERR_INVALID_ARGUMENT, "mask_mode");
    c = baseline("eager_backward"); c.tensors[1].shape[3] = 4; c.tensors[1].strides[2] = 4;
    expect("dweights seq_k", c, ATTN_ERR_SHAPE, "dweights");
    c = baseline("eager_backward"); c.tensors[0].shape[1] = 2; expect("dout seq", c, ATTN_ERR_SHAPE, "dout");
    c = baseline("eager_backward"); c.tensors[7].shape[1] = 2; expect("dk seq", c, ATTN_ERR_SHAPE, "dk");
    c = baseline("eager_backward"); c.tensors[1].dtype = ATTN_DTYPE_F64;
    expect("dweights dtype", c, ATTN_ERR_DTYPE, "dweights");
    c = baseline("eager_backward"); c.tensors[8].dtype = ATTN_DTYPE_BF16; expect("dv dtype", c, ATTN_ERR_DTYPE, "dv");
    c = baseline("eager_backward"); c.present[0] = 0; c.present[1] = 0;
    expect("no gradient at all is zero gradients", c, ATTN_OK, NULL);
    c = baseline("sdpa_lse"); c.tensors[5].shape[1] = 3; expect("lse heads", c, ATTN_ERR_SHAPE, "lse");
    c = baseline("flash_backward"); c.flash.int8_qk = 1; expect("int8 backward", c, ATTN_ERR_INVALID_ARGUMENT, "int8");
    c = baseline("flash_backward"); c.tensors[8].shape[1] = 2; c.tensors[8].strides[0] = 16;
    expect("dk shape", c, ATTN_ERR_SHAPE, "dk");
    c = baseline("varlen_backward"); fill_index(3, 0, 4, 5);
    expect("cu_seqlens_q longer than max", c, ATTN_ERR_INVALID_ARGUMENT, "max_seqlen_q");
    c = baseline("varlen_backward"); c.tensors[10].dtype = ATTN_DTYPE_F16; expect("dk dtype", c, ATTN_ERR_DTYPE, "dk");
    /* Calls with no output elements are still checked in full (found by Tests/fuzz):
     * no query heads, so out, softmax_lse and s_dmask are all empty. */
    for (int e = 0; e < 5; e++) {
        const char *entry = flash_entries[e];
        int varlen = !strncmp(entry, "varlen", 6), head_axis = varlen ? 1 : 2;
        char label[96];
        c = empty_outputs(entry, head_axis);
        c.flash.dropout_p = NAN;
        snprintf(label, sizeof label, "%s empty, dropout NaN", entry);
        expect(label, c, ATTN_ERR_INVALID_ARGUMENT, "dropout_p");
        c = empty_outputs(entry, head_axis);
        c.flash.has_scale = 1; c.flash.softmax_scale = INFINITY;
        snprintf(label, sizeof label, "%s empty, scale inf", entry);
        expect(label, c, ATTN_ERR_INVALID_ARGUMENT, "softmax_scale");
        c = empty_outputs(entry, head_axis);
        c.tensors[0].shape[0] = -8;
        snprintf(label, sizeof label, "%s empty, q.shape[0] -8", entry);
        expect(label, c, ATTN_ERR_SHAPE, "-8");
    }
    c = empty_outputs("varlen_int8", 1); c.flash.dropout_p = 0.5;
    expect("varlen_int8 empty, dropout 0.5", c, ATTN_ERR_INVALID_ARGUMENT, "dropout_p");
    c = empty_outputs("flash", 2); c.flash.int8_qk = 1; c.flash.smooth_k = 1; c.flash.softcap = 5;
    expect("flash int8 empty, smooth_k with softcap", c, ATTN_ERR_INVALID_ARGUMENT, "smooth_k");
    c = baseline("varlen"); fill_index(3, 0, 4, 5); expect("cu_seqlens_q longer than max", c, ATTN_ERR_INVALID_ARGUMENT,
                                                        "max_seqlen_q");
    c = baseline("varlen"); fill_index(3, 1, 2, 5); expect("cu_seqlens_q not from 0", c, ATTN_ERR_INVALID_ARGUMENT,
                                                        "cu_seqlens_q");
    c = baseline("varlen"); fill_index(3, 0, 3, 2); expect("cu_seqlens_q decreasing", c, ATTN_ERR_INVALID_ARGUMENT,
                                                        "cu_seqlens_q");
    c = baseline("varlen"); fill_index(7, 0, 2, 6); expect("cu_seqlens_k past the keys", c, ATTN_ERR_INVALID_ARGUMENT,
                                                        "cu_seqlens_k");
    c = baseline("varlen"); c.flash.max_seqlen_q = -1; expect("max_seqlen -1", c, ATTN_ERR_INVALID_ARGUMENT, "max_seqlen");
    c = baseline("varlen"); c.tensors[3].dtype = ATTN_DTYPE_F32; expect("cu_seqlens f32", c, ATTN_ERR_DTYPE, "cu_seqlens_q");
    c = baseline("varlen_probs"); c.flash.dropout_p = 0.5; c.tensors[8].shape[3] = 1;
    expect("s_dmask too narrow", c, ATTN_ERR_SHAPE, "s_dmask");
    c = baseline("varlen_int8"); c.tensors[2].shape[2] = 3; c.tensors[2].strides[0] = 6; c.tensors[2].strides[1] = 3;
    expect("k_int8 head dim", c, ATTN_ERR_SHAPE, "k_int8.shape[2]");
    c = baseline("varlen_int8"); c.flash.dropout_p = 0.1; expect("dropout on int8", c, ATTN_ERR_INVALID_ARGUMENT, "dropout_p");
    /* Decoding with a KV cache: every rule checked before the first byte is appended. */
    c = baseline("kvcache"); expect("valid call", c, ATTN_OK, NULL);
    c = baseline("kvcache"); c.params_null = 1; expect("params NULL", c, ATTN_ERR_NULL_POINTER, "params");
    c = baseline("kvcache"); c.kvcache.struct_size = 0xFFFFFFFFu; expect("struct_size max", c, ATTN_ERR_STRUCT_SIZE, "struct_size");
    c = baseline("kvcache"); c.kvcache.reserved = 3; expect("reserved 3", c, ATTN_ERR_INVALID_ARGUMENT, "reserved");
    c = baseline("kvcache"); c.kvcache.rotary_interleaved = 2; expect("rotary_interleaved 2", c, ATTN_ERR_INVALID_ARGUMENT, "rotary_interleaved");
    c = baseline("kvcache"); c.kvcache.num_splits = -1; expect("num_splits -1", c, ATTN_ERR_INVALID_ARGUMENT, "num_splits");
    c = baseline("kvcache"); c.kvcache.window_left = -2; expect("window -2", c, ATTN_ERR_INVALID_ARGUMENT, "window_size");
    c = baseline("kvcache"); c.kvcache.softcap = NAN; expect("softcap NaN", c, ATTN_ERR_INVALID_ARGUMENT, "softcap");
    c = baseline("kvcache"); c.kvcache.has_scale = 1; c.kvcache.softmax_scale = INFINITY;
    expect("scale inf", c, ATTN_ERR_INVALID_ARGUMENT, "softmax_scale");
    c = baseline("kvcache"); fill_index(6, 4, 0, 0); expect("cache full", c, ATTN_ERR_INVALID_ARGUMENT, "cache_seqlens");
    c = baseline("kvcache"); fill_index(6, -1, 0, 0); expect("cache_seqlens -1", c, ATTN_ERR_INVALID_ARGUMENT, "cache_seqlens");
    c = baseline("kvcache"); c.present[4] = 0; expect("k without v", c, ATTN_ERR_INVALID_ARGUMENT, "v");
    c = baseline("kvcache"); c.tensors[3].dtype = ATTN_DTYPE_F16; expect("k dtype", c, ATTN_ERR_DTYPE, "k.dtype");
    c = baseline("kvcache"); c.tensors[1].dtype = ATTN_DTYPE_F64; c.tensors[2].dtype = ATTN_DTYPE_F64;
    expect("cache f64", c, ATTN_ERR_DTYPE, "k_cache");
    c = baseline("kvcache"); c.tensors[1].shape[2] = 3; c.tensors[2].shape[2] = 3;
    expect("Hk not dividing Hq", c, ATTN_ERR_SHAPE, "k_cache.shape[2]");
    c = baseline("kvcache"); c.tensors[8] = contiguous(7, ATTN_DTYPE_I32, 1, (int64_t[]){2}); c.present[8] = 1;
    fill_index(7, 0, 5, 0); expect("cache_batch_idx out of range", c, ATTN_ERR_INVALID_ARGUMENT, "cache_batch_idx");
    c = baseline("kvcache"); c.tensors[9] = contiguous(7, ATTN_DTYPE_I32, 1, (int64_t[]){2}); c.present[9] = 1;
    fill_index(7, 0, 3, 0); expect("cache_leftpad past cache_seqlens", c, ATTN_ERR_INVALID_ARGUMENT, "cache_leftpad");
    c = baseline("kvcache"); c.tensors[10] = contiguous(7, ATTN_DTYPE_I32, 2, (int64_t[]){2, 2}); c.present[10] = 1;
    fill_index(7, 9, 0, 1); expect("block_table entry out of range", c, ATTN_ERR_INVALID_ARGUMENT, "block_table");
    c = baseline("kvcache"); c.tensors[10] = contiguous(7, ATTN_DTYPE_I32, 2, (int64_t[]){2, 1}); c.present[10] = 1;
    c.tensors[1].shape[1] = 2; c.tensors[2].shape[1] = 2; fill_index(7, 0, 1, 0); fill_index(6, 2, 1, 0);
    expect("block_table too short", c, ATTN_ERR_INVALID_ARGUMENT, "cache_seqlens");
    c = baseline("kvcache"); c.tensors[5] = contiguous(8, ATTN_DTYPE_F32, 2, (int64_t[]){2, 2}); c.present[5] = 1;
    c.tensors[6] = contiguous(9, ATTN_DTYPE_F32, 2, (int64_t[]){2, 2}); c.present[6] = 1;
    expect("rotary table too short", c, ATTN_ERR_SHAPE, "rotary_cos");
    c = baseline("kvcache"); c.tensors[5] = contiguous(8, ATTN_DTYPE_F32, 2, (int64_t[]){8, 2}); c.present[5] = 1;
    expect("rotary_cos without rotary_sin", c, ATTN_ERR_INVALID_ARGUMENT, "rotary_sin");
    c = baseline("kvcache_int8"); c.tensors[1].dtype = ATTN_DTYPE_F32; expect("float k_cache on the int8 entry", c, ATTN_ERR_DTYPE, "k_cache");
    c = baseline("kvcache_int8"); c.tensors[4].shape[1] = 3; expect("v_scale shape", c, ATTN_ERR_SHAPE, "v_scale");
    c = baseline("kvcache_int8"); fill_index(6, 4, 0, 0); expect("int8 cache full", c, ATTN_ERR_INVALID_ARGUMENT, "cache_seqlens");
    c = baseline("merge"); expect("valid call", c, ATTN_OK, NULL);
    c = baseline("merge"); c.tensors[1].shape[1] = 3; expect("lse_a shape", c, ATTN_ERR_SHAPE, "lse_a");
    c = baseline("merge"); c.tensors[2].dtype = ATTN_DTYPE_F64; expect("out_b dtype", c, ATTN_ERR_DTYPE, "out_b");
    c = baseline("merge"); c.tensors[3].dtype = ATTN_DTYPE_F16; expect("lse_b f16", c, ATTN_ERR_DTYPE, "lse_b");
    c = baseline("quantize"); c.num_bits = 1; expect("num_bits 1", c, ATTN_ERR_INVALID_ARGUMENT, "num_bits");
    c = baseline("quantize"); c.num_bits = 9; expect("num_bits 9", c, ATTN_ERR_INVALID_ARGUMENT, "num_bits");
    c = baseline("quantize"); c.params_null = 1; expect("scale NULL", c, ATTN_ERR_NULL_POINTER, "scale");
    c = baseline("dequantize"); c.scale = NAN; expect("scale NaN", c, ATTN_ERR_INVALID_ARGUMENT, "scale");
    c = baseline("dequantize"); c.zero_point = INFINITY; expect("zero_point inf", c, ATTN_ERR_INVALID_ARGUMENT, "zero_point");
    /* Threads. */
    cases++;
    if (attn_set_num_threads(0) != ATTN_ERR_INVALID_ARGUMENT || !strstr(attn_last_error(), "num_threads")) {
        fprintf(stderr, "FAIL set_num_threads(0): %s\n", attn_last_error()); failed++;
    }
    cases++;
    if (attn_set_num_threads(ATTNKIT_MAX_THREADS + 1) != ATTN_ERR_INVALID_ARGUMENT || !strstr(attn_last_error(), "1...")) {
        fprintf(stderr, "FAIL set_num_threads(max + 1): %s\n", attn_last_error()); failed++;
    }
    cases++;
    if (attn_get_num_threads(NULL) != ATTN_ERR_NULL_POINTER || attn_get_isa(NULL) != ATTN_ERR_NULL_POINTER ||
        attn_get_available_isas(NULL) != ATTN_ERR_NULL_POINTER || attn_get_int8_pv_dtype(NULL) != ATTN_ERR_NULL_POINTER) {
        fprintf(stderr, "FAIL a NULL out-pointer accepted\n"); failed++;
    }
}

/* Positive controls: the same SDPA on strided views and on contiguous copies, bitwise. */
static void positive_controls(void) {
    enum { B = 1, H = 2, L = 5, D = 3 };
    float q[B * H * L * D], k[B * H * L * D], v[B * H * L * D];
    for (int i = 0; i < B * H * L * D; i++) {
        q[i] = sinf((float)i * 0.7f); k[i] = cosf((float)i * 0.3f); v[i] = (float)(i % 7) - 3.0f;
    }
    attn_sdpa_params params = {sizeof(attn_sdpa_params), 1, 0, 0, 0.0, 0.0, 0};
    const int64_t shape[4] = {B, H, L, D};
    attn_tensor tq = contiguous(0, ATTN_DTYPE_F32, 4, shape), tk = tq, tv = tq, to = tq;
    tq.data = q; tk.data = k; tv.data = v;
    float expected[B * H * L * D], out[B * H * L * D];
    to.data = expected;
    cases++;
    if (attn_sdpa_forward(&params, &tq, &tk, &tv, NULL, &to) != ATTN_OK) {
        fprintf(stderr, "FAIL contiguous control: %s\n", attn_last_error()); failed++; return;
    }
    /* 1. q read through negative strides over L: a reversed copy of reversed rows. */
    float reversed[B * H * L * D];
    for (int h = 0; h < H; h++)
        for (int i = 0; i < L; i++)
            for (int d = 0; d < D; d++) reversed[(h * L + (L - 1 - i)) * D + d] = q[(h * L + i) * D + d];
    attn_tensor rq = tq;
    rq.data = reversed + (L - 1) * D;
    rq.strides[2] = -D;
    attn_tensor ro = to; ro.data = out;
    memset(out, 0, sizeof out);
    cases++;
    if (attn_sdpa_forward(&params, &rq, &tk, &tv, NULL, &ro) != ATTN_OK || memcmp(out, expected, sizeof out) != 0) {
        fprintf(stderr, "FAIL negative-stride control: %s\n", attn_last_error()); failed++;
    }
    /* 2. Odd strides: every tensor inside a buffer with 2 unused floats after each row of D. */
    enum { PAD = D + 2 };
    float qp[B * H * L * PAD], kp[B * H * L * PAD], vp[B * H * L * PAD], op[B * H * L * PAD];
    for (int r = 0; r < B * H * L; r++)
        for (int d = 0; d < PAD; d++) {
            qp[r * PAD + d] = d < D ? q[r * D + d] : NAN;
            kp[r * PAD + d] = d < D ? k[r * D + d] : NAN;
            vp[r * PAD + d] = d < D ? v[r * D + d] : NAN;
            op[r * PAD + d] = -7.0f;
        }
    attn_tensor pq = tq, pk = tk, pv = tv, po = to;
    attn_tensor *padded[4] = {&pq, &pk, &pv, &po};
    float *buffers[4] = {qp, kp, vp, op};
    for (int i = 0; i < 4; i++) {
        padded[i]->data = buffers[i];
        padded[i]->strides[2] = PAD; padded[i]->strides[1] = L * PAD; padded[i]->strides[0] = H * L * PAD;
    }
    cases++;
    int bad = attn_sdpa_forward(&params, &pq, &pk, &pv, NULL, &po) != ATTN_OK;
    for (int r = 0; r < B * H * L && !bad; r++)
        for (int d = 0; d < PAD; d++) {
            const float want = d < D ? expected[r * D + d] : -7.0f;   /* padding left as it was */
            if (memcmp(&op[r * PAD + d], &want, sizeof want) != 0) bad = 1;
        }
    if (bad) { fprintf(stderr, "FAIL padded control: %s\n", attn_last_error()); failed++; }
    /* 3. Broadcast: K and V of head 0 for both heads (stride 0 over heads) against copies. */
    float kb[B * H * L * D], vb[B * H * L * D], eb[B * H * L * D], ob[B * H * L * D];
    for (int h = 0; h < H; h++)
        for (int j = 0; j < L * D; j++) { kb[h * L * D + j] = k[j]; vb[h * L * D + j] = v[j]; }
    attn_tensor ck = tk, cv = tv, ce = to;
    ck.data = kb; cv.data = vb; ce.data = eb;
    attn_tensor bk = tk, bv = tv, bo = to;
    bk.strides[1] = 0; bv.strides[1] = 0; bo.data = ob;
    cases++;
    if (attn_sdpa_forward(&params, &tq, &ck, &cv, NULL, &ce) != ATTN_OK ||
        attn_sdpa_forward(&params, &tq, &bk, &bv, NULL, &bo) != ATTN_OK || memcmp(eb, ob, sizeof ob) != 0) {
        fprintf(stderr, "FAIL broadcast control: %s\n", attn_last_error()); failed++;
    }
}

int main(void) {
    fill_slots();
    const char *entries[] = {"eager", "sdpa", "int8_sdpa", "flash", "flash_probs", "varlen", "varlen_probs",
                             "varlen_int8", "quantize", "dequantize", "kvcache", "merge", "kvcache_int8",
                             "sdpa_lse", "sdpa_backward", "flash_backward", "varlen_backward", "eager_backward",
                             "sparse_topk", "aft", "linformer", "flash_block", "flash_block_backward"};
    const int entry_count = (int)(sizeof entries / sizeof entries[0]);
    /* Each baseline must be valid: the mutations below then break one thing each. */
    for (int e = 0; e < entry_count; e++) {
        call c = baseline(entries[e]);
        if (!strcmp(entries[e], "flash_probs") || !strcmp(entries[e], "varlen_probs")) c.flash.dropout_p = 0.25;
        expect("baseline", c, ATTN_OK, NULL);
    }
    for (int e = 0; e < entry_count; e++) tensor_cases(entries[e]);
    param_cases();
    variant_param_cases();
    positive_controls();
    printf("catalogue: %d passed, %d failed\n", cases - failed, failed);
    return failed != 0;
}
