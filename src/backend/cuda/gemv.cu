// Skinny products for decoding: y (m, n) = alpha * x (m, k) @ W^T + beta * y with W stored
// (n, k) row-major (a Linear's [out, in] weight) and m <= kGemvMaxRows. At batch 1 a decode step
// is nothing but such products, bound by reading W once; cuBLASLt's kernels for m = 1 reached
// ~2.0 TB/s on the H100 (Llama-3.1-8B shape, 127 tokens/s), short of the ~3 TB/s the memory
// gives.
//
// One warp per output column: the warp streams W's row with 16-byte loads (four in flight per
// lane), takes the dot products with the m rows of x (small, served from L1/L2) in f32, reduces
// across the warp and writes m outputs. Rows not 16-byte aligned (or k not a multiple of the
// vector) take the same kernel with scalar loads.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_math.cuh"
#include "backend/cuda/gemv_kernels.h"

namespace tune::cuda {

namespace {

constexpr int kWarps = 4;  // warps (output columns) per block

// The dot product of two 16-byte packs of T, in f32; with a third pack n, of a * b * n.
template <typename T>
__device__ inline float dot_pack(const uint4& a, const uint4& b, const uint4& n) {
  constexpr int kPer = 16 / sizeof(T);
  const T* pa = reinterpret_cast<const T*>(&a);
  const T* pb = reinterpret_cast<const T*>(&b);
  const T* pn = reinterpret_cast<const T*>(&n);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kPer; ++i) s += to_f(pa[i]) * to_f(pb[i]) * to_f(pn[i]);
  return s;
}
template <typename T>
__device__ inline float square_pack(const uint4& a) {
  constexpr int kPer = 16 / sizeof(T);
  const T* pa = reinterpret_cast<const T*>(&a);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kPer; ++i) s += to_f(pa[i]) * to_f(pa[i]);
  return s;
}

template <typename T>
__device__ inline float dot_pack(const uint4& a, const uint4& b) {
  constexpr int kPer = 16 / sizeof(T);
  const T* pa = reinterpret_cast<const T*>(&a);
  const T* pb = reinterpret_cast<const T*>(&b);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kPer; ++i) s += to_f(pa[i]) * to_f(pb[i]);
  return s;
}

// With kNorm, x's rows are RMS-normalised on the way in (y = W (x * rstd * nw)): each warp
// takes the sums of squares of the m rows itself (they are in L1 by then), the dot products run
// over x * nw, and rstd scales the sums at the end; the normalised rows are never written.
template <typename T, int M, bool kVector, bool kNorm>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(T* __restrict__ y, int64_t ldy, const T* __restrict__ x, int64_t ldx,
                const T* __restrict__ w, int64_t ldw, int64_t n, int64_t k, float alpha, float beta,
                const T* __restrict__ nw, float eps) {
  const int lane = threadIdx.x % 32;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (col >= n) return;
  const T* wr = w + col * ldw;
  float acc[M], rstd[M];
#pragma unroll
  for (int r = 0; r < M; ++r) {
    acc[r] = 0.f;
    rstd[r] = 1.f;
  }
  if constexpr (kNorm) {
#pragma unroll
    for (int r = 0; r < M; ++r) {
      float ss = 0.f;
      int64_t j0 = 0;
      if constexpr (kVector) {
        constexpr int kPer = 16 / sizeof(T);
        const auto* xp = reinterpret_cast<const uint4*>(x + r * ldx);
        for (int64_t p = lane; p < k / kPer; p += 32) ss += square_pack<T>(__ldg(xp + p));
        j0 = k / kPer * kPer;
      }
      for (int64_t j = j0 + lane; j < k; j += 32) {
        const float v = to_f(x[r * ldx + j]);
        ss += v * v;
      }
      for (int offset = 16; offset > 0; offset /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, offset);
      rstd[r] = rsqrtf(ss / static_cast<float>(k) + eps);
    }
  }
  int64_t done = 0;
  if constexpr (kVector) {
    constexpr int kPer = 16 / sizeof(T);
    constexpr int kUnroll = 4;
    const int64_t packs = k / kPer;
    const auto* wp = reinterpret_cast<const uint4*>(wr);
    int64_t p = lane;
    for (; p + 32 * (kUnroll - 1) < packs; p += 32 * kUnroll) {
      uint4 wv[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) wv[u] = __ldcs(wp + p + 32 * u);  // streamed once
      uint4 nv[kUnroll];
      if constexpr (kNorm) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          nv[u] = __ldg(reinterpret_cast<const uint4*>(nw) + p + 32 * u);
      }
#pragma unroll
      for (int r = 0; r < M; ++r) {
        const auto* xp = reinterpret_cast<const uint4*>(x + r * ldx);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          if constexpr (kNorm)
            acc[r] += dot_pack<T>(wv[u], __ldg(xp + p + 32 * u), nv[u]);
          else
            acc[r] += dot_pack<T>(wv[u], __ldg(xp + p + 32 * u));
        }
      }
    }
    for (; p < packs; p += 32) {
      const uint4 wv = __ldcs(wp + p);
#pragma unroll
      for (int r = 0; r < M; ++r) {
        const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + r * ldx) + p);
        if constexpr (kNorm)
          acc[r] += dot_pack<T>(wv, xv, __ldg(reinterpret_cast<const uint4*>(nw) + p));
        else
          acc[r] += dot_pack<T>(wv, xv);
      }
    }
    done = packs * kPer;
  }
  for (int64_t j = done + lane; j < k; j += 32) {
    const float wv = to_f(wr[j]) * (kNorm ? to_f(nw[j]) : 1.f);
#pragma unroll
    for (int r = 0; r < M; ++r) acc[r] += wv * to_f(x[r * ldx + j]);
  }
#pragma unroll
  for (int r = 0; r < M; ++r) {
    float v = acc[r] * rstd[r];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) {
      T* out = y + r * ldy + col;
      *out = from_f<T>(beta == 0.f ? alpha * v : alpha * v + beta * to_f(*out));
    }
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <typename T, int M, bool kNorm>
void launch(T* y, int64_t ldy, const T* x, int64_t ldx, const T* w, int64_t ldw, int64_t n,
            int64_t k, float alpha, float beta, const T* nw, float eps) {
  constexpr int kPer = 16 / sizeof(T);
  const bool vector = aligned16(x) && aligned16(w) && (!kNorm || aligned16(nw)) &&
                      ldx % kPer == 0 && ldw % kPer == 0 && k >= kPer;
  const auto blocks = static_cast<unsigned>((n + kWarps - 1) / kWarps);
  if (vector)
    gemv_kernel<T, M, true, kNorm><<<blocks, kWarps * 32, 0, cudaStreamPerThread>>>(
        y, ldy, x, ldx, w, ldw, n, k, alpha, beta, nw, eps);
  else
    gemv_kernel<T, M, false, kNorm><<<blocks, kWarps * 32, 0, cudaStreamPerThread>>>(
        y, ldy, x, ldx, w, ldw, n, k, alpha, beta, nw, eps);
  TUNE_CUDA_CHECK(cudaGetLastError());
}

template <typename T, int M>
void launch_rows(T* y, int64_t ldy, const T* x, int64_t ldx, const T* w, int64_t ldw, int64_t n,
                 int64_t k, float alpha, float beta, const T* nw, float eps) {
  if (nw)
    launch<T, M, true>(y, ldy, x, ldx, w, ldw, n, k, alpha, beta, nw, eps);
  else
    launch<T, M, false>(y, ldy, x, ldx, w, ldw, n, k, alpha, beta, nw, eps);
}

template <typename T>
void dispatch_rows(int64_t m, T* y, int64_t ldy, const T* x, int64_t ldx, const T* w, int64_t ldw,
                   int64_t n, int64_t k, float alpha, float beta, const T* nw, float eps) {
  switch (m) {
    case 1:
      return launch_rows<T, 1>(y, ldy, x, ldx, w, ldw, n, k, alpha, beta, nw, eps);
    case 2:
      return launch_rows<T, 2>(y, ldy, x, ldx, w, ldw, n, k, alpha, beta, nw, eps);
    case 3:
      return launch_rows<T, 3>(y, ldy, x, ldx, w, ldw, n, k, alpha, beta, nw, eps);
    case 4:
      return launch_rows<T, 4>(y, ldy, x, ldx, w, ldw, n, k, alpha, beta, nw, eps);
    default:
      throw Error(str("cuda::gemv: ", m, " rows; at most ", kGemvMaxRows));
  }
}

}  // namespace

void gemv(DType dtype, int64_t m, int64_t n, int64_t k, float alpha, const void* x, int64_t ldx,
          const void* w, int64_t ldw, float beta, void* y, int64_t ldy, const void* norm_w,
          float eps) {
  if (m == 0 || n == 0) return;
  switch (dtype) {
    case DType::f32:
      return dispatch_rows(m, static_cast<float*>(y), ldy, static_cast<const float*>(x), ldx,
                           static_cast<const float*>(w), ldw, n, k, alpha, beta,
                           static_cast<const float*>(norm_w), eps);
    case DType::bf16:
      return dispatch_rows(m, static_cast<__nv_bfloat16*>(y), ldy,
                           static_cast<const __nv_bfloat16*>(x), ldx,
                           static_cast<const __nv_bfloat16*>(w), ldw, n, k, alpha, beta,
                           static_cast<const __nv_bfloat16*>(norm_w), eps);
    case DType::f16:
      return dispatch_rows(m, static_cast<__half*>(y), ldy, static_cast<const __half*>(x), ldx,
                           static_cast<const __half*>(w), ldw, n, k, alpha, beta,
                           static_cast<const __half*>(norm_w), eps);
    default:
      throw Error(str("cuda::gemv: ", dtype_name(dtype), " is not supported (f32, bf16, f16)"));
  }
}

}  // namespace tune::cuda
