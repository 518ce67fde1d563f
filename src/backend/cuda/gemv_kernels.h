// The CUDA backend's skinny product for decoding (see gemv.cu), called by cuda::gemm when it
// fits: row-major y (m, n) = alpha * x (m, k) @ W^T + beta * y for W (n, k) row-major and
// m <= kGemvMaxRows; f32, bf16 or f16 storage, f32 math. lda-style strides are row strides.
#pragma once

#include <cstdint>

#include "tune/core/dtype.h"

namespace tune::cuda {

constexpr int64_t kGemvMaxRows = 4;

// With norm_w (k values of the dtype), x's rows are RMS-normalised first (x * rstd * norm_w,
// rstd = 1 / sqrt(mean(x^2) + eps)), in f32, without being written.
void gemv(DType dtype, int64_t m, int64_t n, int64_t k, float alpha, const void* x, int64_t ldx,
          const void* w, int64_t ldw, float beta, void* y, int64_t ldy,
          const void* norm_w = nullptr, float eps = 0.f);

}  // namespace tune::cuda
