#include "tensor.h"

#include <pybind11/numpy.h>

#include <cstring>
#include <string>

namespace attnkit_py {

namespace {

attn_dtype numpy_dtype(const py::dtype &dtype, const char *name) {
    if (dtype.byteorder() == '>') {
        throw py::type_error(std::string(name) + " must be in native byte order");
    }
    const char kind = dtype.kind();
    const auto size = dtype.itemsize();
    if (kind == 'f' && size == 4) return ATTN_DTYPE_F32;
    if (kind == 'f' && size == 8) return ATTN_DTYPE_F64;
    if (kind == 'f' && size == 2) return ATTN_DTYPE_F16;
    if (kind == 'b' && size == 1) return ATTN_DTYPE_BOOL;
    if (kind == 'u' && size == 1) return ATTN_DTYPE_U8;
    if (kind == 'i' && size == 1) return ATTN_DTYPE_I8;
    if (kind == 'i' && size == 4) return ATTN_DTYPE_I32;
    if (kind == 'i' && size == 8) return ATTN_DTYPE_I64;
    if (py::str(dtype).cast<std::string>() == "bfloat16" && size == 2) return ATTN_DTYPE_BF16;
    throw py::type_error(std::string(name) + ".dtype must be one attnkit reads (float32, float64, float16, bfloat16, "
                         "bool, uint8, int8, int32, int64), got " + py::str(dtype).cast<std::string>());
}

attn_dtype torch_dtype(const std::string &dtype, const char *name) {
    if (dtype == "torch.float32") return ATTN_DTYPE_F32;
    if (dtype == "torch.float64") return ATTN_DTYPE_F64;
    if (dtype == "torch.float16") return ATTN_DTYPE_F16;
    if (dtype == "torch.bfloat16") return ATTN_DTYPE_BF16;
    if (dtype == "torch.bool") return ATTN_DTYPE_BOOL;
    if (dtype == "torch.uint8") return ATTN_DTYPE_U8;
    if (dtype == "torch.int8") return ATTN_DTYPE_I8;
    if (dtype == "torch.int32") return ATTN_DTYPE_I32;
    if (dtype == "torch.int64") return ATTN_DTYPE_I64;
    throw py::type_error(std::string(name) + ".dtype must be one attnkit reads (float32, float64, float16, bfloat16, "
                         "bool, uint8, int8, int32, int64), got " + dtype);
}

bool is_torch_tensor(py::handle object) {
    const auto type_module = py::str(py::type::handle_of(object).attr("__module__")).cast<std::string>();
    return type_module.rfind("torch", 0) == 0 && py::hasattr(object, "data_ptr");
}

attn_tensor empty_descriptor() {
    attn_tensor tensor;
    std::memset(&tensor, 0, sizeof tensor);
    return tensor;
}

void check_rank(size_t rank, const char *name) {
    if (rank > ATTN_MAX_RANK) {
        throw py::value_error(std::string(name) + " has " + std::to_string(rank) + " dims; at most " +
                              std::to_string(ATTN_MAX_RANK) + " are supported");
    }
}

}  // namespace

attn_tensor describe(py::handle object, const char *name) {
    attn_tensor tensor = empty_descriptor();
    if (py::isinstance<py::array>(object)) {
        if (py::isinstance(object, py::module_::import("numpy.ma").attr("MaskedArray"))) {
            throw py::type_error(std::string(name) + " is a numpy masked array, whose mask attnkit would ignore; pass " +
                                 name + ".filled(...) or the plain data");
        }
        auto array = py::reinterpret_borrow<py::array>(object);
        check_rank(static_cast<size_t>(array.ndim()), name);
        tensor.dtype = numpy_dtype(array.dtype(), name);
        tensor.rank = static_cast<int32_t>(array.ndim());
        tensor.data = const_cast<void *>(array.data());
        const auto itemsize = array.itemsize();
        for (py::ssize_t axis = 0; axis < array.ndim(); ++axis) {
            tensor.shape[axis] = array.shape(axis);
            if (array.strides(axis) % itemsize != 0) {
                throw py::value_error(std::string(name) + ".strides must be whole elements; got " +
                                      std::to_string(array.strides(axis)) + " bytes on axis " + std::to_string(axis));
            }
            tensor.strides[axis] = array.strides(axis) / itemsize;
        }
        return tensor;
    }
    if (is_torch_tensor(object)) {
        const auto device = py::str(object.attr("device").attr("type")).cast<std::string>();
        if (device != "cpu") {
            throw py::value_error(std::string(name) + " must be a CPU tensor, got device " + device);
        }
        if (py::str(object.attr("layout")).cast<std::string>() != "torch.strided") {
            throw py::value_error(std::string(name) + " must be a strided (dense) tensor, got layout " +
                                  py::str(object.attr("layout")).cast<std::string>());
        }
        // Views whose flags change their values without changing memory.
        if (object.attr("is_neg")().cast<bool>()) {
            throw py::value_error(std::string(name) + " is a negated view (is_neg() is True), which attnkit would read "
                                  "unnegated; pass " + name + ".resolve_neg()");
        }
        if (object.attr("is_conj")().cast<bool>()) {
            throw py::value_error(std::string(name) + " is a conjugated view (is_conj() is True); pass " + name +
                                  ".resolve_conj()");
        }
        // The differentiable functions reach here inside their autograd.Function, with grad
        // mode off; anything else that would return a result silently detached from the
        // graph (and fail far from here, at backward()) is refused.
        if (object.attr("requires_grad").cast<bool>() &&
            py::module_::import("torch").attr("is_grad_enabled")().cast<bool>()) {
            throw py::value_error(std::string(name) + " requires grad, but this attnkit function has no backward "
                                  "pass (scaled_dot_product_attention, the flash_attn functions and the eager seed functions "
                                  "have one): call "
                                  "it under torch.no_grad() or pass " + name + ".detach()");
        }
        tensor.dtype = torch_dtype(py::str(object.attr("dtype")).cast<std::string>(), name);
        auto shape = object.attr("shape").cast<py::tuple>();
        auto strides = object.attr("stride")().cast<py::tuple>();
        check_rank(shape.size(), name);
        tensor.rank = static_cast<int32_t>(shape.size());
        for (size_t axis = 0; axis < shape.size(); ++axis) {
            tensor.shape[axis] = shape[axis].cast<int64_t>();
            tensor.strides[axis] = strides[axis].cast<int64_t>();
        }
        tensor.data = reinterpret_cast<void *>(object.attr("data_ptr")().cast<uintptr_t>());
        return tensor;
    }
    throw py::type_error(std::string(name) + " must be a numpy.ndarray or a torch.Tensor, got " +
                         py::str(py::type::handle_of(object).attr("__name__")).cast<std::string>());
}

OptionalTensor describe_optional(py::handle object, const char *name) {
    OptionalTensor result;
    if (!object.is_none()) {
        result.tensor = describe(object, name);
        result.present = true;
    }
    return result;
}

void raise_if_error(attn_status status) {
    if (status == ATTN_OK) return;
    const std::string message = attn_last_error();
    switch (status) {
        case ATTN_ERR_DTYPE: throw py::type_error(message);
        case ATTN_ERR_OUT_OF_MEMORY: PyErr_SetString(PyExc_MemoryError, message.c_str()); throw py::error_already_set();
        case ATTN_ERR_INTERNAL: throw std::runtime_error(message);
        default: throw py::value_error(message);
    }
}

}  // namespace attnkit_py
