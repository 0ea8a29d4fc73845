// Multi-scale deformable attention kernels: forward, and backward for value, sampling locations and weights.
//
// Work decomposition (both passes): one *item* is a (batch, query, head) triple and owns D output channels. A group
// of G threads (a power of two <= 32, so a group never straddles a warp) serves one item; each thread owns V
// consecutive channels, V = 16 bytes / sizeof(T) when D allows it (4 float, 8 half/bfloat16, 2 double), so every
// corner read and every output write is one 16-byte access and a group reads a corner's D channels as one contiguous
// run. Items are numbered (batch, query, head) with the head fastest: a warp writes one contiguous stretch of the
// output, and the blocks in flight at any moment hold neighbouring queries of one image, whose sampling points
// overlap, so the corner gathers mostly hit L1/L2 and device memory sees each value roughly once.
//
// Sampling follows grid_sample(align_corners=False, padding_mode="zeros"): the point in pixel units is
// loc * size - 0.5, its four neighbours are weighted bilinearly, and a neighbour outside the map contributes zero
// value and zero gradient. Arithmetic is float32 for float32/float16/bfloat16 inputs and float64 for float64.
//
// Backward: dL/dweight and dL/dlocation of a sample are dot products over the D channels; each thread forms its
// V-channel partial and the group sums them with xor shuffles (no atomics, one plain store per sample).
// dL/dvalue is a scatter onto the four neighbours, which several queries share: it is accumulated with atomics into
// a float32 (float64) buffer, as 16-byte vector atomics on sm_90.
//
// These are the "v2" kernels (FREEMASK_MSDA_KERNEL=v2, the default); ms_deform_attn_v3.cu holds v3. Locations and
// weights (and their gradients) are acc_t<T>: float32 next to a float32/float16/bfloat16 value, float64 next to
// float64 (see ms_deform_attn_common.cuh).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>
#include <type_traits>

#include "ms_deform_attn_common.cuh"

namespace freemask_msda {
namespace {

// The four neighbours of one sampling point, in the order (x0, y0), (x0+1, y0), (x0, y0+1), (x0+1, y0+1).
template <typename A>
struct Bilinear {
  A fx = 0, fy = 0;           // position inside the cell, in [0, 1)
  int pos[4] = {-1, -1, -1, -1};  // y * W + x of each neighbour inside the map, -1 outside

  __device__ __forceinline__ Bilinear(A loc_x, A loc_y, int height, int width) {
    const A x = loc_x * width - A(0.5), y = loc_y * height - A(0.5);
    // Outside [-1, size) no neighbour is on the map; the test also keeps NaN and huge values away from the casts.
    if (!(x >= A(-1) && x < A(width) && y >= A(-1) && y < A(height))) return;
    const A x_floor = floor(x), y_floor = floor(y);
    const int x0 = static_cast<int>(x_floor), y0 = static_cast<int>(y_floor);
    fx = x - x_floor;
    fy = y - y_floor;
    const bool left = x0 >= 0, right = x0 + 1 < width, top = y0 >= 0, bottom = y0 + 1 < height;
    const int row = y0 * width + x0;
    if (top && left) pos[0] = row;
    if (top && right) pos[1] = row + 1;
    if (bottom && left) pos[2] = row + width;
    if (bottom && right) pos[3] = row + width + 1;
  }

  __device__ __forceinline__ A weight(int k) const {
    return (k & 1 ? fx : A(1) - fx) * (k & 2 ? fy : A(1) - fy);
  }
};

// Reads the four neighbours' V channels (zeros outside the map); the loads are independent and issued together.
template <typename T, int V>
__device__ __forceinline__ void load_corners(const T* __restrict__ base, int64_t row, const Bilinear<acc_t<T>>& b,
                                             bool enabled, acc_t<T> (&v)[4][V]) {
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if (enabled && b.pos[k] >= 0) {
      load_pack<T, V>(base + b.pos[k] * row, v[k]);
    } else {
#pragma unroll
      for (int j = 0; j < V; ++j) v[k][j] = 0;
    }
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ value, const acc_t<T>* __restrict__ loc,
                   const acc_t<T>* __restrict__ attn, T* __restrict__ out, const Geometry g, const Levels lv) {
  using A = acc_t<T>;
  const int thread = blockIdx.x * kThreads + threadIdx.x;
  const int item = thread / g.group, lane = thread & (g.group - 1);
  if (item >= g.items) return;
  const int head = item % g.heads, batch = item / (g.heads * g.num_queries);
  const int64_t row = static_cast<int64_t>(g.heads) * g.channels;  // elements between neighbouring positions
  const T* value_item = value + batch * g.num_values * row + head * g.channels;
  const int samples = g.levels * g.points;
  const A* loc_item = loc + static_cast<int64_t>(item) * samples * 2;
  const A* attn_item = attn + static_cast<int64_t>(item) * samples;
  T* out_item = out + static_cast<int64_t>(item) * g.channels;
  for (int chunk = 0; chunk < g.chunks; ++chunk) {
    const int c0 = (chunk * g.group + lane) * V;
    if (c0 >= g.channels) break;
    A acc[V] = {};
    for (int l = 0; l < g.levels; ++l) {
      const int height = lv.height[l], width = lv.width[l];
      const T* value_level = value_item + lv.start[l] * row + c0;
      for (int p = 0; p < g.points; ++p) {
        const int s = l * g.points + p;
        const Bilinear<A> b(loc_item[2 * s], loc_item[2 * s + 1], height, width);
        const A a = attn_item[s];
        A v[4][V];
        load_corners<T, V>(value_level, row, b, true, v);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const A w = a * b.weight(k);
#pragma unroll
          for (int j = 0; j < V; ++j) acc[j] += w * v[k][j];
        }
      }
    }
    store_pack<T, V>(out_item + c0, acc);
  }
}

// Blocks per SM the backward is compiled for (0: unspecified, ptxas's own choice, what the other dtypes keep). With
// float locations next to a float16 value, ptxas holds the 8-channel float16 backward at 80 registers and spills 4
// bytes; asking for 2 blocks per SM lets it take 114 registers without a spill.
template <typename T>
constexpr int kBackwardMinBlocks = std::is_same_v<T, at::Half> ? 2 : 0;

// No early exit: every thread of a warp reaches every shuffle, threads past the last item just load and store nothing.
template <typename T, int V>
__global__ void __launch_bounds__(kThreads, kBackwardMinBlocks<T>)
    backward_kernel(const T* __restrict__ value, const acc_t<T>* __restrict__ loc,
                    const acc_t<T>* __restrict__ attn, const T* __restrict__ grad_out,
                    acc_t<T>* __restrict__ grad_value, acc_t<T>* __restrict__ grad_loc,
                    acc_t<T>* __restrict__ grad_attn, const Geometry g, const Levels lv) {
  using A = acc_t<T>;
  const int thread = blockIdx.x * kThreads + threadIdx.x;
  const bool active = thread / g.group < g.items;
  const int item = active ? thread / g.group : 0, lane = thread & (g.group - 1);
  const int head = item % g.heads, batch = item / (g.heads * g.num_queries);
  const int64_t row = static_cast<int64_t>(g.heads) * g.channels;
  const int64_t value_offset = batch * g.num_values * row + head * g.channels;
  const int samples = g.levels * g.points;
  const A* loc_item = loc + static_cast<int64_t>(item) * samples * 2;
  const A* attn_item = attn + static_cast<int64_t>(item) * samples;
  A* grad_loc_item = grad_loc + static_cast<int64_t>(item) * samples * 2;
  A* grad_attn_item = grad_attn + static_cast<int64_t>(item) * samples;
  for (int chunk = 0; chunk < g.chunks; ++chunk) {
    const int c0 = (chunk * g.group + lane) * V;
    const bool owns = active && c0 < g.channels;
    A go[V] = {};
    if (owns) load_pack<T, V>(grad_out + static_cast<int64_t>(item) * g.channels + c0, go);
    for (int l = 0; l < g.levels; ++l) {
      const int height = lv.height[l], width = lv.width[l];
      const int64_t level_offset = value_offset + lv.start[l] * row + c0;
      for (int p = 0; p < g.points; ++p) {
        const int s = l * g.points + p;
        const Bilinear<A> b(loc_item[2 * s], loc_item[2 * s + 1], height, width);
        const A a = attn_item[s];
        A v[4][V];
        load_corners<T, V>(value + level_offset, row, b, owns, v);
        A dot_sample = 0, dot_dx = 0, dot_dy = 0;  // grad_out . (sample, d sample / dx, d sample / dy)
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const A sample = b.weight(0) * v[0][j] + b.weight(1) * v[1][j] + b.weight(2) * v[2][j] +
                           b.weight(3) * v[3][j];
          const A ddx = (A(1) - b.fy) * (v[1][j] - v[0][j]) + b.fy * (v[3][j] - v[2][j]);
          const A ddy = (A(1) - b.fx) * (v[2][j] - v[0][j]) + b.fx * (v[3][j] - v[1][j]);
          dot_sample += go[j] * sample;
          dot_dx += go[j] * ddx;
          dot_dy += go[j] * ddy;
        }
        if (owns) {
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (b.pos[k] < 0) continue;
            const A w = a * b.weight(k);
            A contribution[V];
#pragma unroll
            for (int j = 0; j < V; ++j) contribution[j] = w * go[j];
            atomic_add_pack<V>(grad_value + level_offset + b.pos[k] * row, contribution);
          }
        }
        dot_sample = group_sum(dot_sample, g.group);
        dot_dx = group_sum(dot_dx, g.group);
        dot_dy = group_sum(dot_dy, g.group);
        if (active && lane == 0) {
          // x = loc_x * W - 0.5, so d/d loc_x = W * d/dx (likewise y with H).
          A ga = dot_sample, gx = a * width * dot_dx, gy = a * height * dot_dy;
          if (chunk > 0) {  // only when D > group * V: add this chunk's channels to the earlier ones
            ga += grad_attn_item[s];
            gx += grad_loc_item[2 * s];
            gy += grad_loc_item[2 * s + 1];
          }
          grad_attn_item[s] = ga;
          grad_loc_item[2 * s] = gx;
          grad_loc_item[2 * s + 1] = gy;
        }
      }
    }
  }
}

}  // namespace

Geometry make_geometry(const at::Tensor& value, const at::Tensor& loc, int vec) {
  Geometry g{};
  g.heads = static_cast<int>(value.size(2));
  g.channels = static_cast<int>(value.size(3));
  g.num_values = static_cast<int>(value.size(1));
  g.num_queries = static_cast<int>(loc.size(1));
  g.levels = static_cast<int>(loc.size(3));
  g.points = static_cast<int>(loc.size(4));
  const int64_t items = value.size(0) * loc.size(1) * value.size(2);
  const int vectors = (g.channels + vec - 1) / vec;
  g.group = 1;
  while (g.group < vectors && g.group < 32) g.group *= 2;
  g.chunks = (vectors + g.group - 1) / g.group;
  TORCH_CHECK(items * g.group < (int64_t{1} << 31) - kThreads && value.numel() < (int64_t{1} << 31),
              "freemask_msda: N*Lq*M = ", items, " items or ", value.numel(),
              " values exceed the kernels' 32-bit indexing; split the batch");
  g.items = static_cast<int>(items);
  return g;
}

at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& loc, const at::Tensor& attn,
                        const Levels& levels, int kernel) {
  const c10::cuda::CUDAGuard guard(value.device());
  auto out = at::empty({value.size(0), loc.size(1), value.size(2) * value.size(3)}, value.options());
  if (out.numel() == 0) return out;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "freemask_msda_forward", [&] {
    using A = acc_t<scalar_t>;
    if (kernel == 3) {
      forward_v3<scalar_t>(value, loc, attn, out, levels, stream);
      return;
    }
    auto launch = [&](auto vec_tag) {
      constexpr int vec = decltype(vec_tag)::value;
      const Geometry g = make_geometry(value, loc, vec);
      forward_kernel<scalar_t, vec><<<blocks_for(g), kThreads, 0, stream>>>(
          value.data_ptr<scalar_t>(), loc.data_ptr<A>(), attn.data_ptr<A>(), out.data_ptr<scalar_t>(), g, levels);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (can_vectorize<scalar_t>(static_cast<int>(value.size(3)), {&value, &out})) {
      launch(std::integral_constant<int, 16 / sizeof(scalar_t)>{});
    } else {
      launch(std::integral_constant<int, 1>{});
    }
  });
  return out;
}

std::vector<at::Tensor> backward_cuda(const at::Tensor& value, const at::Tensor& loc, const at::Tensor& attn,
                                      const at::Tensor& grad_output, const Levels& levels, int kernel) {
  const c10::cuda::CUDAGuard guard(value.device());
  const bool low_precision = value.scalar_type() == at::kHalf || value.scalar_type() == at::kBFloat16;
  // dL/dvalue is a sum of atomics: accumulate in float32 (float64 for float64) and round once at the end.
  auto grad_value = at::zeros(value.sizes(), value.options().dtype(low_precision ? at::kFloat : value.scalar_type()));
  auto grad_loc = at::empty_like(loc);
  auto grad_attn = at::empty_like(attn);
  if (grad_loc.numel() > 0 && value.numel() > 0) {
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "freemask_msda_backward", [&] {
      using A = acc_t<scalar_t>;
      if (kernel == 3) {
        backward_v3<scalar_t>(value, loc, attn, grad_output, grad_value, grad_loc, grad_attn, levels, stream);
        return;
      }
      auto launch = [&](auto vec_tag) {
        constexpr int vec = decltype(vec_tag)::value;
        const Geometry g = make_geometry(value, loc, vec);
        backward_kernel<scalar_t, vec><<<blocks_for(g), kThreads, 0, stream>>>(
            value.data_ptr<scalar_t>(), loc.data_ptr<A>(), attn.data_ptr<A>(), grad_output.data_ptr<scalar_t>(),
            grad_value.data_ptr<A>(), grad_loc.data_ptr<A>(), grad_attn.data_ptr<A>(), g, levels);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      if (can_vectorize<scalar_t>(static_cast<int>(value.size(3)), {&value, &grad_output})) {
        launch(std::integral_constant<int, 16 / sizeof(scalar_t)>{});
      } else {
        launch(std::integral_constant<int, 1>{});
      }
    });
  } else {
    grad_loc.zero_();
    grad_attn.zero_();
  }
  return {low_precision ? grad_value.to(value.scalar_type()) : grad_value, grad_loc, grad_attn};
}

}  // namespace freemask_msda
