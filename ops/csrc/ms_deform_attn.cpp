// Python bindings and argument checks of the multi-scale deformable attention op. Host-only: the checks run before
// any kernel so that a bad call fails with a message naming the argument instead of reading out of bounds.
// torch/csrc/utils/pybind.h instead of torch/extension.h: the Tensor type caster without the whole C++ frontend,
// which roughly halves this file's compile time (CI compiles it on every change).
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/csrc/utils/pybind.h>

#include <string>
#include <vector>

#include "ms_deform_attn.h"

namespace py = pybind11;

namespace freemask_msda {
namespace {

std::string shape_of(const at::Tensor& t) { return c10::str(t.sizes()); }

// Checks devices, dtypes and shapes, and turns the host-side level sizes into the kernels' parameter block.
Levels check_inputs(const at::Tensor& value, const at::Tensor& loc, const at::Tensor& attn,
                    const std::vector<int64_t>& shapes, const std::vector<int64_t>& starts) {
  TORCH_CHECK(value.is_cuda() && loc.is_cuda() && attn.is_cuda(),
              "freemask_msda: value, sampling_locations and attention_weights must be CUDA tensors; CPU tensors take "
              "the PyTorch path (freemask.modeling.ops.ms_deform_attn)");
  TORCH_CHECK(loc.device() == value.device() && attn.device() == value.device(),
              "freemask_msda: all tensors must be on one device, got value on ", value.device(), ", locations on ",
              loc.device(), ", weights on ", attn.device());
  const auto dtype = value.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kDouble,
              "freemask_msda: value must be float32, float16, bfloat16 or float64, got ", dtype);
  const auto location_dtype = dtype == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(loc.scalar_type() == location_dtype && attn.scalar_type() == location_dtype,
              "freemask_msda: sampling_locations and attention_weights must be ", location_dtype, " with a ", dtype,
              " value, got ", loc.scalar_type(), " and ", attn.scalar_type(),
              "; freemask.modeling.ops.ms_deform_attn casts them");
  TORCH_CHECK(value.dim() == 4, "freemask_msda: value must be (N, S, M, D), got ", shape_of(value));
  const int64_t num_levels = static_cast<int64_t>(shapes.size()) / 2;
  TORCH_CHECK(shapes.size() % 2 == 0 && static_cast<int64_t>(starts.size()) == num_levels && num_levels > 0,
              "freemask_msda: spatial_shapes must hold (H, W) per level and level_start_index one offset per level");
  TORCH_CHECK(num_levels <= kMaxLevels, "freemask_msda: at most ", kMaxLevels, " levels are supported, got ",
              num_levels, "; raise kMaxLevels in ops/csrc/ms_deform_attn.h and rebuild");
  const int64_t n = value.size(0), m = value.size(2);
  TORCH_CHECK(loc.dim() == 6 && loc.size(0) == n && loc.size(2) == m && loc.size(3) == num_levels &&
                  loc.size(5) == 2,
              "freemask_msda: sampling_locations must be (N=", n, ", Lq, M=", m, ", L=", num_levels, ", P, 2), got ",
              shape_of(loc));
  TORCH_CHECK(attn.sizes() == loc.sizes().slice(0, 5), "freemask_msda: attention_weights must be ",
              c10::str(loc.sizes().slice(0, 5)), " to match sampling_locations, got ", shape_of(attn));
  Levels levels{};
  int64_t total = 0;
  for (int64_t l = 0; l < num_levels; ++l) {
    const int64_t h = shapes[2 * l], w = shapes[2 * l + 1];
    TORCH_CHECK(h > 0 && w > 0, "freemask_msda: level ", l, " is empty (H, W) = (", h, ", ", w,
                "); drop it or use a smaller input stride");
    TORCH_CHECK(starts[l] == total, "freemask_msda: level_start_index[", l, "] is ", starts[l], ", expected ", total,
                " (the exclusive cumulative sum of H*W)");
    levels.height[l] = static_cast<int>(h);
    levels.width[l] = static_cast<int>(w);
    levels.start[l] = static_cast<int>(total);
    total += h * w;
  }
  TORCH_CHECK(total == value.size(1), "freemask_msda: value has S=", value.size(1),
              " positions but spatial_shapes sum to ", total);
  return levels;
}

void check_kernel(int kernel) {
  TORCH_CHECK(kernel == 2 || kernel == 3, "freemask_msda: kernel must be 2 or 3 (FREEMASK_MSDA_KERNEL=v2|v3), got ",
              kernel);
}

at::Tensor forward(const at::Tensor& value, const at::Tensor& loc, const at::Tensor& attn,
                   const std::vector<int64_t>& shapes, const std::vector<int64_t>& starts, int kernel) {
  check_kernel(kernel);
  const Levels levels = check_inputs(value, loc, attn, shapes, starts);
  return forward_cuda(value.contiguous(), loc.contiguous(), attn.contiguous(), levels, kernel);
}

std::vector<at::Tensor> backward(const at::Tensor& value, const at::Tensor& loc, const at::Tensor& attn,
                                 const at::Tensor& grad_output, const std::vector<int64_t>& shapes,
                                 const std::vector<int64_t>& starts, int kernel) {
  check_kernel(kernel);
  const Levels levels = check_inputs(value, loc, attn, shapes, starts);
  const std::vector<int64_t> expected{value.size(0), loc.size(1), value.size(2) * value.size(3)};
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(expected) && grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.device() == value.device(),
              "freemask_msda: grad_output must be ", at::IntArrayRef(expected), " ", value.scalar_type(), " on ",
              value.device(), ", got ", shape_of(grad_output), " ", grad_output.scalar_type());
  return backward_cuda(value.contiguous(), loc.contiguous(), attn.contiguous(), grad_output.contiguous(), levels,
                       kernel);
}

}  // namespace
}  // namespace freemask_msda

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Multi-scale deformable attention (CUDA): forward and backward of freemask.modeling.ops.ms_deform_attn";
  m.def("forward", &freemask_msda::forward,
        "(value, sampling_locations, attention_weights, shapes, starts, kernel=2) -> output", py::arg("value"),
        py::arg("sampling_locations"), py::arg("attention_weights"), py::arg("shapes"), py::arg("starts"),
        py::arg("kernel") = 2);
  m.def("backward", &freemask_msda::backward,
        "(value, sampling_locations, attention_weights, grad_output, shapes, starts, kernel=2) -> "
        "(grad_value, grad_sampling_locations, grad_attention_weights)",
        py::arg("value"), py::arg("sampling_locations"), py::arg("attention_weights"), py::arg("grad_output"),
        py::arg("shapes"), py::arg("starts"), py::arg("kernel") = 2);
}
