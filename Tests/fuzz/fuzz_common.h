/* Shared pieces of the libFuzzer harnesses (one harness per entry family):
 *   - decoding choices from the fuzzer's bytes;
 *   - guarded buffers: canaries around every tensor's span, snapshots of inputs
 *     and of the bytes of outputs that are not elements (padding, gaps);
 *   - strided layouts (contiguous, padded, reversed, broadcast, permuted);
 *   - the oracles: a rejected call writes nothing and leaves a message naming
 *     an argument; an accepted call matches an fp64 reference on small shapes
 *     and gives the same bits at another thread count.
 * A violated oracle prints what broke and aborts, which libFuzzer reports as a
 * crash with the input that caused it. */
#ifndef ATTNKIT_FUZZ_COMMON_H
#define ATTNKIT_FUZZ_COMMON_H

#include <attnkit.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Decoding the input ---- */

typedef struct {
    const uint8_t *data;
    size_t size, at;
    uint64_t fill_state; /* seeds the values written into tensors */
} fz_input;

static inline unsigned fz_byte(fz_input *in) { return in->at < in->size ? in->data[in->at++] : 0; }
/* A choice in [0, n). */
static inline unsigned fz_pick(fz_input *in, unsigned n) { return n ? fz_byte(in) % n : 0; }
/* True for about `percent` of byte values. */
static inline int fz_chance(fz_input *in, unsigned percent) { return fz_byte(in) * 100u < percent * 256u; }
static inline unsigned fz_pick_of(fz_input *in, const unsigned *choices, unsigned n) { return choices[fz_pick(in, n)]; }

static uint64_t fz_next_random(fz_input *in) {
    in->fill_state = in->fill_state * 6364136223846793005ull + 1442695040888963407ull;
    return in->fill_state >> 33;
}

/* ---- Element access by dtype ---- */

static inline size_t fz_dtype_size(attn_dtype dtype) {
    switch (dtype) {
    case ATTN_DTYPE_F32: case ATTN_DTYPE_I32: return 4;
    case ATTN_DTYPE_F64: case ATTN_DTYPE_I64: return 8;
    case ATTN_DTYPE_F16: case ATTN_DTYPE_BF16: return 2;
    default: return 1;
    }
}

static inline double fz_load(const void *p, attn_dtype dtype) {
    switch (dtype) {
    case ATTN_DTYPE_F32: return *(const float *)p;
    case ATTN_DTYPE_F64: return *(const double *)p;
    case ATTN_DTYPE_F16: return (double)*(const _Float16 *)p;
    case ATTN_DTYPE_BF16: {
        uint32_t bits = (uint32_t)*(const uint16_t *)p << 16;
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
    case ATTN_DTYPE_I8: return *(const int8_t *)p;
    case ATTN_DTYPE_U8: case ATTN_DTYPE_BOOL: return *(const uint8_t *)p;
    case ATTN_DTYPE_I32: return *(const int32_t *)p;
    case ATTN_DTYPE_I64: return (double)*(const int64_t *)p;
    default: return 0;
    }
}

/* Stores `value`, which the callers keep exactly representable in `dtype`. */
static inline void fz_store(void *p, attn_dtype dtype, double value) {
    switch (dtype) {
    case ATTN_DTYPE_F32: *(float *)p = (float)value; break;
    case ATTN_DTYPE_F64: *(double *)p = value; break;
    case ATTN_DTYPE_F16: *(_Float16 *)p = (_Float16)value; break;
    case ATTN_DTYPE_BF16: {
        float f = (float)value;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        *(uint16_t *)p = (uint16_t)(bits >> 16);
        break;
    }
    case ATTN_DTYPE_I8: *(int8_t *)p = (int8_t)value; break;
    case ATTN_DTYPE_U8: case ATTN_DTYPE_BOOL: *(uint8_t *)p = (uint8_t)value; break;
    case ATTN_DTYPE_I32: *(int32_t *)p = (int32_t)value; break;
    case ATTN_DTYPE_I64: *(int64_t *)p = (int64_t)value; break;
    }
}

static inline int fz_is_float(attn_dtype dtype) {
    return dtype == ATTN_DTYPE_F32 || dtype == ATTN_DTYPE_F64 || dtype == ATTN_DTYPE_F16 || dtype == ATTN_DTYPE_BF16;
}

static int64_t fz_elements(const attn_tensor *t) {
    int64_t n = 1;
    for (int a = 0; a < t->rank; a++) n *= t->shape[a];
    return n;
}

static int64_t fz_offset(const attn_tensor *t, const int64_t *index) {
    int64_t offset = 0;
    for (int a = 0; a < t->rank; a++) offset += index[a] * t->strides[a];
    return offset;
}

static inline void *fz_at(const attn_tensor *t, const int64_t *index) {
    return (char *)t->data + fz_offset(t, index) * (int64_t)fz_dtype_size(t->dtype);
}

static inline double fz_get(const attn_tensor *t, const int64_t *index) { return fz_load(fz_at(t, index), t->dtype); }

/* Steps `index` through the row-major order of `t`'s shape; 0 after the last element. */
static inline int fz_advance(const attn_tensor *t, int64_t *index) {
    for (int a = t->rank - 1; a >= 0; a--) {
        if (++index[a] < t->shape[a]) return 1;
        index[a] = 0;
    }
    return 0;
}

/* ---- Guarded buffers ---- */

enum { FZ_GUARD = 64, FZ_MAX_BUFFERS = 24, FZ_CANARY = 0xA5 };

typedef struct {
    unsigned char *raw;      /* FZ_GUARD canary bytes, the span, FZ_GUARD canary bytes */
    unsigned char *snapshot; /* the whole allocation as it was before the call */
    size_t span_bytes;
    attn_tensor *tensor;     /* the descriptor this buffer backs (for element positions) */
    int is_output;
    const char *name;
} fz_buffer;

static fz_buffer fz_buffers[FZ_MAX_BUFFERS];
static int fz_buffer_count;

/* The harness's own description of the call (its scalar options), printed on a failure. */
static void (*fz_describe)(void);

static inline void fz_fail(const char *what, const char *detail) {
    fprintf(stderr, "attnkit fuzz oracle: %s: %s (last error: %s)\n", what, detail, attn_last_error());
    if (fz_describe) fz_describe();
    for (int i = 0; i < fz_buffer_count; i++) {
        const attn_tensor *t = fz_buffers[i].tensor;
        fprintf(stderr, "  %s: dtype %d data %s shape [", fz_buffers[i].name, t->dtype, t->data ? "set" : "NULL");
        for (int a = 0; a < t->rank && a < ATTN_MAX_RANK; a++) fprintf(stderr, "%s%lld", a ? ", " : "", (long long)t->shape[a]);
        fprintf(stderr, "] strides [");
        for (int a = 0; a < t->rank && a < ATTN_MAX_RANK; a++) fprintf(stderr, "%s%lld", a ? ", " : "", (long long)t->strides[a]);
        fprintf(stderr, "]\n");
    }
    abort();
}

static inline void fz_release_all(void) {
    for (int i = 0; i < fz_buffer_count; i++) {
        free(fz_buffers[i].raw);
        free(fz_buffers[i].snapshot);
    }
    fz_buffer_count = 0;
}

/* A value for an input element: mostly k/8 in [-2, 2] (exact in every float
 * dtype), sometimes a special value when `specials` is set. */
static inline double fz_value(fz_input *in, int specials) {
    uint64_t r = fz_next_random(in);
    if (specials && r % 97 == 0) {
        const double special[] = {NAN, INFINITY, -INFINITY, 1024.0, -1024.0, 0.0};
        return special[(r / 97) % 6];
    }
    return (double)((int)(r % 33) - 16) / 8.0;
}

enum fz_layout { FZ_CONTIGUOUS, FZ_PADDED, FZ_REVERSED, FZ_BROADCAST, FZ_PERMUTED, FZ_LAYOUTS };

/* Set while making tensors whose entries must differ (index tensors): no broadcast layout. */
static int fz_no_broadcast;

/* Strides for `layout`; the broadcast layout is only used for inputs. */
static inline void fz_strides(fz_input *in, int rank, const int64_t *shape, int layout, int64_t *strides) {
    int order[ATTN_MAX_RANK];
    for (int a = 0; a < rank; a++) order[a] = a;
    if (layout == FZ_PERMUTED && rank >= 2) { /* swap two axes' places in memory */
        int x = (int)fz_pick(in, (unsigned)rank), y = (int)fz_pick(in, (unsigned)rank);
        int t = order[x]; order[x] = order[y]; order[y] = t;
    }
    int64_t running = 1;
    for (int i = rank - 1; i >= 0; i--) {
        int a = order[i];
        strides[a] = running;
        int64_t extent = shape[a] > 0 ? shape[a] : 1;
        running *= layout == FZ_PADDED ? extent + 1 + (int64_t)fz_pick(in, 3) : extent;
    }
    if (layout == FZ_REVERSED && rank >= 1) {
        int a = (int)fz_pick(in, (unsigned)rank);
        strides[a] = -strides[a];
    }
    if (layout == FZ_BROADCAST && rank >= 1) {
        int a = (int)fz_pick(in, (unsigned)rank);
        strides[a] = 0;
    }
}

/* Allocates a guarded buffer for a tensor of `shape` in a layout chosen by the
 * input, fills inputs with values and outputs with a 0x5A pattern, and returns
 * the descriptor through `t`. */
static inline void fz_make(fz_input *in, attn_tensor *t, const char *name, attn_dtype dtype, int rank, const int64_t *shape,
                    int is_output, int specials) {
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->rank = rank;
    int layout = (int)fz_pick(in, FZ_LAYOUTS + 3); /* contiguous most often */
    if (layout >= FZ_LAYOUTS) layout = FZ_CONTIGUOUS;
    if ((is_output || fz_no_broadcast) && layout == FZ_BROADCAST) layout = FZ_CONTIGUOUS;
    for (int a = 0; a < rank; a++) t->shape[a] = shape[a];
    fz_strides(in, rank, shape, layout, t->strides);
    int64_t low = 0, high = 0, elements = 1;
    for (int a = 0; a < rank; a++) {
        elements *= shape[a];
        if (shape[a] <= 0) continue;
        int64_t reach = t->strides[a] * (shape[a] - 1);
        if (reach < 0) low += reach; else high += reach;
    }
    size_t element_size = fz_dtype_size(dtype);
    size_t span = elements > 0 ? (size_t)(high - low + 1) * element_size : 0;
    if (fz_buffer_count == FZ_MAX_BUFFERS) fz_fail("harness", "too many buffers");
    fz_buffer *b = &fz_buffers[fz_buffer_count++];
    b->raw = malloc(span + 2 * FZ_GUARD);
    b->snapshot = malloc(span + 2 * FZ_GUARD);
    b->span_bytes = span;
    b->tensor = t;
    b->is_output = is_output;
    b->name = name;
    memset(b->raw, FZ_CANARY, FZ_GUARD);
    memset(b->raw + FZ_GUARD + span, FZ_CANARY, FZ_GUARD);
    memset(b->raw + FZ_GUARD, 0x5A, span);
    /* An empty tensor gets NULL data about half the time, as the header allows. */
    t->data = elements == 0 && fz_chance(in, 50) ? NULL : b->raw + FZ_GUARD + (size_t)(-low) * element_size;
    if (!is_output && elements > 0) {
        int64_t index[ATTN_MAX_RANK] = {0};
        do fz_store(fz_at(t, index), dtype, fz_is_float(dtype) ? fz_value(in, specials) : 0);
        while (fz_advance(t, index));
    }
}

/* fz_make for index tensors (cu_seqlens, cache_seqlens, block_table, ...): any
 * layout but broadcast, whose entries would all be one value. */
static inline void fz_make_index(fz_input *in, attn_tensor *t, const char *name, attn_dtype dtype, int rank,
                                 const int64_t *shape) {
    fz_no_broadcast = 1;
    fz_make(in, t, name, dtype, rank, shape, 0, 0);
    fz_no_broadcast = 0;
}

/* Overwrites the elements of `t` (made by fz_make) with the values of `value(index)`. */
#define FZ_FILL(t, expression)                                          \
    do {                                                                \
        int64_t index[ATTN_MAX_RANK] = {0};                             \
        if (fz_elements(t) > 0) do fz_store(fz_at(t, index), (t)->dtype, (expression)); \
            while (fz_advance((t), index));                             \
    } while (0)

static inline void fz_snapshot(void) {
    for (int i = 0; i < fz_buffer_count; i++)
        memcpy(fz_buffers[i].snapshot, fz_buffers[i].raw, fz_buffers[i].span_bytes + 2 * FZ_GUARD);
}

/* Canaries and inputs unchanged; for outputs, when `outputs_may_change`, only
 * the bytes of their elements may differ from the snapshot. */
static inline void fz_check_buffers(int outputs_may_change, const char *when) {
    for (int i = 0; i < fz_buffer_count; i++) {
        fz_buffer *b = &fz_buffers[i];
        size_t total = b->span_bytes + 2 * FZ_GUARD;
        if (b->is_output && outputs_may_change && b->tensor->data && fz_elements(b->tensor) > 0) {
            /* Let the element bytes through: copy them into the snapshot first. */
            size_t size = fz_dtype_size(b->tensor->dtype);
            int64_t index[ATTN_MAX_RANK] = {0};
            do {
                unsigned char *p = fz_at(b->tensor, index);
                memcpy(b->snapshot + (p - b->raw), p, size);
            } while (fz_advance(b->tensor, index));
        }
        if (memcmp(b->snapshot, b->raw, total) != 0) {
            char detail[160];
            for (size_t at = 0; at < total; at++) {
                if (b->snapshot[at] != b->raw[at]) {
                    snprintf(detail, sizeof detail, "%s: byte %zd of %s changed (%s)", when, (ssize_t)at - FZ_GUARD,
                             b->name, at < FZ_GUARD || at >= FZ_GUARD + b->span_bytes ? "canary" : "not an output element");
                    break;
                }
            }
            fz_fail("buffer", detail);
        }
    }
}

/* A rejected call: a known error status, a "[function] ..." message, nothing written. */
static inline void fz_check_rejected(attn_status status) {
    if (status <= ATTN_OK || status > ATTN_ERR_STRUCT_SIZE)
        fz_fail("status", attn_status_string(status));
    const char *message = attn_last_error();
    if (message[0] != '[' || !strchr(message, ']') || strlen(message) < 8) fz_fail("message", message);
    fz_check_buffers(0, "rejected call");
}

/* ---- The rerun at another thread count ---- */

/* Copies of every output's element bytes, to compare a second run bitwise. */
static unsigned char *fz_saved[FZ_MAX_BUFFERS];

static inline void fz_save_outputs(void) {
    for (int i = 0; i < fz_buffer_count; i++) {
        fz_saved[i] = NULL;
        if (!fz_buffers[i].is_output) continue;
        fz_saved[i] = malloc(fz_buffers[i].span_bytes + 2 * FZ_GUARD);
        memcpy(fz_saved[i], fz_buffers[i].raw, fz_buffers[i].span_bytes + 2 * FZ_GUARD);
        memset(fz_buffers[i].raw + FZ_GUARD, 0x5A, fz_buffers[i].span_bytes); /* as before the first run */
    }
}

static inline void fz_compare_rerun(int threads_first, int threads_second) {
    for (int i = 0; i < fz_buffer_count; i++) {
        if (!fz_saved[i]) continue;
        if (memcmp(fz_saved[i], fz_buffers[i].raw, fz_buffers[i].span_bytes + 2 * FZ_GUARD) != 0) {
            char detail[240];
            size_t at = 0;
            while (fz_saved[i][at] == fz_buffers[i].raw[at]) at++;
            size_t size = fz_dtype_size(fz_buffers[i].tensor->dtype);
            size_t element = (at - FZ_GUARD) / size * size + FZ_GUARD;
            snprintf(detail, sizeof detail, "%s differs between %d and %d threads at byte %zu: %.9g vs %.9g",
                     fz_buffers[i].name, threads_first, threads_second, at - FZ_GUARD,
                     fz_load(fz_saved[i] + element, fz_buffers[i].tensor->dtype),
                     fz_load(fz_buffers[i].raw + element, fz_buffers[i].tensor->dtype));
            fz_fail("determinism", detail);
        }
        free(fz_saved[i]);
        fz_saved[i] = NULL;
    }
}

/* Set for calls whose descriptors claim more than their buffers hold (the
 * huge-but-empty ones): the reference must not walk their inputs. */
static int fz_no_reference;

/* What the harness broke on purpose, for the failure message. */
static const char *fz_broken = "";

/* The status oracles: a call broken on purpose must be rejected cleanly; any
 * other must succeed and write only output elements. Returns whether it succeeded. */
static inline int fz_outcome(attn_status status, int must_reject) {
    if (must_reject) {
        if (status == ATTN_OK) fz_fail("accepted an invalid call", fz_broken);
        fz_check_rejected(status);
        return 0;
    }
    if (status != ATTN_OK) fz_fail("rejected a valid call", attn_status_string(status));
    fz_check_buffers(1, "accepted call");
    return 1;
}

/* Runs `call` (an expression giving attn_status) with the oracles:
 *   must_reject: the harness broke a rule on purpose, so the call must fail;
 *   otherwise the call must succeed, and a second run at another thread count
 *   must give the same bits. `reference` (a statement) then checks values. */
#define FZ_RUN(in, must_reject, call, reference)                                  \
    do {                                                                            \
        int threads_first = 1 + (int)fz_pick((in), 3);                              \
        int threads_second = threads_first == 1 ? 2 : 1;                            \
        attn_set_num_threads(threads_first);                                        \
        fz_snapshot();                                                              \
        if (fz_outcome((call), (must_reject))) {                                    \
            if (!fz_no_reference) reference;                                        \
            fz_save_outputs();                                                      \
            attn_set_num_threads(threads_second);                                   \
            if ((call) != ATTN_OK) fz_fail("rerun", "rejected at another thread count"); \
            fz_compare_rerun(threads_first, threads_second);                        \
        }                                                                           \
    } while (0)

/* An extent of 2^20 to 2^40 for the "huge but empty" calls: descriptors whose
 * other dims multiply a 0. They must succeed at once, reading nothing: their
 * data pointers cover only the small buffers fz_make allocated. */
static inline int64_t fz_huge(fz_input *in) { return (int64_t)1 << (20 + fz_pick(in, 21)); }

/* For the huge-but-empty calls: a tensor made empty-with-NULL-data that now
 * claims elements gets its (guarded, zero-length) buffer as data, so the call
 * stays valid; reading it would trip ASan. */
static inline void fz_give_data_to_all(void) {
    for (int i = 0; i < fz_buffer_count; i++)
        if (!fz_buffers[i].tensor->data) fz_buffers[i].tensor->data = fz_buffers[i].raw + FZ_GUARD;
}


/* ---- The fp64 reference ---- */

/* Tolerance on |out - reference|, relative to 1 + max |v|, by storage dtype:
 * fp32 compute for f32/f16/bf16 plus the output's rounding. */
static inline double fz_tolerance(attn_dtype dtype) {
    switch (dtype) {
    case ATTN_DTYPE_F64: return 1e-12;
    case ATTN_DTYPE_F32: return 2e-5;
    case ATTN_DTYPE_F16: return 2e-3;
    case ATTN_DTYPE_BF16: return 1.6e-2;
    default: return 0;
    }
}

/* The softmax of scores[0..n) in place (-inf = excluded); returns the lse, or
 * +inf when every key is excluded (then every weight is 0). */
static inline double fz_softmax(double *scores, int64_t n) {
    double top = -INFINITY;
    for (int64_t j = 0; j < n; j++) if (scores[j] > top) top = scores[j];
    if (top == -INFINITY) {
        for (int64_t j = 0; j < n; j++) scores[j] = 0;
        return INFINITY;
    }
    double sum = 0;
    for (int64_t j = 0; j < n; j++) sum += scores[j] == -INFINITY ? 0 : exp(scores[j] - top);
    for (int64_t j = 0; j < n; j++) scores[j] = scores[j] == -INFINITY ? 0 : exp(scores[j] - top) / sum;
    return top + log(sum);
}

static inline void fz_expect_close(double got, double want, double tolerance, const char *what) {
    if (isnan(want) ? !isnan(got) : !(fabs(got - want) <= tolerance)) {
        char detail[200];
        snprintf(detail, sizeof detail, "%s: got %.9g, reference %.9g (tolerance %.3g)", what, got, want, tolerance);
        fz_fail("reference", detail);
    }
}

/* True when every element of `t` is finite (the reference check runs only then). */
static inline int fz_all_finite(const attn_tensor *t) {
    if (!t || !t->data || fz_elements(t) == 0 || !fz_is_float(t->dtype)) return 1;
    int64_t index[ATTN_MAX_RANK] = {0};
    do if (!isfinite(fz_get(t, index))) return 0;
    while (fz_advance(t, index));
    return 1;
}

static inline double fz_max_abs(const attn_tensor *t) {
    double m = 0;
    if (!t->data || fz_elements(t) == 0) return 0;
    int64_t index[ATTN_MAX_RANK] = {0};
    do if (fabs(fz_get(t, index)) > m) m = fabs(fz_get(t, index));
    while (fz_advance(t, index));
    return m;
}

static const attn_dtype fz_float_dtypes[] = {ATTN_DTYPE_F32, ATTN_DTYPE_F64, ATTN_DTYPE_F16, ATTN_DTYPE_BF16};

/* Sizes that cross the 16-row and 64-key tile edges now and then. */
static inline int64_t fz_length(fz_input *in) {
    static const unsigned lengths[] = {0, 1, 1, 2, 3, 5, 7, 8, 16, 17, 33, 65};
    return fz_pick_of(in, lengths, sizeof lengths / sizeof *lengths);
}
static inline int64_t fz_head_dim(fz_input *in) {
    static const unsigned dims[] = {1, 2, 3, 4, 7, 8, 16, 17, 32};
    return fz_pick_of(in, dims, sizeof dims / sizeof *dims);
}

/* One descriptor corruption that every entry must reject: the returned status
 * class is checked by fz_check_rejected (any known error with a message). */
static inline void fz_corrupt_tensor(fz_input *in, attn_tensor *t) {
    switch (fz_pick(in, 5)) {
    case 0: t->dtype = (attn_dtype)(fz_chance(in, 50) ? 77 : ATTN_DTYPE_I64); fz_broken = "dtype"; break;
    case 1: t->rank = fz_chance(in, 50) ? ATTN_MAX_RANK + 1 + (int)fz_pick(in, 3) : -1; fz_broken = "rank"; break;
    case 2: if (t->rank > 0) { t->shape[fz_pick(in, (unsigned)t->rank)] = -1 - (int64_t)fz_pick(in, 8); fz_broken = "negative extent"; }
            else { t->rank = -1; fz_broken = "rank"; }
            break;
    case 3: if (t->rank > 0) { t->shape[0] = INT64_MAX / 2; t->strides[0] = 1; fz_broken = "huge extent"; }
            else { t->rank = -1; fz_broken = "rank"; }
            break;
    default: t->rank = t->rank > 0 ? t->rank - 1 : t->rank + 1; fz_broken = "wrong rank"; break;
    }
}

#endif
