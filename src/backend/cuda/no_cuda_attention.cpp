// Built instead of attention.cu, attention_backward.cu, attention_decode.cu and kv_cache.cu when
// the build has no CUDA: the entry points say so.
#include "backend/cuda/attention_kernels.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/kv_cache_kernels.h"

namespace tune::cuda {

int64_t attention_decode_workspace_size(const PagedShape&, int64_t) {
  no_cuda("cuda::attention_decode_workspace_size");
}

void attention_decode(DType, void*, const void*, const void*, const void*, const int32_t*,
                      const int32_t*, const PagedShape&, float, int64_t, float*) {
  no_cuda("cuda::attention_decode");
}

void attention_forward(DType, void*, const void*, const void*, const void*, const int64_t*,
                       const DenseShape&, float, int64_t) {
  no_cuda("cuda::attention_forward");
}

void attention_forward_split(DType, void*, const void*, const void*, const void*, const int64_t*,
                             const DenseShape&, float, int64_t) {
  no_cuda("cuda::attention_forward_split");
}

void attention_forward_lse(DType, void*, float*, const void*, const void*, const void*,
                           const int64_t*, const DenseShape&, float, int64_t) {
  no_cuda("cuda::attention_forward_lse");
}

void attention_backward_lse(DType, void*, void*, void*, const void*, const void*, const void*,
                            const void*, const void*, const float*, const int64_t*,
                            const DenseShape&, float, int64_t) {
  no_cuda("cuda::attention_backward_lse");
}

void kv_cache_write(void*, void*, const void*, const void*, const void*, DType, int64_t, int64_t,
                    int64_t) {
  no_cuda("cuda::kv_cache_write");
}

}  // namespace tune::cuda
