/* A C program built against the installed attnkit: it checks a known result,
 * the version, and error paths. Exit code 0 means every check passed. */
#include <attnkit.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond, ...)                                    \
    do {                                                    \
        if (!(cond)) {                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                   \
            fprintf(stderr, "\n");                          \
            failures++;                                     \
        }                                                   \
    } while (0)

static attn_tensor tensor3(void *data, attn_dtype dtype, int64_t b, int64_t s, int64_t w) {
    attn_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dtype;
    t.rank = 3;
    t.shape[0] = b; t.shape[1] = s; t.shape[2] = w;
    t.strides[0] = s * w; t.strides[1] = w; t.strides[2] = 1;
    return t;
}

/* The documented size of the first version of attn_flash_params. */
_Static_assert(offsetof(attn_flash_params, int8_qk) == ATTN_FLASH_PARAMS_V1_SIZE, "attn_flash_params v1 layout");

int main(void) {
    CHECK(attn_version_number() == ATTNKIT_VERSION_NUMBER, "runtime version %u != header %d",
          attn_version_number(), ATTNKIT_VERSION_NUMBER);
    CHECK(strcmp(attn_status_string(ATTN_ERR_SHAPE), "ATTN_ERR_SHAPE") == 0, "status name");
    CHECK(strcmp(attn_status_string(12345), "ATTN_UNKNOWN_STATUS") == 0, "unknown status name");

    /* scores = q·k = [0, ln 3] for both queries, so softmax = [1/4, 3/4] and
     * out = 4/4 + 3·8/4 = 7. Causally, query 0 sees only key 0: out = 4. */
    float q[2] = {1.0f, 1.0f};
    float k[2] = {0.0f, (float)log(3.0)};
    float v[2] = {4.0f, 8.0f};
    float out[2] = {-1.0f, -1.0f};
    float weights[4];
    attn_tensor tq = tensor3(q, ATTN_DTYPE_F32, 1, 2, 1);
    attn_tensor tk = tensor3(k, ATTN_DTYPE_F32, 1, 2, 1);
    attn_tensor tv = tensor3(v, ATTN_DTYPE_F32, 1, 2, 1);
    attn_tensor to = tensor3(out, ATTN_DTYPE_F32, 1, 2, 1);
    attn_tensor tw;
    memset(&tw, 0, sizeof tw);
    tw.data = weights; tw.dtype = ATTN_DTYPE_F32; tw.rank = 4;
    tw.shape[0] = 1; tw.shape[1] = 1; tw.shape[2] = 2; tw.shape[3] = 2;
    tw.strides[0] = 4; tw.strides[1] = 4; tw.strides[2] = 2; tw.strides[3] = 1;

    attn_eager_params params = {sizeof(attn_eager_params), ATTN_MASK_NONE, 1, 1};
    attn_status status = attn_eager_forward(&params, &tq, &tk, &tv, NULL, &to, &tw);
    CHECK(status == ATTN_OK, "eager: %s %s", attn_status_string(status), attn_last_error());
    CHECK(fabsf(out[0] - 7.0f) < 1e-5f && fabsf(out[1] - 7.0f) < 1e-5f, "out = %g %g, want 7 7", out[0], out[1]);
    CHECK(fabsf(weights[0] - 0.25f) < 1e-6f && fabsf(weights[1] - 0.75f) < 1e-6f, "weights %g %g", weights[0], weights[1]);

    params.mask_mode = ATTN_MASK_CAUSAL_TOP_LEFT;
    status = attn_eager_forward(&params, &tq, &tk, &tv, NULL, &to, NULL);
    CHECK(status == ATTN_OK, "causal: %s", attn_last_error());
    CHECK(fabsf(out[0] - 4.0f) < 1e-5f && fabsf(out[1] - 7.0f) < 1e-5f, "causal out = %g %g, want 4 7", out[0], out[1]);

    /* A key mask that hides key 1 everywhere: out = v[0] = 4. */
    unsigned char mask[2] = {1, 0};
    attn_tensor tm;
    memset(&tm, 0, sizeof tm);
    tm.data = mask; tm.dtype = ATTN_DTYPE_BOOL; tm.rank = 2;
    tm.shape[0] = 1; tm.shape[1] = 2; tm.strides[0] = 2; tm.strides[1] = 1;
    params.mask_mode = ATTN_MASK_NONE;
    status = attn_eager_forward(&params, &tq, &tk, &tv, &tm, &to, NULL);
    CHECK(status == ATTN_OK && fabsf(out[0] - 4.0f) < 1e-6f && fabsf(out[1] - 4.0f) < 1e-6f,
          "masked out = %g %g, want 4 4", out[0], out[1]);

    /* Error paths: each gives its code and a message naming the argument. */
    params.num_heads = 0;
    status = attn_eager_forward(&params, &tq, &tk, &tv, NULL, &to, NULL);
    CHECK(status == ATTN_ERR_INVALID_ARGUMENT, "num_heads=0 gave %s", attn_status_string(status));
    CHECK(strstr(attn_last_error(), "num_heads") != NULL, "message: %s", attn_last_error());
    params.num_heads = 1;

    status = attn_eager_forward(&params, NULL, &tk, &tv, NULL, &to, NULL);
    CHECK(status == ATTN_ERR_NULL_POINTER && strstr(attn_last_error(), "q must not be NULL"), "NULL q: %s", attn_last_error());

    attn_tensor bad = tk;
    bad.shape[2] = 2;
    status = attn_eager_forward(&params, &tq, &bad, &tv, NULL, &to, NULL);
    CHECK(status == ATTN_ERR_SHAPE && strstr(attn_last_error(), "k.shape[2]"), "bad k: %s", attn_last_error());

    bad = tk;
    bad.dtype = ATTN_DTYPE_F64;
    status = attn_eager_forward(&params, &tq, &bad, &tv, NULL, &to, NULL);
    CHECK(status == ATTN_ERR_DTYPE && strstr(attn_last_error(), "k.dtype"), "bad dtype: %s", attn_last_error());

    bad = tk;
    bad.shape[1] = INT64_MAX / 2;
    bad.strides[1] = INT64_MAX / 2;
    status = attn_eager_forward(&params, &tq, &bad, &tv, NULL, &to, NULL);
    CHECK(status != ATTN_OK, "huge k accepted");

    attn_eager_params small = params;
    small.struct_size = 4;
    status = attn_eager_forward(&small, &tq, &tk, &tv, NULL, &to, NULL);
    CHECK(status == ATTN_ERR_STRUCT_SIZE, "struct_size=4 gave %s", attn_status_string(status));

    /* SDPA on the same numbers as (N=1, H=1, L=2, E=1): rank 4 views of the same memory. */
    attn_tensor sq = tq, sk = tk, sv = tv, so = to;
    attn_tensor *views[4] = {&sq, &sk, &sv, &so};
    for (int i = 0; i < 4; i++) {
        attn_tensor *t = views[i];
        t->rank = 4;
        t->shape[0] = 1; t->shape[1] = 1; t->shape[2] = 2; t->shape[3] = 1;
        t->strides[0] = 2; t->strides[1] = 2; t->strides[2] = 1; t->strides[3] = 1;
    }
    attn_sdpa_params sdpa = {sizeof(attn_sdpa_params), 0, 0, 0, 0.0, 0.0, 0};
    status = attn_sdpa_forward(&sdpa, &sq, &sk, &sv, NULL, &so);
    CHECK(status == ATTN_OK && fabsf(out[0] - 7.0f) < 1e-5f && fabsf(out[1] - 7.0f) < 1e-5f,
          "sdpa out = %g %g, want 7 7 (%s)", out[0], out[1], attn_last_error());
    sdpa.is_causal = 1;
    status = attn_sdpa_forward(&sdpa, &sq, &sk, &sv, NULL, &so);
    CHECK(status == ATTN_OK && fabsf(out[0] - 4.0f) < 1e-5f && fabsf(out[1] - 7.0f) < 1e-5f,
          "causal sdpa out = %g %g, want 4 7", out[0], out[1]);
    sdpa.dropout_p = 2.0;
    status = attn_sdpa_forward(&sdpa, &sq, &sk, &sv, NULL, &so);
    CHECK(status == ATTN_ERR_INVALID_ARGUMENT && strstr(attn_last_error(), "dropout_p"), "dropout_p=2: %s", attn_last_error());

    /* The backward on the same numbers, dout = 1: dP = v = [4, 8], rowsum(P*dP) = 7,
     * dS = P*(dP - 7) = [-3/4, 3/4] per query, so dq = dS.k = (3/4) ln 3 each,
     * dk = sum over the two queries of dS*q = [-3/2, 3/2], dv = sum of P = [1/2, 3/2]. */
    {
        const float want_dq = 0.75f * (float)log(3.0), want_dk[2] = {-1.5f, 1.5f}, want_dv[2] = {0.5f, 1.5f};
        float dout[2] = {1.0f, 1.0f}, lse[2], dq[2], dk[2], dv[2];
        attn_tensor sdo = sq, sdq = sq, sdk = sk, sdv = sv, slse = sq;
        sdo.data = dout; sdq.data = dq; sdk.data = dk; sdv.data = dv;
        slse.data = lse; slse.rank = 3;   /* (N, H, L) */
        sdpa.is_causal = 0; sdpa.dropout_p = 0.0;
        status = attn_sdpa_forward_lse(&sdpa, &sq, &sk, &sv, NULL, &so, &slse);
        CHECK(status == ATTN_OK && fabsf(lse[0] - (float)log(4.0)) < 1e-5f, "sdpa lse %g, want ln 4 (%s)", lse[0],
              attn_last_error());
        status = attn_sdpa_backward(&sdpa, &sdo, &sq, &sk, &sv, NULL, &so, &slse, &sdq, &sdk, &sdv);
        CHECK(status == ATTN_OK, "sdpa backward: %s", attn_last_error());
        for (int i = 0; i < 2; i++)
            CHECK(fabsf(dq[i] - want_dq) < 1e-5f && fabsf(dk[i] - want_dk[i]) < 1e-5f && fabsf(dv[i] - want_dv[i]) < 1e-5f,
                  "sdpa backward [%d]: dq %g dk %g dv %g, want %g %g %g", i, dq[i], dk[i], dv[i], want_dq, want_dk[i],
                  want_dv[i]);
        /* The eager kernel's backward through out only (no weights gradient): the same gradients. */
        attn_tensor edo = tensor3(dout, ATTN_DTYPE_F32, 1, 2, 1), edq = tensor3(dq, ATTN_DTYPE_F32, 1, 2, 1);
        attn_tensor edk = tensor3(dk, ATTN_DTYPE_F32, 1, 2, 1), edv = tensor3(dv, ATTN_DTYPE_F32, 1, 2, 1);
        memset(dq, 0, sizeof dq);
        status = attn_eager_backward(&params, &edo, NULL, &tq, &tk, &tv, NULL, &edq, &edk, &edv);
        CHECK(status == ATTN_OK && fabsf(dq[1] - want_dq) < 1e-5f && fabsf(dk[0] - want_dk[0]) < 1e-5f &&
              fabsf(dv[1] - want_dv[1]) < 1e-5f, "eager backward: dq %g dk %g dv %g (%s)", dq[1], dk[0], dv[1],
              attn_last_error());
        /* A gradient that does not match its input's shape is named. */
        edq.shape[1] = 3;
        status = attn_eager_backward(&params, &edo, NULL, &tq, &tk, &tv, NULL, &edq, &edk, &edv);
        CHECK(status == ATTN_ERR_SHAPE && strstr(attn_last_error(), "dq"), "eager backward, dq (1,3,1): %s",
              attn_last_error());
    }

    /* A block of a longer sequence: one query against two keys with equal scores
     * (v = 2, 6); diagonal places the query relative to the keys. */
    {
        float bq[1] = {1.0f}, bk[2] = {0.0f, 0.0f}, bv[2] = {2.0f, 6.0f}, bo[1] = {-1.0f}, bl[1] = {-1.0f};
        attn_tensor t4[4];
        float *data[4] = {bq, bk, bv, bo};
        for (int i = 0; i < 4; i++) {
            memset(&t4[i], 0, sizeof t4[i]);
            t4[i].data = data[i]; t4[i].dtype = ATTN_DTYPE_F32; t4[i].rank = 4;
            t4[i].shape[0] = 1; t4[i].shape[1] = (i == 1 || i == 2) ? 2 : 1; t4[i].shape[2] = 1; t4[i].shape[3] = 1;
            t4[i].strides[0] = t4[i].shape[1]; t4[i].strides[1] = 1; t4[i].strides[2] = 1; t4[i].strides[3] = 1;
        }
        attn_tensor tl;
        memset(&tl, 0, sizeof tl);
        tl.data = bl; tl.dtype = ATTN_DTYPE_F32; tl.rank = 3; tl.shape[0] = tl.shape[1] = tl.shape[2] = 1;
        tl.strides[0] = tl.strides[1] = tl.strides[2] = 1;
        attn_flash_params bp;
        memset(&bp, 0, sizeof bp);
        bp.struct_size = sizeof bp; bp.causal = 1; bp.window_left = -1; bp.window_right = -1;
        const struct { int64_t diagonal; int causal; int64_t right; float out, lse; } cases[] = {
            {0, 1, -1, 2.0f, 0.0f}, {1, 1, -1, 4.0f, 0.69314718f}, {-1, 1, -1, 0.0f, INFINITY}, {1, 0, 0, 6.0f, 0.0f}};
        for (int c = 0; c < 4; c++) {
            bp.causal = cases[c].causal; bp.window_left = cases[c].causal ? -1 : 0; bp.window_right = cases[c].right;
            status = attn_flash_block_forward(&bp, cases[c].diagonal, &t4[0], &t4[1], &t4[2], NULL, &t4[3], &tl);
            CHECK(status == ATTN_OK && fabsf(bo[0] - cases[c].out) < 1e-6f &&
                      (isinf(cases[c].lse) ? isinf(bl[0]) && bl[0] > 0 : fabsf(bl[0] - cases[c].lse) < 1e-6f),
                  "flash block, diagonal %lld: %s, out %g lse %g, want %g %g", (long long)cases[c].diagonal,
                  attn_last_error(), bo[0], bl[0], cases[c].out, cases[c].lse);
        }
        status = attn_flash_block_forward(&bp, INT64_C(1) << 40, &t4[0], &t4[1], &t4[2], NULL, &t4[3], &tl);
        CHECK(status == ATTN_ERR_INVALID_ARGUMENT && strstr(attn_last_error(), "diagonal"), "diagonal 2^40: %s",
              attn_last_error());
    }

    /* A caller built against the first attn_flash_params (no int8 fields) still works:
     * fields past its struct_size read as 0. Varlen: one sequence of 2, causal. */
    attn_flash_params flash;
    memset(&flash, 0xAB, sizeof flash);          /* garbage past the v1 size must not be read */
    memset(&flash, 0, ATTN_FLASH_PARAMS_V1_SIZE);
    flash.struct_size = ATTN_FLASH_PARAMS_V1_SIZE;
    flash.causal = 1;
    flash.window_left = -1; flash.window_right = -1;
    flash.max_seqlen_q = 2; flash.max_seqlen_k = 2;
    int32_t cu[2] = {0, 2};
    attn_tensor tcu;
    memset(&tcu, 0, sizeof tcu);
    tcu.data = cu; tcu.dtype = ATTN_DTYPE_I32; tcu.rank = 1; tcu.shape[0] = 2; tcu.strides[0] = 1;
    attn_tensor fq = tq, fk = tk, fv = tv, fo = to;     /* (total=2, H=1, D=1) views */
    attn_tensor *packed[4] = {&fq, &fk, &fv, &fo};
    for (int i = 0; i < 4; i++) {
        packed[i]->shape[0] = 2; packed[i]->shape[1] = 1; packed[i]->shape[2] = 1;
        packed[i]->strides[0] = 1; packed[i]->strides[1] = 1; packed[i]->strides[2] = 1;
    }
    status = attn_flash_varlen_forward(&flash, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL);
    CHECK(status == ATTN_OK && fabsf(out[0] - 4.0f) < 1e-5f && fabsf(out[1] - 7.0f) < 1e-5f,
          "v1 flash params: %s, out = %g %g, want 4 7", attn_last_error(), out[0], out[1]);
    flash.struct_size = 8;
    CHECK(attn_flash_varlen_forward(&flash, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL) == ATTN_ERR_STRUCT_SIZE,
          "struct_size 8 accepted");
    /* The copy_struct_from_user rule: a larger struct only with zeros past the known fields, at most 4096 bytes. */
    struct { attn_flash_params known; unsigned char newer[24]; } larger;
    memset(&larger, 0, sizeof larger);
    memcpy(&larger.known, &flash, ATTN_FLASH_PARAMS_V1_SIZE);
    larger.known.struct_size = sizeof larger;
    status = attn_flash_varlen_forward(&larger.known, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL);
    CHECK(status == ATTN_OK && fabsf(out[1] - 7.0f) < 1e-5f, "larger zero-padded params: %s", attn_last_error());
    larger.newer[5] = 1;
    status = attn_flash_varlen_forward(&larger.known, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL);
    CHECK(status == ATTN_ERR_STRUCT_SIZE && strstr(attn_last_error(), "must be 0"), "nonzero byte past the known fields: %s",
          attn_last_error());
    larger.newer[5] = 0;
    larger.known.reserved = 3;
    status = attn_flash_varlen_forward(&larger.known, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL);
    CHECK(status == ATTN_ERR_INVALID_ARGUMENT && strstr(attn_last_error(), "params->reserved"), "reserved 3: %s",
          attn_last_error());
    flash.struct_size = 0xFFFFFFFFu;
    status = attn_flash_varlen_forward(&flash, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL);
    CHECK(status == ATTN_ERR_STRUCT_SIZE && strstr(attn_last_error(), "at most 4096"), "struct_size 0xFFFFFFFF: %s",
          attn_last_error());
    larger.known.reserved = 0;
    /* A negative head dim is reported as given. */
    fq.shape[2] = fk.shape[2] = -8;
    status = attn_flash_varlen_forward(&larger.known, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL);
    CHECK(status == ATTN_ERR_SHAPE && strstr(attn_last_error(), "got -8"), "head dim -8: %s", attn_last_error());
    fq.shape[2] = fk.shape[2] = 1;
    /* Windows near INT64_MAX are unbounded, not empty: out = 7 for the non-causal second query. */
    larger.known.causal = 0;
    larger.known.window_left = INT64_MAX; larger.known.window_right = INT64_MAX;
    status = attn_flash_varlen_forward(&larger.known, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL);
    CHECK(status == ATTN_OK && fabsf(out[0] - 7.0f) < 1e-5f && fabsf(out[1] - 7.0f) < 1e-5f,
          "window INT64_MAX: %s, out = %g %g, want 7 7", attn_last_error(), out[0], out[1]);
    cu[1] = 3;   /* past the packed rows */
    flash.struct_size = ATTN_FLASH_PARAMS_V1_SIZE;
    status = attn_flash_varlen_forward(&flash, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL);
    CHECK(status == ATTN_ERR_INVALID_ARGUMENT && strstr(attn_last_error(), "cu_seqlens_q must end at"),
          "bad cu_seqlens: %s", attn_last_error());

    /* S_dmask of the same causal sequence, in a (1, 1, 2, 3) block with a padding
     * column: P = [[1, 0], [1/4, 3/4]]. With dropout_p = 1 every element is
     * dropped: all signs negative, out 0. */
    cu[1] = 2;
    attn_flash_params probs_params;
    memset(&probs_params, 0, sizeof probs_params);
    probs_params.struct_size = sizeof probs_params;
    probs_params.causal = 1;
    probs_params.window_left = -1; probs_params.window_right = -1;
    probs_params.max_seqlen_q = 2; probs_params.max_seqlen_k = 2;
    float dmask[6];
    memset(dmask, 0xFF, sizeof dmask);
    attn_tensor td;
    memset(&td, 0, sizeof td);
    td.data = dmask; td.dtype = ATTN_DTYPE_F32; td.rank = 4;
    td.shape[0] = 1; td.shape[1] = 1; td.shape[2] = 2; td.shape[3] = 3;
    td.strides[0] = 6; td.strides[1] = 6; td.strides[2] = 3; td.strides[3] = 1;
    status = attn_flash_varlen_forward_probs(&probs_params, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL, &td);
    CHECK(status == ATTN_OK && dmask[0] == 1.0f && dmask[1] == 0.0f && dmask[2] == 0.0f &&
          fabsf(dmask[3] - 0.25f) < 1e-6f && fabsf(dmask[4] - 0.75f) < 1e-6f && dmask[5] == 0.0f,
          "S_dmask: %s, got %g %g %g / %g %g %g", attn_last_error(), dmask[0], dmask[1], dmask[2], dmask[3], dmask[4], dmask[5]);
    probs_params.dropout_p = 1.0;
    status = attn_flash_varlen_forward_probs(&probs_params, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL, &td);
    CHECK(status == ATTN_OK && dmask[0] == -1.0f && signbit(dmask[1]) && fabsf(dmask[3] + 0.25f) < 1e-6f &&
          fabsf(dmask[4] + 0.75f) < 1e-6f && dmask[5] == 0.0f && !signbit(dmask[5]) && out[0] == 0.0f && out[1] == 0.0f,
          "S_dmask with dropout 1: %s, got %g %g / %g %g, out %g %g", attn_last_error(), dmask[0], dmask[1], dmask[3],
          dmask[4], out[0], out[1]);
    td.shape[3] = 1;   /* narrower than the sequence */
    status = attn_flash_varlen_forward_probs(&probs_params, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL, &td);
    CHECK(status == ATTN_ERR_SHAPE && strstr(attn_last_error(), "s_dmask.shape[3]"), "narrow S_dmask: %s", attn_last_error());
    CHECK(attn_flash_varlen_forward_probs(&probs_params, &fq, &fk, &fv, &tcu, &tcu, NULL, &fo, NULL, NULL) == ATTN_ERR_NULL_POINTER,
          "NULL S_dmask accepted");

    /* The guide's variants on the same two tokens (docs/semantics.md §9). Sparse top-k keeps
     * key 1 (score ln 3) when k = 1: out 8; with k = 2 it is the softmax above: 7. AFT-simple
     * weights the tokens by e^K = 1 : 3 per feature: out = sigmoid(1) * 7 (causal: token 0
     * sees only itself, sigmoid(1) * 4). Linformer with E = F = [0 1] projects onto key 1:
     * out 8, plus bias_f. */
    {
        attn_tensor q4 = tq, k4 = tk, v4 = tv, o4 = to;
        attn_tensor *four[4] = {&q4, &k4, &v4, &o4};
        for (int i = 0; i < 4; i++) {
            four[i]->rank = 4;
            four[i]->shape[0] = 1; four[i]->shape[1] = 1; four[i]->shape[2] = 2; four[i]->shape[3] = 1;
            four[i]->strides[0] = 2; four[i]->strides[1] = 2; four[i]->strides[2] = 1; four[i]->strides[3] = 1;
        }
        attn_sparse_topk_params sparse = {sizeof(attn_sparse_topk_params), ATTN_MASK_NONE, 1, 0, 0, 0.0};
        status = attn_sparse_topk_forward(&sparse, &q4, &k4, &v4, NULL, &o4);
        CHECK(status == ATTN_OK && fabsf(out[0] - 8.0f) < 1e-5f && fabsf(out[1] - 8.0f) < 1e-5f,
              "sparse top-1: %g %g (%s)", out[0], out[1], attn_last_error());
        sparse.top_k = 2; sparse.mask_mode = ATTN_MASK_CAUSAL_TOP_LEFT;
        status = attn_sparse_topk_forward(&sparse, &q4, &k4, &v4, NULL, &o4);
        CHECK(status == ATTN_OK && fabsf(out[0] - 4.0f) < 1e-5f && fabsf(out[1] - 7.0f) < 1e-5f,
              "sparse causal top-2: %g %g (%s)", out[0], out[1], attn_last_error());
        sparse.top_k = 3;
        status = attn_sparse_topk_forward(&sparse, &q4, &k4, &v4, NULL, &o4);
        CHECK(status == ATTN_ERR_INVALID_ARGUMENT && strstr(attn_last_error(), "top_k"), "top_k 3 of 2: %s",
              attn_last_error());

        const float gate = 1.0f / (1.0f + expf(-1.0f));
        attn_aft_params aft = {sizeof(attn_aft_params), ATTN_AFT_SIMPLE, 0, 0, 0};
        status = attn_aft_forward(&aft, &tq, &tk, &tv, NULL, NULL, NULL, &to);
        CHECK(status == ATTN_OK && fabsf(out[0] - 7 * gate) < 1e-5f && fabsf(out[1] - 7 * gate) < 1e-5f,
              "aft simple: %g %g (%s)", out[0], out[1], attn_last_error());
        aft.causal = 1;
        status = attn_aft_forward(&aft, &tq, &tk, &tv, NULL, NULL, NULL, &to);
        CHECK(status == ATTN_OK && fabsf(out[0] - 4 * gate) < 1e-5f && fabsf(out[1] - 7 * gate) < 1e-5f,
              "aft simple causal: %g %g (%s)", out[0], out[1], attn_last_error());

        float e[2] = {0.0f, 1.0f}, bias_f[1] = {1.0f};
        attn_tensor te, tb;
        memset(&te, 0, sizeof te); memset(&tb, 0, sizeof tb);
        te.data = e; te.dtype = ATTN_DTYPE_F32; te.rank = 2; te.shape[0] = 1; te.shape[1] = 2; te.strides[0] = 2; te.strides[1] = 1;
        tb.data = bias_f; tb.dtype = ATTN_DTYPE_F32; tb.rank = 1; tb.shape[0] = 1; tb.strides[0] = 1;
        attn_linformer_params linformer = {sizeof(attn_linformer_params), 0, 0.0};
        status = attn_linformer_forward(&linformer, &q4, &k4, &v4, &te, NULL, &te, &tb, &o4);
        CHECK(status == ATTN_OK && fabsf(out[0] - 9.0f) < 1e-5f && fabsf(out[1] - 9.0f) < 1e-5f,
              "linformer: %g %g (%s)", out[0], out[1], attn_last_error());
    }

    int32_t isa = -1;
    int32_t pv_dtype = 0;
    CHECK(attn_get_int8_pv_dtype(&pv_dtype) == ATTN_OK && (pv_dtype == ATTN_DTYPE_F16 || pv_dtype == ATTN_DTYPE_F32),
          "int8 P.V dtype %d", pv_dtype);
    CHECK(attn_get_int8_pv_dtype(NULL) == ATTN_ERR_NULL_POINTER, "NULL dtype");
    CHECK(attn_get_isa(&isa) == ATTN_OK && (isa == ATTN_ISA_GENERIC || isa == ATTN_ISA_AVX512 || isa == ATTN_ISA_AVX512_BF16 ||
                                             isa == ATTN_ISA_AVX2), "isa %d", isa);
    uint32_t isas = 0;
    CHECK(attn_get_available_isas(&isas) == ATTN_OK && (isas & 1u) && (isas & (1u << isa)) && isas < 16u,
          "available isas 0x%x (running %d)", isas, isa);
    CHECK(attn_get_available_isas(NULL) == ATTN_ERR_NULL_POINTER, "NULL isa mask accepted");

    CHECK(attn_set_num_threads(ATTNKIT_MAX_THREADS + 1) == ATTN_ERR_INVALID_ARGUMENT &&
          strstr(attn_last_error(), "1...1024"), "set_num_threads(max + 1): %s", attn_last_error());
    CHECK(attn_set_num_threads(ATTNKIT_MAX_THREADS) == ATTN_OK, "set_num_threads(ATTNKIT_MAX_THREADS) refused");
    int32_t threads = 0;
    CHECK(attn_get_num_threads(&threads) == ATTN_OK && threads >= 1, "threads %d", threads);
    CHECK(attn_set_num_threads(0) == ATTN_ERR_INVALID_ARGUMENT, "set_num_threads(0) accepted");
    CHECK(attn_get_num_threads(NULL) == ATTN_ERR_NULL_POINTER, "get_num_threads(NULL) accepted");

    if (failures == 0) printf("client: all checks passed\n");
    return failures == 0 ? 0 : 1;
}
