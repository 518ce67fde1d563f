// Built instead of norm.cu when the build has no CUDA: the RMSNorm and LayerNorm entry points
// say so.
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/norm_kernels.h"

namespace tune::cuda {

void rms_norm_forward(DType, void*, float*, const void*, const void*, int64_t, int64_t, float) {
  no_cuda("cuda::rms_norm_forward");
}

void rms_norm_backward(DType, void*, void*, const void*, const void*, const void*, const float*,
                       const void*, int64_t, int64_t) {
  no_cuda("cuda::rms_norm_backward");
}

void add_rms_norm_forward(DType, void*, void*, float*, const void*, const void*, const void*,
                          int64_t, int64_t, float) {
  no_cuda("cuda::add_rms_norm_forward");
}

void layer_norm_forward(DType, void*, float*, float*, const void*, const void*, const void*,
                        int64_t, int64_t, float) {
  no_cuda("cuda::layer_norm_forward");
}

void layer_norm_backward(DType, void*, void*, void*, const void*, const void*, const void*,
                         const float*, const float*, const void*, int64_t, int64_t) {
  no_cuda("cuda::layer_norm_backward");
}

void add_layer_norm_forward(DType, void*, void*, float*, float*, const void*, const void*,
                            const void*, const void*, int64_t, int64_t, float) {
  no_cuda("cuda::add_layer_norm_forward");
}

}  // namespace tune::cuda
