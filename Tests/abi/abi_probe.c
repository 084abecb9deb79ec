/* The ABI of attnkit 0.1 as DWARF: compiled with -g into a small shared
 * object, whose one exported function returns a table of pointers typed as
 * every 0.1 entry point. abidw then records every function signature, struct,
 * field, enum and size of the public header, and scripts/check_abi.sh diffs
 * the current header's against Tests/abi/attnkit-0.1.abi (made from the 0.1
 * header). Entry points added after 0.1 are additions, allowed by definition;
 * add them here when a release makes them part of the baseline. */
#include "attnkit.h"

struct attnkit_abi_0_1 {
    __typeof__(attn_version_number) *version_number;
    __typeof__(attn_status_string) *status_string;
    __typeof__(attn_last_error) *last_error;
    __typeof__(attn_set_num_threads) *set_num_threads;
    __typeof__(attn_get_num_threads) *get_num_threads;
    __typeof__(attn_get_isa) *get_isa;
    __typeof__(attn_get_int8_pv_dtype) *get_int8_pv_dtype;
    __typeof__(attn_eager_forward) *eager_forward;
    __typeof__(attn_sdpa_forward) *sdpa_forward;
    __typeof__(attn_flash_varlen_forward) *flash_varlen_forward;
    __typeof__(attn_flash_forward) *flash_forward;
    __typeof__(attn_flash_varlen_forward_probs) *flash_varlen_forward_probs;
    __typeof__(attn_flash_forward_probs) *flash_forward_probs;
    __typeof__(attn_int8_sdpa_forward) *int8_sdpa_forward;
    __typeof__(attn_flash_varlen_int8_forward) *flash_varlen_int8_forward;
    __typeof__(attn_quantize_per_tensor) *quantize_per_tensor;
    __typeof__(attn_dequantize_per_tensor) *dequantize_per_tensor;
    /* Each code and constant as an array size, so that a renumbered code
     * changes this struct's layout, which abidiff reports. */
    char attn_ok[ATTN_OK + 1];
    char attn_err_null_pointer[ATTN_ERR_NULL_POINTER + 1];
    char attn_err_invalid_argument[ATTN_ERR_INVALID_ARGUMENT + 1];
    char attn_err_shape[ATTN_ERR_SHAPE + 1];
    char attn_err_dtype[ATTN_ERR_DTYPE + 1];
    char attn_err_overflow[ATTN_ERR_OVERFLOW + 1];
    char attn_err_out_of_memory[ATTN_ERR_OUT_OF_MEMORY + 1];
    char attn_err_struct_size[ATTN_ERR_STRUCT_SIZE + 1];
    char attn_err_internal[ATTN_ERR_INTERNAL + 1];
    char attn_err_unsupported_cpu[ATTN_ERR_UNSUPPORTED_CPU + 1];
    char attn_dtype_f32[ATTN_DTYPE_F32 + 1];
    char attn_dtype_f64[ATTN_DTYPE_F64 + 1];
    char attn_dtype_f16[ATTN_DTYPE_F16 + 1];
    char attn_dtype_bf16[ATTN_DTYPE_BF16 + 1];
    char attn_dtype_i8[ATTN_DTYPE_I8 + 1];
    char attn_dtype_u8[ATTN_DTYPE_U8 + 1];
    char attn_dtype_i32[ATTN_DTYPE_I32 + 1];
    char attn_dtype_i64[ATTN_DTYPE_I64 + 1];
    char attn_dtype_bool[ATTN_DTYPE_BOOL + 1];
    char attn_isa_generic[ATTN_ISA_GENERIC + 1];
    char attn_isa_avx512[ATTN_ISA_AVX512 + 1];
    char attn_isa_avx512_bf16[ATTN_ISA_AVX512_BF16 + 1];
    char attn_mask_none[ATTN_MASK_NONE + 1];
    char attn_mask_causal_top_left[ATTN_MASK_CAUSAL_TOP_LEFT + 1];
    char attn_qk_quant_per_block[ATTN_QK_QUANT_PER_BLOCK + 1];
    char attn_qk_quant_per_token[ATTN_QK_QUANT_PER_TOKEN + 1];
    char attn_qk_quant_per_tensor[ATTN_QK_QUANT_PER_TENSOR + 1];
    char attn_max_rank[ATTN_MAX_RANK + 1];
    char attn_flash_params_v1_size[ATTN_FLASH_PARAMS_V1_SIZE + 1];
};

const struct attnkit_abi_0_1 *attnkit_abi_probe(void);

const struct attnkit_abi_0_1 *attnkit_abi_probe(void) {
    static const struct attnkit_abi_0_1 table = {
        attn_version_number, attn_status_string, attn_last_error, attn_set_num_threads, attn_get_num_threads,
        attn_get_isa, attn_get_int8_pv_dtype, attn_eager_forward, attn_sdpa_forward, attn_flash_varlen_forward,
        attn_flash_forward, attn_flash_varlen_forward_probs, attn_flash_forward_probs, attn_int8_sdpa_forward,
        attn_flash_varlen_int8_forward, attn_quantize_per_tensor, attn_dequantize_per_tensor,
    };
    return &table;
}
