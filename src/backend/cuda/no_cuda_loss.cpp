// Built instead of loss.cu when the build has no CUDA.
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/loss_kernels.h"

namespace tune::cuda {

CrossEntropyResult cross_entropy(DType, DType, DType, void*, const void*, const void*, int64_t,
                                 int64_t, double) {
  no_cuda("cuda::cross_entropy");
}

}  // namespace tune::cuda
