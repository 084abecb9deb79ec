/*
 * attnkit: attention kernels for the CPU, behind one stable C ABI.
 *
 * Conventions
 * - Every function returns an attn_status (ATTN_OK on success) and writes its
 *   outputs through pointers. The exceptions are the three lookups that cannot
 *   fail: attn_version_number(), attn_status_string() and attn_last_error().
 * - On failure, attn_last_error() gives a message for the calling thread that
 *   names the function, the argument and the rule it broke, e.g.
 *   "[attn_eager_forward] q.shape[2] must equal num_heads*head_dim (8*64 = 512), got 500".
 * - The library never aborts, prints or exits, whatever it is given.
 * - Tensors cross the ABI as attn_tensor: a data pointer, a dtype, a rank and
 *   int64 shape and strides. Strides are counted in elements, not bytes, and
 *   may be any value (non-contiguous, broadcast and negative strides work for
 *   inputs; outputs may not have a zero stride on a dimension longer than 1).
 * - Status codes and dtype codes are stable and are never renumbered.
 */
#ifndef ATTNKIT_H
#define ATTNKIT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version: the one place it is written (CMake reads it from here). ---- */
#define ATTNKIT_VERSION_MAJOR 0
#define ATTNKIT_VERSION_MINOR 1
#define ATTNKIT_VERSION_PATCH 0
#define ATTNKIT_VERSION_NUMBER \
    (ATTNKIT_VERSION_MAJOR * 10000 + ATTNKIT_VERSION_MINOR * 100 + ATTNKIT_VERSION_PATCH)

/* The version of the library loaded at run time, as ATTNKIT_VERSION_NUMBER. */
uint32_t attn_version_number(void);

/* ---- Status codes ---- */
typedef int32_t attn_status;
enum {
    ATTN_OK = 0,
    ATTN_ERR_NULL_POINTER = 1,     /* a required pointer was NULL */
    ATTN_ERR_INVALID_ARGUMENT = 2, /* a scalar argument is out of its range */
    ATTN_ERR_SHAPE = 3,            /* a rank, shape or stride does not fit the rule */
    ATTN_ERR_DTYPE = 4,            /* a dtype is unknown, unsupported here, or mismatched */
    ATTN_ERR_OVERFLOW = 5,         /* a size or offset product overflows int64 */
    ATTN_ERR_OUT_OF_MEMORY = 6,    /* a workspace allocation failed */
    ATTN_ERR_STRUCT_SIZE = 7,      /* a params struct_size is out of range, or bytes past the known fields are not 0 */
    ATTN_ERR_INTERNAL = 8,         /* a bug in attnkit: please report it */
    ATTN_ERR_UNSUPPORTED_CPU = 9   /* reserved: kernels are chosen at run time, so no call returns it */
};

/* A static name for a status code ("ATTN_ERR_SHAPE"); "ATTN_UNKNOWN_STATUS" otherwise. */
const char *attn_status_string(attn_status status);

/* The calling thread's message for its last failed call ("" if none). The
 * pointer stays valid until the thread's next failed attnkit call. */
const char *attn_last_error(void);

/* ---- Dtypes ---- */
typedef int32_t attn_dtype;
enum {
    ATTN_DTYPE_F32 = 1,
    ATTN_DTYPE_F64 = 2,
    ATTN_DTYPE_F16 = 3,
    ATTN_DTYPE_BF16 = 4,
    ATTN_DTYPE_I8 = 5,
    ATTN_DTYPE_U8 = 6,
    ATTN_DTYPE_I32 = 7,
    ATTN_DTYPE_I64 = 8,
    ATTN_DTYPE_BOOL = 9 /* one byte, 0 is false, anything else true */
};

/* ---- Tensors ---- */
#define ATTN_MAX_RANK 8

typedef struct attn_tensor {
    void *data;                     /* may be NULL only if the tensor has no elements */
    attn_dtype dtype;
    int32_t rank;                   /* 0 ... ATTN_MAX_RANK */
    int64_t shape[ATTN_MAX_RANK];   /* the first `rank` entries are read */
    int64_t strides[ATTN_MAX_RANK]; /* in elements */
} attn_tensor;

/* ---- Rules every entry point shares ----
 * Params structs start with struct_size = sizeof the struct the caller was
 * compiled with. A smaller (older) struct is read with the missing fields as
 * 0, each documented as the old behaviour. A larger (newer) struct is accepted
 * only if every byte past the fields this library knows is 0, as the Linux
 * kernel's copy_struct_from_user does; struct_size above 4096 is rejected
 * (ATTN_ERR_STRUCT_SIZE). Fields named reserved must be 0.
 *
 * A call whose outputs all have no elements returns ATTN_OK once its
 * descriptors are checked, reading no data (cu_seqlens included).
 *
 * Scales and softcaps: the scale must be finite and, for f32, f16 and bf16
 * input (whose scores are fp32), at most fp32's largest finite value
 * (3.4028234663852886e38) in magnitude; f64 input keeps every scalar in fp64.
 * A softcap above fp32's range acts as off and one below fp32's least normal
 * value (1.1754943508222875e-38) as that value: the limits of
 * softcap*tanh(s/softcap), exact in fp32. Window sides of 2^31 or more are
 * unbounded (every sequence is shorter than 2^30). */

/* ---- Threads ----
 * Kernels run on up to this many threads (the calling thread included), from 1
 * to ATTNKIT_MAX_THREADS. The default is the ATTNKIT_NUM_THREADS environment
 * variable, read once, or else the number of online CPUs (capped at
 * ATTNKIT_MAX_THREADS). Results do not depend on the thread count. */
#define ATTNKIT_MAX_THREADS 1024
attn_status attn_set_num_threads(int32_t num_threads);
attn_status attn_get_num_threads(int32_t *num_threads);

/* ---- Kernel ISA ----
 * The kernels are compiled once per tier: the portable build (Swift SIMD for the
 * host's baseline ISA: SSE2 on x86-64, NEON on arm64) and, on x86-64 only,
 * AVX2 (x86-64-v3), AVX-512 and AVX-512 with AVX512_BF16. CPUID picks the widest
 * tier the CPU and OS support, once per process (on AMD CPUs with AVX512_BF16
 * the bf16 tier, on Intel the AVX-512 tier). ATTNKIT_ISA=generic, avx2, avx512
 * or avx512_bf16 overrides the choice; a tier the CPU cannot run falls back to
 * the default. Codes are never renumbered; new tiers are appended. */
enum {
    ATTN_ISA_GENERIC = 0,
    ATTN_ISA_AVX512 = 1,      /* cascadelake: F/CD/BW/DQ/VL, VNNI, FMA, F16C */
    ATTN_ISA_AVX512_BF16 = 2, /* cooperlake: the above plus AVX512_BF16 */
    ATTN_ISA_AVX2 = 3         /* haswell (x86-64-v3): AVX2, FMA, F16C, BMI1/2 */
};
/* The tier the kernels run in this process. */
attn_status attn_get_isa(int32_t *isa);
/* The tiers this CPU can run in this build: bit (1u << ATTN_ISA_x) is set for
 * each (ATTN_ISA_GENERIC always). Any of them can be forced with ATTNKIT_ISA. */
attn_status attn_get_available_isas(uint32_t *mask);

/* The dtype (ATTN_DTYPE_F16 or ATTN_DTYPE_F32) in which the int8 paths compute
 * P.V in this process: see attn_int8_sdpa_forward. */
attn_status attn_get_int8_pv_dtype(int32_t *dtype);

/* ---- Eager attention ----
 * out = softmax(q·kᵀ / sqrt(head_dim), masked) · v, head by head, with the full
 * score matrix materialized per (batch, head), as the textbook does.
 *
 *   q:        [B, Sq, H*D]  f32, f64, f16 or bf16 (f16/bf16 compute in fp32)
 *   k, v:     [B, Sk, H*D]  same dtype as q
 *   key_mask: [B, Sk]       bool or u8, nonzero = the key may be attended; may be NULL
 *   out:      [B, Sq, H*D]  same dtype as q (written)
 *   weights:  [B, H, Sq, Sk] same dtype as q (written); may be NULL
 *
 * Causal masking is aligned top-left: key j is allowed for query i iff j <= i.
 * A query row with no allowed key gives 0 in out and in weights (never NaN).
 * NaN or Inf in q, k or v propagates to the rows it touches. */
enum {
    ATTN_MASK_NONE = 0,
    ATTN_MASK_CAUSAL_TOP_LEFT = 1
};

typedef struct attn_eager_params {
    uint32_t struct_size; /* sizeof(attn_eager_params) */
    int32_t mask_mode;    /* ATTN_MASK_NONE or ATTN_MASK_CAUSAL_TOP_LEFT */
    int64_t num_heads;    /* H >= 1 */
    int64_t head_dim;     /* D >= 1 */
} attn_eager_params;

attn_status attn_eager_forward(const attn_eager_params *params,
                               const attn_tensor *q, const attn_tensor *k,
                               const attn_tensor *v, const attn_tensor *key_mask,
                               const attn_tensor *out, const attn_tensor *weights);

/* The eager backward: dq, dk, dv from the gradients of out and of weights.
 *   dout:     [B, Sq, H*D] (any strides), or NULL: no gradient flows through out
 *   dweights: [B, H, Sq, Sk] (any strides), or NULL: no gradient flows through weights
 *   dq, dk, dv: the shapes of q, k, v, the dtype of q, written (never accumulated into)
 * params, q, k, v and key_mask are the forward's. P is recomputed from q and k
 * as the forward computes it (fp32 for f32/f16/bf16, fp64 for f64); then
 * dS = P * (dP - rowsum(P * dP)) with dP = dout.v^T + dweights. Masked keys and
 * rows with no allowed key get zero gradient. The same bits on every run and
 * thread count. */
attn_status attn_eager_backward(const attn_eager_params *params,
                                const attn_tensor *dout, const attn_tensor *dweights,
                                const attn_tensor *q, const attn_tensor *k,
                                const attn_tensor *v, const attn_tensor *key_mask,
                                const attn_tensor *dq, const attn_tensor *dk, const attn_tensor *dv);

/* ---- Scaled dot-product attention (torch semantics) ----
 * torch.nn.functional.scaled_dot_product_attention on the CPU, tiled with an
 * online softmax: memory is O(threads x tile), never O(L x S).
 *
 *   query:     (N..., Hq, L, E)  f32, f64, f16 or bf16 (rank 2 to ATTN_MAX_RANK; rank 2 means one head)
 *   key:       (N..., Hk, S, E)  same dtype
 *   value:     (N..., Hk, S, Ev) same dtype
 *   attn_mask: broadcastable to (N..., Hq, L, S); bool/u8 (nonzero takes part) or
 *              the query dtype (added to the scores); may be NULL
 *   out:       (N..., Hq, L, Ev) written
 *
 * Without enable_gqa Hq must equal Hk; with it Hk must divide Hq, and query head
 * h reads KV head h / (Hq/Hk) (K and V are never copied). is_causal is aligned
 * top-left (key j allowed iff j <= i); unlike torch's Python API it may be
 * combined with attn_mask (a key must pass both). A row with no
 * allowed key gives 0. Dropout (0 <= dropout_p <= 1) is inverted dropout whose
 * pattern is a function of `seed` only: the same seed gives the same bits for
 * every thread count. */
typedef struct attn_sdpa_params {
    uint32_t struct_size; /* sizeof(attn_sdpa_params) */
    int32_t is_causal;    /* 0 or 1 */
    int32_t enable_gqa;   /* 0 or 1 */
    int32_t has_scale;    /* 0: scale = 1/sqrt(E); 1: use `scale` */
    double scale;
    double dropout_p;
    uint64_t seed;
} attn_sdpa_params;

attn_status attn_sdpa_forward(const attn_sdpa_params *params,
                              const attn_tensor *query, const attn_tensor *key,
                              const attn_tensor *value, const attn_tensor *attn_mask,
                              const attn_tensor *out);

/* ---- Flash attention (flash-attn 2.8 semantics) ----
 * Tiled online softmax; the score matrix is never materialized. For every
 * float dtype, scores, softmax statistics and the output accumulator are fp32
 * (fp64 for f64); masking is by value in that domain, so finite f16/bf16 input
 * never gives NaN or Inf, and NaN/Inf input propagates to the rows it touches.
 *
 * Causal is aligned bottom-right per sequence: key j is allowed for query i iff
 * j <= i + Sk - Sq. The window allows i + Sk - Sq - window_left <= j <=
 * i + Sk - Sq + window_right, -1 meaning unbounded on that side; causal forces
 * window_right = 0. softcap > 0 applies softcap*tanh(s/softcap) to the scaled
 * scores, then ALiBi adds -slope*|i + Sk - Sq - j|. A row with no allowed key
 * gives out 0 and lse +inf. Hk must divide Hq; query head h reads KV head
 * h / (Hq/Hk). The result is the same bits on every run and thread count. */
typedef struct attn_flash_params {
    uint32_t struct_size;  /* sizeof(attn_flash_params) */
    int32_t causal;        /* 0 or 1 */
    int32_t has_scale;     /* 0: softmax_scale = 1/sqrt(D) */
    int32_t reserved;      /* 0 */
    double softmax_scale;
    int64_t window_left;   /* -1 = unbounded */
    int64_t window_right;  /* -1 = unbounded */
    double softcap;        /* 0 = off */
    double dropout_p;      /* 0 <= p <= 1 */
    uint64_t seed;         /* dropout pattern; same seed, same bits */
    int64_t max_seqlen_q;  /* varlen: no sequence may be longer; ignored by attn_flash_forward */
    int64_t max_seqlen_k;
    /* Added in 0.1 for the int8 path; a caller passing the struct without them
     * (struct_size = ATTN_FLASH_PARAMS_V1_SIZE) reads them as 0. */
    int32_t int8_qk;       /* 1: QK^T in int8 as attn_int8_sdpa_forward (dropout must be 0) */
    int32_t qk_quant;      /* ATTN_QK_QUANT_* when int8_qk */
    int32_t smooth_k;      /* 0 or 1 when int8_qk; must be 0 with softcap > 0 */
    int32_t reserved2;     /* 0 */
} attn_flash_params;

/* struct_size of attn_flash_params without the int8 fields. */
#define ATTN_FLASH_PARAMS_V1_SIZE 80

/* Packed variable-length batch.
 *   q: (total_q, Hq, D)  k: (total_k, Hk, D)  v: (total_k, Hk, Dv)   f32, f64, f16 or bf16
 *   cu_seqlens_q, cu_seqlens_k: (B+1,) i32 or i64, starting at 0, non-decreasing,
 *     ending at total_q / total_k; sequence b is rows cu[b] .. cu[b+1]-1
 *   alibi_slopes: (Hq,) or (B, Hq) f32, or NULL
 *   out: (total_q, Hq, Dv) written;  softmax_lse: (Hq, total_q) f32 written, or NULL */
attn_status attn_flash_varlen_forward(const attn_flash_params *params,
                                      const attn_tensor *q, const attn_tensor *k, const attn_tensor *v,
                                      const attn_tensor *cu_seqlens_q, const attn_tensor *cu_seqlens_k,
                                      const attn_tensor *alibi_slopes,
                                      const attn_tensor *out, const attn_tensor *softmax_lse);

/* Fixed-length batch.
 *   q: (B, Sq, Hq, D)  k: (B, Sk, Hk, D)  v: (B, Sk, Hk, Dv)  out: (B, Sq, Hq, Dv)
 *   softmax_lse: (B, Hq, Sq) f32 written, or NULL;  alibi_slopes as above. */
attn_status attn_flash_forward(const attn_flash_params *params,
                               const attn_tensor *q, const attn_tensor *k, const attn_tensor *v,
                               const attn_tensor *alibi_slopes,
                               const attn_tensor *out, const attn_tensor *softmax_lse);

/* The two forwards above, also writing flash-attn's S_dmask (what
 * return_attn_probs returns with dropout_p > 0), for tests of dropout:
 *   s_dmask: (B, Hq, Sq_r, Sk_r), q's dtype, Sq_r and Sk_r at least the longest
 *     query and key sequence (flash-attn rounds both up to multiples of 128).
 *     Block [b, h, :Sq_b, :Sk_b] is the attention probabilities P of sequence b,
 *     head h, normalized (rows sum to 1; flash-attn's CUDA kernel leaves them
 *     unnormalized), with the sign bit set where the forward dropped that
 *     element: P >= 0 and not -0 means kept. Excluded keys are 0 (or -0 if the
 *     pattern drops them); everything past Sq_b or Sk_b is 0.
 * P is computed in fp64 from q and k, O(B*Hq*Sq*Sk*D): a testing aid, not a
 * fast path. Not with params->int8_qk. */
attn_status attn_flash_varlen_forward_probs(const attn_flash_params *params,
                                            const attn_tensor *q, const attn_tensor *k, const attn_tensor *v,
                                            const attn_tensor *cu_seqlens_q, const attn_tensor *cu_seqlens_k,
                                            const attn_tensor *alibi_slopes,
                                            const attn_tensor *out, const attn_tensor *softmax_lse,
                                            const attn_tensor *s_dmask);
attn_status attn_flash_forward_probs(const attn_flash_params *params,
                                     const attn_tensor *q, const attn_tensor *k, const attn_tensor *v,
                                     const attn_tensor *alibi_slopes,
                                     const attn_tensor *out, const attn_tensor *softmax_lse,
                                     const attn_tensor *s_dmask);

/* ---- Backward passes (FlashAttention-2's, deterministic) ----
 * dq, dk, dv from dout and the forward's inputs, out and lse: P is recomputed
 * tile by tile from q, k and lse (memory O(threads x tile) beyond the
 * gradients), dropout is regenerated from params->seed, and dk/dv are summed
 * over each GQA group's query heads in head order. Scores, P and the
 * gradient sums are fp32 (fp64 for f64). A row with nothing to attend (lse
 * +inf) gives zero gradients. The same bits on every run and thread count.
 * params are the forward's; dout and out have out's shape; dq, dk, dv have
 * the shapes of q, k, v, their dtype, and are written (never accumulated into).
 * Not with params->int8_qk. The mask gets no gradient. */

/* attn_sdpa_forward that also writes lse: (N..., Hq, L) f32, the log-sum-exp
 * of each row's scaled scores (+inf for a row with no allowed key), or NULL. */
attn_status attn_sdpa_forward_lse(const attn_sdpa_params *params,
                                  const attn_tensor *query, const attn_tensor *key,
                                  const attn_tensor *value, const attn_tensor *attn_mask,
                                  const attn_tensor *out, const attn_tensor *lse);

attn_status attn_sdpa_backward(const attn_sdpa_params *params, const attn_tensor *dout,
                               const attn_tensor *query, const attn_tensor *key,
                               const attn_tensor *value, const attn_tensor *attn_mask,
                               const attn_tensor *out, const attn_tensor *lse,
                               const attn_tensor *dquery, const attn_tensor *dkey,
                               const attn_tensor *dvalue);

/* softmax_lse: (B, Hq, Sq) f32 as attn_flash_forward wrote it. */
attn_status attn_flash_backward(const attn_flash_params *params, const attn_tensor *dout,
                                const attn_tensor *q, const attn_tensor *k, const attn_tensor *v,
                                const attn_tensor *alibi_slopes,
                                const attn_tensor *out, const attn_tensor *softmax_lse,
                                const attn_tensor *dq, const attn_tensor *dk, const attn_tensor *dv);

/* softmax_lse: (Hq, total_q) f32 as attn_flash_varlen_forward wrote it. Keys
 * past cu_seqlens_k's last entry get zero dk and dv. */
attn_status attn_flash_varlen_backward(const attn_flash_params *params, const attn_tensor *dout,
                                       const attn_tensor *q, const attn_tensor *k, const attn_tensor *v,
                                       const attn_tensor *cu_seqlens_q, const attn_tensor *cu_seqlens_k,
                                       const attn_tensor *alibi_slopes,
                                       const attn_tensor *out, const attn_tensor *softmax_lse,
                                       const attn_tensor *dq, const attn_tensor *dk, const attn_tensor *dv);

/* ---- Flash attention on a block of a longer sequence (ring attention) ----
 * attn_flash_forward and attn_flash_backward with the query/key alignment
 * given instead of bottom-right: key j is aligned with query i iff
 * j == i + diagonal, where diagonal is q's first position minus k's first
 * position in the whole sequence. Every Sk - Sq in the rules above becomes
 * diagonal: causal allows j <= i + diagonal, the window i + diagonal -
 * window_left <= j <= i + diagonal + window_right, ALiBi adds
 * -slope*|i + diagonal - j|. A row with no allowed key in the block gives out 0
 * and lse +inf (the backward's lse must be the forward's, or a merged lse over
 * all blocks). |diagonal| <= 2^30, else ATTN_ERR_INVALID_ARGUMENT naming
 * diagonal. Everything else is the fixed-length calls' (params, shapes,
 * dtypes, GQA, determinism). */
attn_status attn_flash_block_forward(const attn_flash_params *params, int64_t diagonal,
                                     const attn_tensor *q, const attn_tensor *k, const attn_tensor *v,
                                     const attn_tensor *alibi_slopes,
                                     const attn_tensor *out, const attn_tensor *softmax_lse);
attn_status attn_flash_block_backward(const attn_flash_params *params, int64_t diagonal,
                                      const attn_tensor *dout,
                                      const attn_tensor *q, const attn_tensor *k, const attn_tensor *v,
                                      const attn_tensor *alibi_slopes,
                                      const attn_tensor *out, const attn_tensor *softmax_lse,
                                      const attn_tensor *dq, const attn_tensor *dk, const attn_tensor *dv);

/* ---- int8 scaled dot-product attention (SageAttention-style) ----
 * attn_sdpa_forward's shapes, masks, causal and GQA rules (no dropout), with
 * Q and K quantized on the fly to symmetric int8 (scale = absmax/127 per
 * group), QK^T computed in int8 with int32 sums (vpdpbusd on AVX-512 VNNI) and
 * dequantized by the product of the scales; softmax, its statistics and the
 * output accumulator are fp32. smooth_k subtracts K's mean over tokens first
 * (the softmax is unchanged). Dtypes: f32, f16 or bf16.
 * P.V: on CPUs with AVX512_FP16 (and the AVX-512 kernels), the int8 paths take
 * P and V in fp16, sum each 64-key tile per row in fp16 and add it into the
 * fp32 accumulator (twice the fp32 rate, ~1e-3 relative error; tiles
 * with |V| > 256 or a NaN/Inf stay fp32). ATTNKIT_INT8_PV=fp32 in the
 * environment (read once) keeps P.V in fp32, as on other CPUs. */
enum {
    ATTN_QK_QUANT_PER_BLOCK = 0,  /* Q: per 64 query rows; K: per 64 keys */
    ATTN_QK_QUANT_PER_TOKEN = 1,
    ATTN_QK_QUANT_PER_TENSOR = 2
};

typedef struct attn_int8_sdpa_params {
    uint32_t struct_size; /* sizeof(attn_int8_sdpa_params) */
    int32_t is_causal;    /* 0 or 1 */
    int32_t enable_gqa;   /* 0 or 1 */
    int32_t has_scale;    /* 0: scale = 1/sqrt(E) */
    double scale;
    int32_t qk_quant;     /* ATTN_QK_QUANT_* */
    int32_t smooth_k;     /* 0 or 1 */
} attn_int8_sdpa_params;

attn_status attn_int8_sdpa_forward(const attn_int8_sdpa_params *params,
                                   const attn_tensor *query, const attn_tensor *key,
                                   const attn_tensor *value, const attn_tensor *attn_mask,
                                   const attn_tensor *out);

/* Varlen flash attention on caller-quantized Q and K (an int8 KV cache, say):
 * nothing is quantized, QK^T runs on the given int8 values (int32 sums) and is
 * dequantized by the given scales; softmax is fp32 and P.V as in
 * attn_int8_sdpa_forward (fp16 where attn_get_int8_pv_dtype says so).
 *   q_int8: (total_q, Hq, D) i8   q_scale: (total_q, Hq) f32   (q = q_scale * q_int8)
 *   k_int8: (total_k, Hk, D) i8   k_scale: (total_k, Hk) f32   (broadcast views allowed)
 *   v: (total_k, Hk, Dv) f32/f16/bf16; out, softmax_lse, cu_seqlens, alibi as
 *   attn_flash_varlen_forward. params->int8_qk, qk_quant, smooth_k are ignored;
 *   dropout_p must be 0. */
attn_status attn_flash_varlen_int8_forward(const attn_flash_params *params,
                                           const attn_tensor *q_int8, const attn_tensor *q_scale,
                                           const attn_tensor *k_int8, const attn_tensor *k_scale,
                                           const attn_tensor *v,
                                           const attn_tensor *cu_seqlens_q, const attn_tensor *cu_seqlens_k,
                                           const attn_tensor *alibi_slopes,
                                           const attn_tensor *out, const attn_tensor *softmax_lse);

/* ---- Decoding with a KV cache (flash_attn_with_kvcache, flash-attn 2.8) ----
 * Appends k/v (if given) to the cache in place at cache_seqlens[b], then
 * attends q to the cache. Every argument is checked before the first byte is
 * appended; a rejected call leaves the cache untouched.
 *   q:        (B, Sq, Hq, D) f32, f16 or bf16
 *   k_cache, v_cache: (B_cache, S_cache, Hk, D / Dv), or with block_table
 *             (num_blocks, page_size, Hk, D / Dv) with any page_size >= 1; q's dtype
 *   k, v:     (B, S_new, Hk, D / Dv) or both NULL (nothing appended)
 *   rotary_cos, rotary_sin: (seqlen_ro, rotary_dim / 2), q's dtype, or both NULL;
 *             applied only when k is given: to new key t at position
 *             cache_seqlens[b] + t, and to query i at cache_seqlens[b] + i when
 *             causal or windowed (else every query at cache_seqlens[b]); GPT-J
 *             pairs (2i, 2i+1) if params->rotary_interleaved, else GPT-NeoX (i, i + rotary_dim/2)
 *   cache_seqlens: (B,) i32/i64, tokens already in the cache per sequence
 *   cache_batch_idx: (B,) i32/i64 cache row per sequence, or NULL (row b); not with block_table
 *   cache_leftpad: (B,) i32/i64 first valid cache position, or NULL (0); not with block_table
 *   block_table: (B, max_blocks) i32/i64 page indices, or NULL (contiguous cache)
 *   alibi_slopes: (Hq,) or (B, Hq) f32, or NULL
 *   out: (B, Sq, Hq, Dv) written;  softmax_lse: (B, Hq, Sq) f32 written, or NULL
 * Sequence b attends cache positions cache_leftpad[b] ..< cache_seqlens[b] + S_new
 * with attn_flash_forward's masks over them (causal bottom-right, window,
 * softcap, ALiBi). Keys are split into fixed-size parts (or num_splits parts)
 * whose partial results are merged as attn_merge_attention_states does: the
 * result is the same bits for every thread count. */
typedef struct attn_kvcache_params {
    uint32_t struct_size;       /* sizeof(attn_kvcache_params) */
    int32_t causal;             /* 0 or 1 */
    int32_t has_scale;          /* 0: softmax_scale = 1/sqrt(D) */
    int32_t rotary_interleaved; /* 0 or 1 */
    double softmax_scale;
    int64_t window_left;        /* -1 = unbounded */
    int64_t window_right;       /* -1 = unbounded */
    double softcap;             /* 0 = off */
    int32_t num_splits;         /* 0 = automatic (fixed split size), n > 0 = n parts */
    int32_t reserved;           /* 0 */
} attn_kvcache_params;

attn_status attn_flash_kvcache_forward(const attn_kvcache_params *params, const attn_tensor *q,
                                       const attn_tensor *k_cache, const attn_tensor *v_cache,
                                       const attn_tensor *k, const attn_tensor *v,
                                       const attn_tensor *rotary_cos, const attn_tensor *rotary_sin,
                                       const attn_tensor *cache_seqlens, const attn_tensor *cache_batch_idx,
                                       const attn_tensor *cache_leftpad, const attn_tensor *block_table,
                                       const attn_tensor *alibi_slopes, const attn_tensor *out,
                                       const attn_tensor *softmax_lse);

/* attn_flash_kvcache_forward on an int8 cache: k_cache and v_cache hold
 * symmetric int8 levels (i8), with one f32 scale per (cache row or page, position,
 * KV head): k_scale, v_scale (B_cache, S_cache, Hk) or, paged, (num_blocks,
 * page_size, Hk); the value is scale * level. New k/v (q's dtype) are rotated
 * in fp32 when rotary tables are given, then quantized on append: scale =
 * absmax/127 per (token, head) (1 for an all-zero row), levels rounded to
 * nearest even. The kernel dequantizes K and V rows on the fly. Every other
 * argument and rule as attn_flash_kvcache_forward. */
attn_status attn_flash_kvcache_int8_forward(const attn_kvcache_params *params, const attn_tensor *q,
                                            const attn_tensor *k_cache, const attn_tensor *k_scale,
                                            const attn_tensor *v_cache, const attn_tensor *v_scale,
                                            const attn_tensor *k, const attn_tensor *v,
                                            const attn_tensor *rotary_cos, const attn_tensor *rotary_sin,
                                            const attn_tensor *cache_seqlens, const attn_tensor *cache_batch_idx,
                                            const attn_tensor *cache_leftpad, const attn_tensor *block_table,
                                            const attn_tensor *alibi_slopes, const attn_tensor *out,
                                            const attn_tensor *softmax_lse);

/* Merges two partial attentions over disjoint key sets into attention over
 * their union: out = (e^lse_a·out_a + e^lse_b·out_b) / (e^lse_a + e^lse_b),
 * lse = log(e^lse_a + e^lse_b), in fp64. A part with lse +inf or -inf is empty
 * (weight 0); both empty give out 0 and lse +inf.
 *   fixed:  out_a, out_b, out: (B, S, H, D)  lse_a, lse_b, lse: (B, H, S) f32
 *   varlen: out_a, out_b, out: (T, H, D)     lse_a, lse_b, lse: (H, T) f32
 * out in f32, f64, f16 or bf16 (all three the same); lse may be NULL.
 * out may be out_a (or out_b) and lse lse_a (or lse_b), with the same strides:
 * each row is read before it is written, so a running state can be merged
 * into in place. Other overlaps are not allowed. */
attn_status attn_merge_attention_states(const attn_tensor *out_a, const attn_tensor *lse_a,
                                        const attn_tensor *out_b, const attn_tensor *lse_b,
                                        const attn_tensor *out, const attn_tensor *lse);

/* ---- The attention guide's variants (docs/semantics.md §9) ----
 * Sparse top-k: each query keeps the top_k keys with the highest scaled scores
 * (softmax_scale * q.k), softmaxes over those only and averages their values.
 * Ties at the k-th score go to the lower key index; a NaN score ranks above
 * every number (as torch.topk). Keys stream in tiles through a running top-k per
 * query: no row of scores longer than a tile is stored.
 *   q:        (B, Hq, Sq, D)   f32, f64, f16 or bf16 (f16/bf16 compute in fp32)
 *   k:        (B, Hk, Sk, D)   Hk divides Hq: query head h reads KV head h / (Hq/Hk)
 *   v:        (B, Hk, Sk, Dv)
 *   key_mask: (B, Sk)          bool or u8, nonzero = may be attended; may be NULL
 *   out:      (B, Hq, Sq, Dv)  written
 * 1 <= top_k <= Sk. Causal is top-left (key j for query i iff j <= i). A query
 * with fewer than top_k allowed keys keeps them all; one with none gets 0. */
typedef struct attn_sparse_topk_params {
    uint32_t struct_size; /* sizeof(attn_sparse_topk_params) */
    int32_t mask_mode;    /* ATTN_MASK_NONE or ATTN_MASK_CAUSAL_TOP_LEFT */
    int64_t top_k;
    int32_t has_scale;    /* 0: softmax_scale = 1/sqrt(D) */
    int32_t reserved;
    double softmax_scale;
} attn_sparse_topk_params;

attn_status attn_sparse_topk_forward(const attn_sparse_topk_params *params, const attn_tensor *q,
                                     const attn_tensor *k, const attn_tensor *v, const attn_tensor *key_mask,
                                     const attn_tensor *out);

/* Attention Free Transformer, per batch, token t and feature c:
 *   out[t,c] = sigmoid(q[t,c]) * sum_t' e^(W[t,t'] + k[t',c]) v[t',c] / sum_t' e^(W[t,t'] + k[t',c])
 * over the keys t' that t sees: every key (ATTN_AFT_FULL); |t - t'| < local_context
 * (ATTN_AFT_LOCAL; with ATTN_AFT_OUTSIDE_ZERO_BIAS the other keys count too, with
 * W = 0); W = 0 and every key (ATTN_AFT_SIMPLE, O(T*d)); and t' <= t when causal.
 *   q, k, v, out: (B, T, d)  f32, f64, f16 or bf16, one dtype
 *   w_bias:       (>= T, >= T), its leading (T, T) block is W; or NULL
 *   w_u, w_v:     (>= T, r) each: W = w_u * w_v^T, never expanded; or both NULL
 * FULL and LOCAL take exactly one of w_bias or (w_u, w_v); SIMPLE takes neither.
 * Exponents are shifted by max_t' k per feature and max_t' W per row; a (t, c)
 * whose shifted sum underflows is recomputed exactly in fp64. A row whose
 * exponents are all -inf gives 0. */
enum {
    ATTN_AFT_FULL = 0,
    ATTN_AFT_LOCAL = 1,
    ATTN_AFT_SIMPLE = 2
};
enum {
    ATTN_AFT_OUTSIDE_EXCLUDE = 0,  /* keys with |t - t'| >= local_context are left out */
    ATTN_AFT_OUTSIDE_ZERO_BIAS = 1 /* they count with W = 0 (the AFT paper's aft-local) */
};
typedef struct attn_aft_params {
    uint32_t struct_size; /* sizeof(attn_aft_params) */
    int32_t variant;      /* ATTN_AFT_FULL, ATTN_AFT_LOCAL or ATTN_AFT_SIMPLE */
    int32_t causal;       /* 0 or 1 */
    int32_t outside;      /* ATTN_AFT_LOCAL only: ATTN_AFT_OUTSIDE_EXCLUDE or ..._ZERO_BIAS */
    int64_t local_context; /* ATTN_AFT_LOCAL only: >= 1 */
} attn_aft_params;

attn_status attn_aft_forward(const attn_aft_params *params, const attn_tensor *q, const attn_tensor *k,
                             const attn_tensor *v, const attn_tensor *w_bias, const attn_tensor *w_u,
                             const attn_tensor *w_v, const attn_tensor *out);

/* Linformer: K and V projected along the sequence, then softmax attention:
 *   K' = E[:, :Sk] k + bias_e,  V' = F[:, :Sk] v + bias_f,  out = softmax(scale q K'^T) V'
 *   q:              (B, Hq, Sq, D)   f32, f64, f16 or bf16, one dtype for all
 *   k:              (B, Hk, Sk, D)   Hk divides Hq
 *   v:              (B, Hk, Sk, Dv)
 *   proj_e, proj_f: (kp, S_max)      S_max >= Sk: only the first Sk columns are read
 *   bias_e, bias_f: (kp)             may be NULL
 *   out:            (B, Hq, Sq, Dv)  written
 * The projections of each (batch, KV head) are made once and shared by its query
 * heads; each block of queries then attends the kp projected keys. */
typedef struct attn_linformer_params {
    uint32_t struct_size; /* sizeof(attn_linformer_params) */
    int32_t has_scale;    /* 0: softmax_scale = 1/sqrt(D) */
    double softmax_scale;
} attn_linformer_params;

attn_status attn_linformer_forward(const attn_linformer_params *params, const attn_tensor *q,
                                   const attn_tensor *k, const attn_tensor *v, const attn_tensor *proj_e,
                                   const attn_tensor *bias_e, const attn_tensor *proj_f,
                                   const attn_tensor *bias_f, const attn_tensor *out);

/* ---- Per-tensor asymmetric quantization (seed 001) ----
 *   scale = (max - min) / (2^num_bits - 1), zero_point = -min / scale,
 *   q = clamp(round_half_even(x / scale + zero_point), 0, 2^num_bits - 1),
 *   dequantized x = scale * (q - zero_point).
 * A constant tensor gets scale 1 and zero_point -min (exact round trip).
 *   x: any shape, f32/f64/f16/bf16, finite;  q: same shape, u8 (written). */
attn_status attn_quantize_per_tensor(const attn_tensor *x, int32_t num_bits, const attn_tensor *q,
                                     double *scale, double *zero_point);
/*   q: u8;  out: same shape, f32/f64/f16/bf16 (written). */
attn_status attn_dequantize_per_tensor(const attn_tensor *q, double scale, double zero_point,
                                       const attn_tensor *out);

#ifdef __cplusplus
}
#endif

#endif /* ATTNKIT_H */
