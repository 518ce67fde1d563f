// What every kernel file needs of the storage dtypes (f32, bf16, f16): conversion to and from
// f32 (round to nearest), V elements as one aligned access, the dispatch from DType to the CUDA
// type, and 64-bit min/max.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "tune/core/dtype.h"

namespace tune::cuda {

template <typename T>
__device__ __forceinline__ float to_f(T v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else {
    return __half2float(v);
  }
}

template <typename T>
__device__ __forceinline__ T from_f(float v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16(v);
  } else {
    return __float2half(v);
  }
}

__device__ __forceinline__ int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}
__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

// V elements loaded or stored as one access (16 bytes for 8 bf16 or 4 f32).
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

// Calls f(T{}) with T = float, __nv_bfloat16 or __half for dtype f32, bf16 or f16.
template <typename F>
void dispatch_storage(DType t, F&& f) {
  if (t == DType::f32) {
    f(float{});
  } else if (t == DType::bf16) {
    f(__nv_bfloat16{});
  } else {
    f(__half{});
  }
}

}  // namespace tune::cuda
