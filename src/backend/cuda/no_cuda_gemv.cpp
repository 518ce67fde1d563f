// Built instead of gemv.cu when the build has no CUDA.
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/gemv_kernels.h"

namespace tune::cuda {

void gemv(DType, int64_t, int64_t, int64_t, float, const void*, int64_t, const void*, int64_t,
          float, void*, int64_t, const void*, float) {
  no_cuda("cuda::gemv");
}

}  // namespace tune::cuda
