// The CUDA backend's optimizer and gradient-norm kernels for src/ops, in plain C++ types.
// Defined in src/backend/cuda/optim.cu, or by no_cuda_optim.cpp in builds without CUDA. Pointers
// are device pointers; work is queued on the calling thread's stream (cudaStreamPerThread).
#pragma once

#include <cstdint>

#include "backend/cpu/optim_kernels.h"

namespace tune::cuda {

// torch.optim.AdamW's step over n f32 elements with the CPU kernel's per-element formula
// (backend/cpu/optim_kernels.h) and roundings: fused multiply-adds exactly where torch fuses,
// correctly rounded sqrt and division elsewhere, so the result equals the CPU's to the bit.
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const cpu::AdamWScalars& s);

// The sum of x[i]^2 over n f32 elements, accumulated in f64: per-block partial sums in a fixed
// order, then one block over the partials (deterministic: the same bits on every run). Waits for
// the result.
double sum_squares(const float* x, int64_t n);

}  // namespace tune::cuda
