// Row argmax: one block of 1024 threads per row; each thread scans a strided part of the row
// keeping (value, first index), then a warp-shuffle and shared-memory reduction that prefers the
// larger value and, on ties, the smaller index (torch.argmax's first maximum). Rows of a
// vocabulary (~128k) read once at full bandwidth; a decode step's [32, V] logits take a few us.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>

#include "backend/cuda/argmax_kernels.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_math.cuh"

namespace tune::cuda {

namespace {

constexpr int kThreads = 1024;

// Is (v, i) a better maximum than (best, at)? NaN never is.
__device__ inline bool better(float v, int64_t i, float best, int64_t at) {
  return v > best || (v == best && i < at);
}

template <typename T>
__global__ void argmax_rows_kernel(int64_t* out, const T* x, int64_t c) {
  const T* row = x + static_cast<int64_t>(blockIdx.x) * c;
  float best = -FLT_MAX;
  int64_t at = c;  // "none yet": loses every tie
  for (int64_t j = threadIdx.x; j < c; j += kThreads) {
    const float v = to_f(row[j]);
    if (better(v, j, best, at)) {
      best = v;
      at = j;
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const float v = __shfl_down_sync(0xffffffffu, best, offset);
    const int64_t i = __shfl_down_sync(0xffffffffu, at, offset);
    if (better(v, i, best, at)) {
      best = v;
      at = i;
    }
  }
  __shared__ float values[kThreads / 32];
  __shared__ int64_t indices[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    values[warp] = best;
    indices[warp] = at;
  }
  __syncthreads();
  if (warp == 0) {
    best = lane < kThreads / 32 ? values[lane] : -FLT_MAX;
    at = lane < kThreads / 32 ? indices[lane] : c;
    for (int offset = 16; offset > 0; offset /= 2) {
      const float v = __shfl_down_sync(0xffffffffu, best, offset);
      const int64_t i = __shfl_down_sync(0xffffffffu, at, offset);
      if (better(v, i, best, at)) {
        best = v;
        at = i;
      }
    }
    if (lane == 0) out[blockIdx.x] = at < c ? at : 0;
  }
}

template <typename T>
void launch(int64_t* out, const void* x, int64_t n, int64_t c) {
  argmax_rows_kernel<T><<<static_cast<unsigned>(n), kThreads, 0, cudaStreamPerThread>>>(
      out, static_cast<const T*>(x), c);
  TUNE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void argmax_rows(DType dtype, int64_t* out, const void* x, int64_t n, int64_t c) {
  if (n == 0) return;
  switch (dtype) {
    case DType::f32:
      return launch<float>(out, x, n, c);
    case DType::bf16:
      return launch<__nv_bfloat16>(out, x, n, c);
    case DType::f16:
      return launch<__half>(out, x, n, c);
    default:
      throw Error(str("cuda::argmax_rows: ", dtype_name(dtype), " is not supported"));
  }
}

}  // namespace tune::cuda
