// Built instead of embedding.cu and rope.cu when the build has no CUDA: the entry points say so.
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/embedding_kernels.h"

namespace tune::cuda {

int64_t embedding_forward(DType, DType, void*, const void*, const void*, int64_t, int64_t,
                          int64_t) {
  no_cuda("cuda::embedding_forward");
}

int64_t embedding_backward(DType, DType, void*, const void*, const void*, int64_t, int64_t,
                           int64_t) {
  no_cuda("cuda::embedding_backward");
}

int64_t rope(DType, DType, void*, const void*, const void*, const void*, int64_t, int64_t, int64_t,
             int64_t, int64_t, RopeDirection, bool) {
  no_cuda("cuda::rope");
}

}  // namespace tune::cuda
