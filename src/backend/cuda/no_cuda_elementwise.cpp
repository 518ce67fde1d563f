// Stubs for the CUDA elementwise kernels in builds without CUDA (see no_cuda.cpp).
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/elementwise_kernels.h"

namespace tune::cuda {

void fill(DType, void*, int64_t, double) {
  no_cuda("cuda::fill");
}
void copy(DType, void*, const void*, int64_t) {
  no_cuda("cuda::copy");
}
void add(DType, void*, const void*, const void*, int64_t) {
  no_cuda("cuda::add");
}
void add_inplace(DType, void*, const void*, int64_t, double) {
  no_cuda("cuda::add_inplace");
}
void scale_inplace(DType, void*, int64_t, double) {
  no_cuda("cuda::scale_inplace");
}
void add_bias(DType, void*, const void*, int64_t, int64_t) {
  no_cuda("cuda::add_bias");
}
void bias_backward(DType, void*, const void*, int64_t, int64_t) {
  no_cuda("cuda::bias_backward");
}
void swiglu_forward(DType, void*, const void*, const void*, int64_t) {
  no_cuda("cuda::swiglu_forward");
}
void swiglu_backward(DType, void*, void*, const void*, const void*, const void*, int64_t) {
  no_cuda("cuda::swiglu_backward");
}
void gelu_tanh_forward(DType, void*, const void*, int64_t) {
  no_cuda("cuda::gelu_tanh_forward");
}
void gelu_tanh_backward(DType, void*, const void*, const void*, int64_t) {
  no_cuda("cuda::gelu_tanh_backward");
}
void dropout(DType, void*, const void*, int64_t, float, float, uint64_t, uint64_t) {
  no_cuda("cuda::dropout");
}
void copy_2d(DType, void*, int64_t, const void*, int64_t, int64_t, int64_t) {
  no_cuda("cuda::copy_2d");
}

}  // namespace tune::cuda
