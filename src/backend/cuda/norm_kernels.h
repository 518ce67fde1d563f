// The CUDA backend's RMSNorm entry points for src/ops, in plain C++ types (no CUDA headers).
// Defined in src/backend/cuda/norm.cu, or by no_cuda_norm.cpp in builds without CUDA. Pointers
// are device pointers; work is queued on the calling thread's stream (cudaStreamPerThread).
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
// per-block partial sums, then a column pass over them in order (no float atomics).
void rms_norm_backward(DType dtype, void* dx, void* dw, const void* dy, const void* x,
                       const void* w, const float* rstd, int64_t n, int64_t c);

}  // namespace tune::cuda
