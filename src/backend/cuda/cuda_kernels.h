// The CUDA backend's entry points for src/ops, in plain C++ types (no CUDA headers), so that ops
// can dispatch on a tensor's device without knowing CUDA. Defined in src/backend/cuda/*.cu, or
// by no_cuda.cpp, which says the build has no CUDA. Pointers are device pointers; work is
// queued on the calling thread's stream (cudaStreamPerThread) and not waited for.
#pragma once

#include <cstdint>

#include "tune/core/dtype.h"

namespace tune::cuda {

enum class Trans : uint8_t { no, yes };

// Builds without CUDA: the stubs (no_cuda*.cpp) throw this, saying what was called and what to do.
[[noreturn]] void no_cuda(const char* what);

// Row-major c (m, n) = alpha * op(a) (m, k) @ op(b) (k, n) + beta * c through cuBLASLt; a and b
// share one dtype (f32, bf16 or f16), c is that dtype or f32 (f32 results of bf16/f16 inputs:
// the output head's logits), and products accumulate in f32 (f32 inputs: full f32, no TF32).
// lda, ldb, ldc are the row strides of a, b and c as stored. A non-null bias [n] of c_dtype is
// added to every row of c, in the product's epilogue where cuBLASLt can (a 16-byte aligned bias).
void gemm(DType dtype, DType c_dtype, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
          float alpha, const void* a, int64_t lda, const void* b, int64_t ldb, float beta, void* c,
          int64_t ldc, const void* bias = nullptr);

}  // namespace tune::cuda
