// What the v2 (ms_deform_attn_cuda.cu) and v3 (ms_deform_attn_v3.cu) kernels share: the accumulation type, the
// launch geometry, 16-byte channel packs, vector atomics and the group reduction.
//
// Dtypes: value, output and grad_output are T (float, double, half, bfloat16); sampling locations, attention weights
// and their gradients are acc_t<T> (float, double for double): the kernels always computed in acc_t<T>, so a
// low-precision value with float32 locations (mixed precision) costs nothing and loses nothing.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "ms_deform_attn.h"

namespace freemask_msda {

constexpr int kThreads = 256;

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Sizes the kernels need, all as 32-bit integers (the launcher checks they fit).
struct Geometry {
  int items;        // N * Lq * M
  int heads;        // M
  int channels;     // D
  int num_values;   // S
  int num_queries;  // Lq
  int levels;       // L
  int points;       // P
  int group;        // threads per item, a power of two <= 32
  int chunks;       // passes over the channels, > 1 only when D > group * V
};

// V consecutive elements moved as one access.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T, int V>
__device__ __forceinline__ void load_pack(const T* __restrict__ p, acc_t<T> (&out)[V]) {
  const Pack<T, V> pack = *reinterpret_cast<const Pack<T, V>*>(p);
#pragma unroll
  for (int k = 0; k < V; ++k) out[k] = static_cast<acc_t<T>>(pack.v[k]);
}

template <typename T, int V>
__device__ __forceinline__ void store_pack(T* p, const acc_t<T> (&in)[V]) {
  Pack<T, V> pack;
#pragma unroll
  for (int k = 0; k < V; ++k) pack.v[k] = static_cast<T>(in[k]);
  *reinterpret_cast<Pack<T, V>*>(p) = pack;
}

template <int V>
__device__ __forceinline__ void atomic_add_pack(float* p, const float (&in)[V]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr bool kVector = V % 4 == 0;  // sm_90 has 16-byte float atomics: one reduction instead of four
#else
  constexpr bool kVector = false;
#endif
  if constexpr (kVector) {
#pragma unroll
    for (int k = 0; k < V; k += 4) {
      atomicAdd(reinterpret_cast<float4*>(p + k), make_float4(in[k], in[k + 1], in[k + 2], in[k + 3]));
    }
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) atomicAdd(p + k, in[k]);
  }
}

template <int V>
__device__ __forceinline__ void atomic_add_pack(double* p, const double (&in)[V]) {
#pragma unroll
  for (int k = 0; k < V; ++k) atomicAdd(p + k, in[k]);
}

template <typename A>
__device__ __forceinline__ A group_sum(A x, int group) {
  for (int offset = group >> 1; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// Threads per item and passes over the channels for D channels served V at a time (ms_deform_attn_cuda.cu).
Geometry make_geometry(const at::Tensor& value, const at::Tensor& loc, int vec);

inline int blocks_for(const Geometry& g) {
  return static_cast<int>((static_cast<int64_t>(g.items) * g.group + kThreads - 1) / kThreads);
}

inline bool aligned(const at::Tensor& t, int bytes) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % bytes == 0;
}

// 16-byte accesses need D to be a multiple of V and the tensors that are read or written by channel runs aligned.
template <typename T>
bool can_vectorize(int channels, std::initializer_list<const at::Tensor*> tensors) {
  constexpr int vec = 16 / sizeof(T);
  if (channels % vec != 0) return false;
  for (const at::Tensor* t : tensors) {
    if (!aligned(*t, 16)) return false;
  }
  return true;
}

// The v3 launchers (ms_deform_attn_v3.cu), instantiated for float, double, at::Half and at::BFloat16. grad_value is
// the acc_t<T> accumulation buffer, zeroed by the caller.
template <typename T>
void forward_v3(const at::Tensor& value, const at::Tensor& loc, const at::Tensor& attn, at::Tensor& out,
                const Levels& levels, cudaStream_t stream);
template <typename T>
void backward_v3(const at::Tensor& value, const at::Tensor& loc, const at::Tensor& attn, const at::Tensor& grad_output,
                 at::Tensor& grad_value, at::Tensor& grad_loc, at::Tensor& grad_attn, const Levels& levels,
                 cudaStream_t stream);

}  // namespace freemask_msda
