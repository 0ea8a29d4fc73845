// Multi-scale deformable attention: the interface shared by the bindings (ms_deform_attn.cpp, host only) and the
// kernels (ms_deform_attn_cuda.cu). Semantics are those of freemask.modeling.ops.ms_deform_attn_pytorch.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace freemask_msda {

// Level sizes travel as a kernel parameter (no device metadata, no extra copy); 3 * 64 ints is far under the
// parameter limit, and every level index a warp reads is uniform, so the reads are constant-cache broadcasts.
constexpr int kMaxLevels = 64;

struct Levels {
  int height[kMaxLevels];
  int width[kMaxLevels];
  int start[kMaxLevels];
};

// value (N, S, M, D) float32/float16/bfloat16/float64, sampling_locations (N, Lq, M, L, P, 2) and attention_weights
// (N, Lq, M, L, P) float32 (float64 with a float64 value), all contiguous on one CUDA device, already checked by the
// caller. kernel: 2 or 3 (FREEMASK_MSDA_KERNEL). Returns (N, Lq, M * D) in the value's dtype.
at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& sampling_locations,
                        const at::Tensor& attention_weights, const Levels& levels, int kernel);

// Returns {grad_value, grad_sampling_locations, grad_attention_weights} for grad_output (N, Lq, M * D), contiguous,
// each in its input's dtype.
std::vector<at::Tensor> backward_cuda(const at::Tensor& value, const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights, const at::Tensor& grad_output,
                                      const Levels& levels, int kernel);

}  // namespace freemask_msda
