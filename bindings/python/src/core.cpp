#include "tensor.h"

#include <pybind11/stl.h>

#include <string>
#include <vector>

namespace attnkit_py {

namespace {
std::string isa_name(int32_t isa) {
    switch (isa) {
        case ATTN_ISA_AVX2: return "avx2";
        case ATTN_ISA_AVX512: return "avx512";
        case ATTN_ISA_AVX512_BF16: return "avx512_bf16";
        default: return "generic";
    }
}
}  // namespace

void init_core(py::module_ &m) {
    m.def("version_number", &attn_version_number, "ATTNKIT_VERSION_NUMBER of the loaded library");
    m.def("header_version_number", [] { return ATTNKIT_VERSION_NUMBER; },
          "ATTNKIT_VERSION_NUMBER of the header this module was built against");
    m.def("get_isa", [] {
        int32_t isa = 0;
        raise_if_error(attn_get_isa(&isa));
        return isa_name(isa);
    }, "The kernel tier chosen at run time: 'generic', 'avx2', 'avx512' or 'avx512_bf16'.");
    m.def("get_available_isas", [] {
        uint32_t mask = 0;
        raise_if_error(attn_get_available_isas(&mask));
        std::vector<std::string> names;
        for (int32_t isa : {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512, ATTN_ISA_AVX512_BF16}) {
            if (mask & (1u << isa)) names.push_back(isa_name(isa));
        }
        return names;
    }, "The kernel tiers this CPU can run, narrowest first.");
    m.def("get_int8_pv_dtype", [] {
        int32_t dtype = 0;
        raise_if_error(attn_get_int8_pv_dtype(&dtype));
        return dtype == ATTN_DTYPE_F16 ? std::string("float16") : std::string("float32");
    }, "The dtype of the int8 paths' P·V in this process: 'float16' or 'float32'.");
    m.def("get_num_threads", [] {
        int32_t threads = 0;
        raise_if_error(attn_get_num_threads(&threads));
        return threads;
    });
    m.def("set_num_threads", [](int64_t threads) {
        if (threads < 1 || threads > INT32_MAX) {
            throw py::value_error("num_threads must be in 1..." + std::to_string(ATTNKIT_MAX_THREADS) + ", got " +
                                  std::to_string(threads));
        }
        raise_if_error(attn_set_num_threads(static_cast<int32_t>(threads)));
    }, py::arg("num_threads"));
}

}  // namespace attnkit_py
