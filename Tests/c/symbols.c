/* Looks every public function up at run time, as a plugin host or an FFI would. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>

static const char *const public_functions[] = {
    "attn_version_number", "attn_status_string", "attn_last_error",
    "attn_set_num_threads", "attn_get_num_threads", "attn_eager_forward", "attn_sdpa_forward", "attn_flash_forward", "attn_flash_varlen_forward", "attn_flash_forward_probs", "attn_flash_varlen_forward_probs", "attn_get_isa", "attn_get_available_isas", "attn_get_int8_pv_dtype", "attn_int8_sdpa_forward", "attn_flash_varlen_int8_forward", "attn_quantize_per_tensor", "attn_dequantize_per_tensor", "attn_flash_kvcache_forward", "attn_merge_attention_states", "attn_flash_kvcache_int8_forward",
};

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: symbols LIBRARY\n"); return 2; }
    void *library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!library) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
    int missing = 0;
    for (unsigned i = 0; i < sizeof public_functions / sizeof *public_functions; i++) {
        if (!dlsym(library, public_functions[i])) { fprintf(stderr, "missing %s\n", public_functions[i]); missing++; }
    }
    if (dlsym(library, "swift_retain")) { fprintf(stderr, "the Swift runtime is exported\n"); missing++; }
    uint32_t (*version)(void) = (uint32_t (*)(void))dlsym(library, "attn_version_number");
    if (version) printf("runtime version %u\n", version());
    return missing == 0 ? 0 : 1;
}
