// Built instead of optim.cu when the build has no CUDA.
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/optim_kernels.h"

namespace tune::cuda {

void adamw_update(float*, const float*, float*, float*, int64_t, const cpu::AdamWScalars&) {
  no_cuda("cuda::adamw_update");
}

void adamw_update_mixed(DType, float*, void*, const void*, float*, float*, int64_t,
                        const cpu::AdamWScalars&, float) {
  no_cuda("cuda::adamw_update_mixed");
}

void sgd_update(float*, const float*, float*, int64_t, double, double, double, cpu::FirstStep) {
  no_cuda("cuda::sgd_update");
}

double sum_squares(DType, const void*, int64_t) {
  no_cuda("cuda::sum_squares");
}

}  // namespace tune::cuda
