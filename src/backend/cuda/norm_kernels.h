// The CUDA backend's RMSNorm and LayerNorm entry points for src/ops, in plain C++ types (no CUDA
// headers). Defined in src/backend/cuda/norm.cu, or by no_cuda_norm.cpp in builds without CUDA.
// Pointers are device pointers; work is queued on the calling thread's stream
// (cudaStreamPerThread).
#pragma once

#include <cstdint>

#include "tune/core/dtype.h"

namespace tune::cuda {

// x, y [n, c] and w [c] of `dtype` (f32, bf16 or f16); rstd [n] always f32; math in f32.
// y = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps).
void rms_norm_forward(DType dtype, void* y, float* rstd, const void* x, const void* w, int64_t n,
                      int64_t c, float eps);

// dx [n, c] = rstd * (g - xhat * mean(g * xhat)) with g = w * dy, xhat = x * rstd (dx may alias
// dy); dw [c] += sum over rows of dy * xhat, skipped when dw is null. dw is deterministic: fixed
// per-block partial sums, then a column pass over them in order (no float atomics). With
// residual [n, c] not null, dx += residual in the same pass: dx rounded to dtype first, then the
// sum in f32 (what add_inplace computes), so bit-identical to the separate add.
void rms_norm_backward(DType dtype, void* dx, void* dw, const void* dy, const void* x,
                       const void* w, const float* rstd, const void* residual, int64_t n,
                       int64_t c);

// h = x + a [n, c] (rounded to dtype, as cuda::add does), then rms_norm_forward on h: one pass
// over the row reading x and a, writing h and y; h, y and rstd equal add then rms_norm_forward
// bit for bit (the same reduction order; dev/kernels/rms_norm.cu, add forward 2).
void add_rms_norm_forward(DType dtype, void* h, void* y, float* rstd, const void* x, const void* a,
                          const void* w, int64_t n, int64_t c, float eps);

// LayerNorm: x, y [n, c] and w, b [c] of `dtype` (f32, bf16 or f16); mean, rstd [n] always f32;
// math in f32. y = (x - mean) * rstd * w + b, rstd = 1 / sqrt(mean((x - mean)^2) + eps).
void layer_norm_forward(DType dtype, void* y, float* mean, float* rstd, const void* x,
                        const void* w, const void* b, int64_t n, int64_t c, float eps);

// dx [n, c] = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = w * dy and
// xhat = (x - mean) * rstd (dx may alias dy); dw [c] += column sums of dy * xhat and db [c] +=
// column sums of dy, each skipped when null. Deterministic as rms_norm_backward. With residual
// [n, c] not null, dx += residual in the same pass, bit-identical to the separate add (as
// rms_norm_backward's).
void layer_norm_backward(DType dtype, void* dx, void* dw, void* db, const void* dy, const void* x,
                         const void* w, const float* mean, const float* rstd, const void* residual,
                         int64_t n, int64_t c);

// h = x + a [n, c] (rounded to dtype, as cuda::add does), then layer_norm_forward on h in the same
// pass; h, y, mean and rstd equal add then layer_norm_forward bit for bit (the same kernel shape
// and reduction order whatever the alignment of x and a).
void add_layer_norm_forward(DType dtype, void* h, void* y, float* mean, float* rstd, const void* x,
                            const void* a, const void* w, const void* b, int64_t n, int64_t c,
                            float eps);

}  // namespace tune::cuda
