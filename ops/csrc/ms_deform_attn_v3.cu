// Multi-scale deformable attention, kernels "v3" (FREEMASK_MSDA_KERNEL=v3): the v2 decomposition (one group of G
// lanes per (batch, query, head) item, V channels per lane, see ms_deform_attn_cuda.cu) with the per-sample work that
// v2 repeats in every lane done once per group. Semantics, dtypes and the result are v2's; each change and its
// predicted effect is recorded in bench/RESULTS.md ("MSDeformAttn CUDA op", versions table) before measurement.
//
// 1. Shared bilinear setup: in v2 all G lanes of an item read the same location and weight and redo the same floor,
//    bounds tests and corner offsets. Here the samples are split among the lanes ("units": one sample, or with P = 4
//    the four points of one level); the owner lane sets its unit up once and the group reads it by four shuffles
//    (packed corner offset and validity, fx, fy, attention weight).
// 2. P = 4 template: a unit is a level's 4 points, loaded as 32 bytes of locations and 16 bytes of weights (vector
//    loads instead of 12 scalar ones), the points loop unrolled; other P (or misaligned views) use one-sample units.
// 3. 32-bit offsets: every index fits in int (the launcher checks value, locations and output sizes), so corner
//    addresses are one integer multiply-add instead of 64-bit arithmetic per corner.
// 4. Corners issued together: the four loads are unconditional (an outside corner reads the level's first position
//    instead), so no branch separates them and all four are in flight before the first FMA. The forward then zeroes
//    an outside corner's weight (4 selects per sample, not 4 * V on the values); the backward, whose derivatives
//    need the values themselves, zeroes the values. For finite values the forward's multiply-adds are v2's, in v2's
//    order, on the same operands or on zeros: its output is v2's, bit for bit.
// 5. Backward: the owner lane keeps its unit's three gradient sums across channel chunks in registers and writes
//    them once (vector stores for P = 4) instead of v2's read-add-write per chunk.
// Persistent grids over contiguous query ranges (L1 reuse) are not written: the bench decides whether v3 needs them.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "ms_deform_attn_common.cuh"

namespace freemask_msda {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;
// Corner offsets are packed with their 4 validity bits: level sizes up to 2^27 positions.
constexpr int64_t kMaxPackedLevel = int64_t{1} << 27;

// One sample as its owner lane shares it: (y0 * W + x0) * 16 + bit k set when corner k is on the map, and the
// position inside the cell and the attention weight. Corners: (x0, y0), (x0+1, y0), (x0, y0+1), (x0+1, y0+1).
template <typename A>
struct Sample {
  int packed = 0;
  A fx = 0, fy = 0, a = 0;
};

// The same arithmetic as v2's Bilinear (so fx, fy and hence the outputs are identical).
template <typename A>
__device__ __forceinline__ Sample<A> set_up(A loc_x, A loc_y, A a, int height, int width) {
  Sample<A> s;
  s.a = a;
  const A x = loc_x * width - A(0.5), y = loc_y * height - A(0.5);
  if (!(x >= A(-1) && x < A(width) && y >= A(-1) && y < A(height))) return s;  // no neighbour on the map
  const A x_floor = floor(x), y_floor = floor(y);
  const int x0 = static_cast<int>(x_floor), y0 = static_cast<int>(y_floor);
  s.fx = x - x_floor;
  s.fy = y - y_floor;
  const bool left = x0 >= 0, right = x0 + 1 < width, top = y0 >= 0, bottom = y0 + 1 < height;
  const int mask = (top && left) | (top && right) << 1 | (bottom && left) << 2 | (bottom && right) << 3;
  s.packed = (y0 * width + x0) * 16 + mask;
  return s;
}

template <typename A>
__device__ __forceinline__ Sample<A> shuffle(const Sample<A>& s, int src, int group) {
  Sample<A> r;
  r.packed = __shfl_sync(kFullMask, s.packed, src, group);
  r.fx = __shfl_sync(kFullMask, s.fx, src, group);
  r.fy = __shfl_sync(kFullMask, s.fy, src, group);
  r.a = __shfl_sync(kFullMask, s.a, src, group);
  return r;
}

template <typename A>
__device__ __forceinline__ A corner_weight(const Sample<A>& s, int k) {
  return (k & 1 ? s.fx : A(1) - s.fx) * (k & 2 ? s.fy : A(1) - s.fy);
}

// The four corners' V channels: four unconditional loads (an outside corner reads position 0 of the level), then,
// with kZero, the outside corners' values replaced by zeros.
template <bool kZero, typename T, int V>
__device__ __forceinline__ void load_corners(const T* __restrict__ level, int row, int width, int packed,
                                             acc_t<T> (&v)[4][V]) {
  const int base = packed >> 4, mask = packed & 15;  // arithmetic shift: base is -W-1 at the top-left border
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const bool on_map = mask >> k & 1;
    const int pos = base + (k & 1) + (k & 2 ? width : 0);
    load_pack<T, V>(level + (on_map ? pos : 0) * row, v[k]);
  }
  if constexpr (kZero) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const bool on_map = mask >> k & 1;
#pragma unroll
      for (int j = 0; j < V; ++j) v[k][j] = on_map ? v[k][j] : acc_t<T>(0);
    }
  }
}

// The unit `unit` owned by this lane (none past the last): PV samples from sample unit * PV of the item (PV = 4: one
// level's points, vector loads).
template <typename A, int PV>
__device__ __forceinline__ void set_up_unit(const A* __restrict__ loc_item, const A* __restrict__ attn_item,
                                            int unit, int units, const Geometry& g, const Levels& lv,
                                            Sample<A> (&mine)[PV]) {
  if (unit >= units) return;
  const int first = unit * PV, level = first / g.points, height = lv.height[level], width = lv.width[level];
  A x[PV], y[PV], a[PV];
  if constexpr (PV == 4) {
    const Pack<A, 4> xy0 = *reinterpret_cast<const Pack<A, 4>*>(loc_item + 2 * first);
    const Pack<A, 4> xy1 = *reinterpret_cast<const Pack<A, 4>*>(loc_item + 2 * first + 4);
    const Pack<A, 4> w = *reinterpret_cast<const Pack<A, 4>*>(attn_item + first);
#pragma unroll
    for (int p = 0; p < 2; ++p) {
      x[p] = xy0.v[2 * p];
      y[p] = xy0.v[2 * p + 1];
      x[p + 2] = xy1.v[2 * p];
      y[p + 2] = xy1.v[2 * p + 1];
    }
#pragma unroll
    for (int p = 0; p < 4; ++p) a[p] = w.v[p];
  } else {
#pragma unroll
    for (int p = 0; p < PV; ++p) {
      x[p] = loc_item[2 * (first + p)];
      y[p] = loc_item[2 * (first + p) + 1];
      a[p] = attn_item[first + p];
    }
  }
#pragma unroll
  for (int p = 0; p < PV; ++p) mine[p] = set_up(x[p], y[p], a[p], height, width);
}

// Lanes past the last item mirror it (they must reach every shuffle) and neither load channels nor store.
struct Lane {
  int item, lane;
  bool active;
  __device__ __forceinline__ explicit Lane(const Geometry& g) {
    const int thread = blockIdx.x * kThreads + threadIdx.x;
    active = thread / g.group < g.items;
    item = active ? thread / g.group : g.items - 1;
    lane = thread & (g.group - 1);
  }
};

template <typename T, int V, int PV>
__global__ void __launch_bounds__(kThreads)
    forward_kernel_v3(const T* __restrict__ value, const acc_t<T>* __restrict__ loc,
                      const acc_t<T>* __restrict__ attn, T* __restrict__ out, const Geometry g, const Levels lv) {
  using A = acc_t<T>;
  const Lane me(g);
  const int head = me.item % g.heads, batch = me.item / (g.heads * g.num_queries);
  const int row = g.heads * g.channels;
  const T* value_item = value + batch * g.num_values * row + head * g.channels;
  const int samples = g.levels * g.points, units = samples / PV;
  const A* loc_item = loc + me.item * samples * 2;
  const A* attn_item = attn + me.item * samples;
  for (int chunk = 0; chunk < g.chunks; ++chunk) {
    const int c0 = (chunk * g.group + me.lane) * V;
    const bool owns = me.active && c0 < g.channels;
    A acc[V] = {};
    for (int first = 0; first < units; first += g.group) {
      Sample<A> mine[PV];
      set_up_unit<A, PV>(loc_item, attn_item, first + me.lane, units, g, lv, mine);
      const int count = min(g.group, units - first);
      for (int j = 0; j < count; ++j) {
        const int level = (first + j) * PV / g.points, width = lv.width[level];
        const T* value_level = value_item + lv.start[level] * row + c0;
#pragma unroll
        for (int p = 0; p < PV; ++p) {
          const Sample<A> s = shuffle(mine[p], j, g.group);
          if (!owns) continue;
          A v[4][V];
          load_corners<false, T, V>(value_level, row, width, s.packed, v);
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            const A w = s.packed >> k & 1 ? s.a * corner_weight(s, k) : A(0);  // bit k of packed: corner k on the map
#pragma unroll
            for (int jj = 0; jj < V; ++jj) acc[jj] += w * v[k][jj];
          }
        }
      }
    }
    if (owns) store_pack<T, V>(out + me.item * g.channels + c0, acc);
  }
}

template <typename T, int V, int PV>
__global__ void __launch_bounds__(kThreads)
    backward_kernel_v3(const T* __restrict__ value, const acc_t<T>* __restrict__ loc,
                       const acc_t<T>* __restrict__ attn, const T* __restrict__ grad_out,
                       acc_t<T>* __restrict__ grad_value, acc_t<T>* __restrict__ grad_loc,
                       acc_t<T>* __restrict__ grad_attn, const Geometry g, const Levels lv) {
  using A = acc_t<T>;
  const Lane me(g);
  const int head = me.item % g.heads, batch = me.item / (g.heads * g.num_queries);
  const int row = g.heads * g.channels;
  const int value_offset = batch * g.num_values * row + head * g.channels;
  const int samples = g.levels * g.points, units = samples / PV;
  const A* loc_item = loc + me.item * samples * 2;
  const A* attn_item = attn + me.item * samples;
  for (int first = 0; first < units; first += g.group) {
    Sample<A> mine[PV];
    const int unit = first + me.lane;
    set_up_unit<A, PV>(loc_item, attn_item, unit, units, g, lv, mine);
    A sum_attn[PV] = {}, sum_x[PV] = {}, sum_y[PV] = {};  // the owner's gradients, over all channel chunks
    const int count = min(g.group, units - first);
    for (int chunk = 0; chunk < g.chunks; ++chunk) {
      const int c0 = (chunk * g.group + me.lane) * V;
      const bool owns = me.active && c0 < g.channels;
      A go[V] = {};
      if (owns) load_pack<T, V>(grad_out + me.item * g.channels + c0, go);
      for (int j = 0; j < count; ++j) {
        const int level = (first + j) * PV / g.points, width = lv.width[level], height = lv.height[level];
        const int level_offset = value_offset + lv.start[level] * row + c0;
#pragma unroll
        for (int p = 0; p < PV; ++p) {
          const Sample<A> s = shuffle(mine[p], j, g.group);
          A dot_sample = 0, dot_dx = 0, dot_dy = 0;  // grad_out . (sample, d sample / dx, d sample / dy)
          if (owns) {
            A v[4][V];
            load_corners<true, T, V>(value + level_offset, row, width, s.packed, v);
#pragma unroll
            for (int jj = 0; jj < V; ++jj) {
              const A sample = corner_weight(s, 0) * v[0][jj] + corner_weight(s, 1) * v[1][jj] +
                               corner_weight(s, 2) * v[2][jj] + corner_weight(s, 3) * v[3][jj];
              const A ddx = (A(1) - s.fy) * (v[1][jj] - v[0][jj]) + s.fy * (v[3][jj] - v[2][jj]);
              const A ddy = (A(1) - s.fx) * (v[2][jj] - v[0][jj]) + s.fx * (v[3][jj] - v[1][jj]);
              dot_sample += go[jj] * sample;
              dot_dx += go[jj] * ddx;
              dot_dy += go[jj] * ddy;
            }
            const int base = s.packed >> 4, mask = s.packed & 15;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              if (!(mask >> k & 1)) continue;
              const A w = s.a * corner_weight(s, k);
              A contribution[V];
#pragma unroll
              for (int jj = 0; jj < V; ++jj) contribution[jj] = w * go[jj];
              const int pos = base + (k & 1) + (k & 2 ? width : 0);
              atomic_add_pack<V>(grad_value + level_offset + pos * row, contribution);
            }
          }
          dot_sample = group_sum(dot_sample, g.group);
          dot_dx = group_sum(dot_dx, g.group);
          dot_dy = group_sum(dot_dy, g.group);
          if (me.lane == j) {  // x = loc_x * W - 0.5, so d/d loc_x = W * d/dx (likewise y with H)
            sum_attn[p] += dot_sample;
            sum_x[p] += s.a * width * dot_dx;
            sum_y[p] += s.a * height * dot_dy;
          }
        }
      }
    }
    if (me.active && unit < units) {
      const int s0 = unit * PV;
      if constexpr (PV == 4) {
        Pack<A, 4> ga, xy0, xy1;
#pragma unroll
        for (int p = 0; p < 4; ++p) ga.v[p] = sum_attn[p];
#pragma unroll
        for (int p = 0; p < 2; ++p) {
          xy0.v[2 * p] = sum_x[p];
          xy0.v[2 * p + 1] = sum_y[p];
          xy1.v[2 * p] = sum_x[p + 2];
          xy1.v[2 * p + 1] = sum_y[p + 2];
        }
        A* grad_loc_unit = grad_loc + (me.item * samples + s0) * 2;
        *reinterpret_cast<Pack<A, 4>*>(grad_attn + me.item * samples + s0) = ga;
        *reinterpret_cast<Pack<A, 4>*>(grad_loc_unit) = xy0;
        *reinterpret_cast<Pack<A, 4>*>(grad_loc_unit + 4) = xy1;
      } else {
#pragma unroll
        for (int p = 0; p < PV; ++p) {
          grad_attn[me.item * samples + s0 + p] = sum_attn[p];
          grad_loc[(me.item * samples + s0 + p) * 2] = sum_x[p];
          grad_loc[(me.item * samples + s0 + p) * 2 + 1] = sum_y[p];
        }
      }
    }
  }
}

// v3's extra 32-bit bounds (v2 indexes locations and outputs in 64 bits): every offset it forms must fit in int.
void check_v3_bounds(const at::Tensor& loc, const at::Tensor& out, const Levels& levels, int num_levels) {
  TORCH_CHECK(loc.numel() < (int64_t{1} << 31) && out.numel() < (int64_t{1} << 31),
              "freemask_msda v3: ", loc.numel(), " locations or ", out.numel(),
              " outputs exceed its 32-bit offsets; split the batch or set FREEMASK_MSDA_KERNEL=v2");
  for (int l = 0; l < num_levels; ++l) {
    TORCH_CHECK(static_cast<int64_t>(levels.height[l]) * levels.width[l] < kMaxPackedLevel, "freemask_msda v3: level ",
                l, " has more than 2^27 positions; set FREEMASK_MSDA_KERNEL=v2");
  }
}

// The P = 4 units need the item's locations 8-element and its weights 4-element aligned (base pointers suffice:
// every item's block starts at a multiple of L * 4 samples).
template <typename A>
bool quad_units(const at::Tensor& loc, const at::Tensor& attn) {
  return loc.size(4) == 4 && aligned(loc, 4 * sizeof(A)) && aligned(attn, 4 * sizeof(A));
}

template <typename T, typename Launch>
void with_shapes(bool vector, bool quad, Launch&& launch) {
  constexpr int kVec = 16 / sizeof(T);
  if (vector && quad) {
    launch(std::integral_constant<int, kVec>{}, std::integral_constant<int, 4>{});
  } else if (vector) {
    launch(std::integral_constant<int, kVec>{}, std::integral_constant<int, 1>{});
  } else if (quad) {
    launch(std::integral_constant<int, 1>{}, std::integral_constant<int, 4>{});
  } else {
    launch(std::integral_constant<int, 1>{}, std::integral_constant<int, 1>{});
  }
}

}  // namespace

template <typename T>
void forward_v3(const at::Tensor& value, const at::Tensor& loc, const at::Tensor& attn, at::Tensor& out,
                const Levels& levels, cudaStream_t stream) {
  using A = acc_t<T>;
  check_v3_bounds(loc, out, levels, static_cast<int>(loc.size(3)));
  const bool vector = can_vectorize<T>(static_cast<int>(value.size(3)), {&value, &out});
  with_shapes<T>(vector, quad_units<A>(loc, attn), [&](auto vec_tag, auto points_tag) {
    constexpr int kV = decltype(vec_tag)::value, kPV = decltype(points_tag)::value;
    const Geometry g = make_geometry(value, loc, kV);
    forward_kernel_v3<T, kV, kPV><<<blocks_for(g), kThreads, 0, stream>>>(
        value.data_ptr<T>(), loc.data_ptr<A>(), attn.data_ptr<A>(), out.data_ptr<T>(), g, levels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

template <typename T>
void backward_v3(const at::Tensor& value, const at::Tensor& loc, const at::Tensor& attn, const at::Tensor& grad_output,
                 at::Tensor& grad_value, at::Tensor& grad_loc, at::Tensor& grad_attn, const Levels& levels,
                 cudaStream_t stream) {
  using A = acc_t<T>;
  check_v3_bounds(loc, grad_output, levels, static_cast<int>(loc.size(3)));
  const bool vector = can_vectorize<T>(static_cast<int>(value.size(3)), {&value, &grad_output});
  const bool quad = quad_units<A>(loc, attn) && quad_units<A>(grad_loc, grad_attn);
  with_shapes<T>(vector, quad, [&](auto vec_tag, auto points_tag) {
    constexpr int kV = decltype(vec_tag)::value, kPV = decltype(points_tag)::value;
    const Geometry g = make_geometry(value, loc, kV);
    backward_kernel_v3<T, kV, kPV><<<blocks_for(g), kThreads, 0, stream>>>(
        value.data_ptr<T>(), loc.data_ptr<A>(), attn.data_ptr<A>(), grad_output.data_ptr<T>(), grad_value.data_ptr<A>(),
        grad_loc.data_ptr<A>(), grad_attn.data_ptr<A>(), g, levels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

#define FREEMASK_MSDA_V3(T)                                                                                          \
  template void forward_v3<T>(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::Tensor&, const Levels&, \
                              cudaStream_t);                                                                       \
  template void backward_v3<T>(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,         \
                               at::Tensor&, at::Tensor&, at::Tensor&, const Levels&, cudaStream_t);
FREEMASK_MSDA_V3(float)
FREEMASK_MSDA_V3(double)
FREEMASK_MSDA_V3(at::Half)
FREEMASK_MSDA_V3(at::BFloat16)
#undef FREEMASK_MSDA_V3

}  // namespace freemask_msda
