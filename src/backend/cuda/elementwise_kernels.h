// The CUDA elementwise kernels (elementwise.cu) behind src/ops/elementwise.cpp and the SwiGLU and
// GELU of src/ops/activation.cpp, in plain C++ types. Pointers are device pointers of `dtype`
// (f32, bf16 or f16; math in f32), n elements each; every call is queued on cudaStreamPerThread and
// not waited for. In-place forms may alias their input; elementwise outputs may alias inputs.
#pragma once

#include <cstdint>

#include "tune/core/dtype.h"

namespace tune::cuda {

void fill(DType dtype, void* x, int64_t n, double value);
// dst = src; the ranges may overlap (memmove semantics).
void copy(DType dtype, void* dst, const void* src, int64_t n);
void add(DType dtype, void* out, const void* a, const void* b, int64_t n);       // out = a + b
void add_inplace(DType dtype, void* y, const void* x, int64_t n, double alpha);  // y += alpha x
void scale_inplace(DType dtype, void* y, int64_t n, double alpha);               // y *= alpha
// y (rows, cols) += b (cols) on every row.
void add_bias(DType dtype, void* y, const void* b, int64_t rows, int64_t cols);
// db (cols) += column sums of dy (rows, cols), accumulated in f64 in an order fixed by the shape
// alone (no atomics): the same inputs give the same bits on every run.
void bias_backward(DType dtype, void* db, const void* dy, int64_t rows, int64_t cols);
// h = silu(gate) * up.
void swiglu_forward(DType dtype, void* h, const void* gate, const void* up, int64_t n);
// s = sigmoid(gate): dgate = dh * up * s * (1 + gate * (1 - s)), dup = dh * gate * s.
void swiglu_backward(DType dtype, void* dgate, void* dup, const void* dh, const void* gate,
                     const void* up, int64_t n);

// y = gelu_tanh(x); dx = dy * gelu_tanh'(x) (dx may alias dy or x).
void gelu_tanh_forward(DType dtype, void* y, const void* x, int64_t n);
void gelu_tanh_backward(DType dtype, void* dx, const void* dy, const void* x, int64_t n);
// out[i] = uniform01(seed, stream, i) >= threshold ? x[i] * keep_scale : 0, with tune::uniform01's
// exact draws (the CPU's mask, bit for bit); math in f32. out may alias x.
void dropout(DType dtype, void* out, const void* x, int64_t n, float threshold, float keep_scale,
             uint64_t seed, uint64_t stream);
// dst rows [rows, cols] with row stride ld_dst = src rows with row stride ld_src (elements);
// the two must not overlap.
void copy_2d(DType dtype, void* dst, int64_t ld_dst, const void* src, int64_t ld_src, int64_t rows,
             int64_t cols);

}  // namespace tune::cuda
