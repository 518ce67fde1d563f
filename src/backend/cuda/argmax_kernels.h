// The CUDA backend's row argmax for src/ops (greedy decoding without copying logits to the
// host), in plain C++ types. Defined in src/backend/cuda/argmax.cu, or by no_cuda_argmax.cpp in
// builds without CUDA. Pointers are device pointers; work is queued on cudaStreamPerThread.
#pragma once

#include <cstdint>

#include "tune/core/dtype.h"

namespace tune::cuda {

// out [n] (i64) = the first column of the largest value of each row of x [n, c] (f32, bf16 or
// f16); NaNs are never chosen (a row of NaNs gives 0).
void argmax_rows(DType dtype, int64_t* out, const void* x, int64_t n, int64_t c);

}  // namespace tune::cuda
