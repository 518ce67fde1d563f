// The CUDA backend's optimizer and gradient-norm kernels for src/ops, in plain C++ types.
// Defined in src/backend/cuda/optim.cu, or by no_cuda_optim.cpp in builds without CUDA. Pointers
// are device pointers; work is queued on the calling thread's stream (cudaStreamPerThread).
#pragma once

#include <cstdint>

#include "backend/cpu/optim_kernels.h"
#include "tune/core/dtype.h"

namespace tune::cuda {

// torch.optim.AdamW's step over n f32 elements with the CPU kernel's per-element formula
// (backend/cpu/optim_kernels.h) and roundings: fused multiply-adds exactly where torch fuses,
// correctly rounded sqrt and division elsewhere, so the result equals the CPU's to the bit.
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const cpu::AdamWScalars& s);

// The mixed-precision AdamW step: master, m, v f32; grad and param of `dtype` (f32, bf16, f16).
// The per-element step of adamw_update on g = grad_scale * grad (rounded once; exact for 1), then
// param = master rounded to nearest in `dtype`. With dtype f32 and grad_scale 1 the master, m and
// v equal adamw_update's to the bit.
void adamw_update_mixed(DType dtype, float* master, void* param, const void* grad, float* m,
                        float* v, int64_t n, const cpu::AdamWScalars& s, float grad_scale);

// torch.optim.SGD's step over n f32 elements with the CPU kernel's formula and roundings (equal to
// the CPU's to the bit). momentum_buf is unused (may be null) when momentum is 0.
void sgd_update(float* param, const float* grad, float* momentum_buf, int64_t n, double lr,
                double momentum, double weight_decay, cpu::FirstStep first_step);

// The sum of x[i]^2 over n elements of `dtype` (f32, bf16, f16), accumulated in f64: per-block
// partial sums in a fixed order, then one block over the partials (deterministic: the same bits
// on every run). Waits for the result.
double sum_squares(DType dtype, const void* x, int64_t n);

}  // namespace tune::cuda
