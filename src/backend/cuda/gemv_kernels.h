// The CUDA backend's skinny product for decoding (see gemv.cu), called by cuda::gemm when it
// fits: row-major y (m, n) = alpha * x (m, k) @ W^T + beta * y for W (n, k) row-major and
// m <= kGemvMaxRows; f32, bf16 or f16 storage, f32 math. lda-style strides are row strides.
#pragma once

#include <cstdint>

#include "tune/core/dtype.h"

namespace tune::cuda {

constexpr int64_t kGemvMaxRows = 4;

void gemv(DType dtype, int64_t m, int64_t n, int64_t k, float alpha, const void* x, int64_t ldx,
          const void* w, int64_t ldw, float beta, void* y, int64_t ldy);

}  // namespace tune::cuda
