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
// added to every row of c. Both the bias and the epilogue below run in cuBLASLt's epilogue where
// it can (16-byte aligned bias and aux, n a multiple of 8), else as passes of their own.
//   Epilogue::gelu:  aux = the result (bias included), c = gelu_tanh(aux) (GPT-2's MLP forward);
//   Epilogue::dgelu: c = the result * gelu_tanh'(aux) (its backward; no bias).
// aux [m, n] of c_dtype, row stride n; an epilogue needs beta = 0 and ldc = n.
// A non-null c_in (laid out as c) is what beta multiplies instead of c: c = alpha op(a) op(b) +
// beta c_in, read in the product's epilogue (a residual add without a pass of its own).
enum class Epilogue : uint8_t { none, gelu, dgelu };
void gemm(DType dtype, DType c_dtype, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
          float alpha, const void* a, int64_t lda, const void* b, int64_t ldb, float beta, void* c,
          int64_t ldc, const void* bias = nullptr, Epilogue epilogue = Epilogue::none,
          void* aux = nullptr, const void* c_in = nullptr);

// `count` products of one shape in one launch (cuBLASLt's strided batch): member i's a, b and c
// lie i * stride_a, stride_b, stride_c elements past a, b and c (strides >= 0; 0 shares an
// operand among the members; the members' c must not overlap). No bias or epilogue.
struct Batch {
  int count = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
};
void gemm_batched(DType dtype, DType c_dtype, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
                  float alpha, const void* a, int64_t lda, const void* b, int64_t ldb, float beta,
                  void* c, int64_t ldc, const Batch& batch);

}  // namespace tune::cuda
