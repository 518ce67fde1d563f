// The CUDA backend's cross-entropy for src/ops/loss.cpp, in plain C++ types (no CUDA headers).
// Defined in src/backend/cuda/loss.cu, or by no_cuda_loss.cpp in builds without CUDA. Pointers
// are device pointers; work runs on the calling thread's stream (cudaStreamPerThread).
#pragma once

#include <cstdint>

#include "tune/core/dtype.h"

namespace tune::cuda {

struct CrossEntropyResult {
  double loss;      // the sum of the counted rows' losses
  int64_t bad_row;  // -1, or the first row whose target is outside [0, v) and not -100
};

// logits [n, v] of `dtype` (f32, bf16, f16), targets [n] of `target_type` (i32, i64; -100
// ignored). When dlogits is not null it is written, in `grad_type` (dtype, or bf16/f16 for f32
// logits: the output head computes f32 logits from bf16 activations and hands back a bf16
// gradient), with grad_scale * (softmax - onehot(target)) (0 on ignored rows); it may be logits
// itself (in place, same dtype), not a partial overlap. Math in f32; the per-row losses are
// summed in f64 in row order (no atomics), so the result is the same on every run. Waits for the
// stream: the loss is read back (one sync per call).
CrossEntropyResult cross_entropy(DType dtype, DType grad_type, DType target_type, void* dlogits,
                                 const void* logits, const void* targets, int64_t n, int64_t v,
                                 double grad_scale);

}  // namespace tune::cuda
