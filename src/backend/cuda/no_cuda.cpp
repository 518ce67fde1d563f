// Built instead of the CUDA backend when CMake found no CUDA toolkit (or TUNE_CUDA=OFF): every
// entry point says so plainly instead of failing somewhere deeper.
#include "backend/cuda/cuda_kernels.h"
#include "tune/core/device.h"
#include "tune/core/error.h"

namespace tune {

namespace cuda {
[[noreturn]] void no_cuda(const char* what) {
  throw Error(str(what,
                  ": this build of tune has no CUDA backend; rebuild on a machine with the "
                  "CUDA toolkit (nvcc) and configure with -DTUNE_CUDA=ON"));
}
}  // namespace cuda

using cuda::no_cuda;

bool cuda_available() {
  return false;
}
int cuda_device_count() {
  return 0;
}
std::string cuda_describe() {
  return "not built (no CUDA toolkit at configure time)";
}
std::shared_ptr<void> cuda_allocate(size_t, void**) {
  no_cuda("cuda_allocate");
}
void cuda_copy(void*, const void*, size_t, CopyKind) {
  no_cuda("cuda_copy");
}
size_t cuda_memory_in_use() {
  no_cuda("cuda_memory_in_use");
}
void cuda_zero(void*, size_t) {
  no_cuda("cuda_zero");
}
void cuda_synchronize() {
  no_cuda("cuda_synchronize");
}
size_t cuda_peak_memory() {
  no_cuda("cuda_peak_memory");
}
void cuda_reset_peak_memory() {
  no_cuda("cuda_reset_peak_memory");
}

std::shared_ptr<void> cuda_allocate_pinned(size_t, void**) {
  no_cuda("cuda_allocate_pinned");
}
CopyStream::CopyStream() {
  no_cuda("CopyStream");
}
CopyStream::Ticket CopyStream::copy(void*, const void*, size_t, CopyKind) {
  no_cuda("CopyStream::copy");
}
void CopyStream::wait(const Ticket&) {
  no_cuda("CopyStream::wait");
}

void CudaGraph::begin_capture() {
  no_cuda("CudaGraph::begin_capture");
}
void CudaGraph::end_capture() {
  no_cuda("CudaGraph::end_capture");
}
void CudaGraph::abort_capture() {}
void CudaGraph::launch() {
  no_cuda("CudaGraph::launch");
}

namespace cuda {
void gemm(DType, DType, Trans, Trans, int64_t, int64_t, int64_t, float, const void*, int64_t,
          const void*, int64_t, float, void*, int64_t, const void*, Epilogue, void*, const void*) {
  no_cuda("cuda::gemm");
}
void gemm_batched(DType, DType, Trans, Trans, int64_t, int64_t, int64_t, float, const void*,
                  int64_t, const void*, int64_t, float, void*, int64_t, const Batch&) {
  no_cuda("cuda::gemm_batched");
}
}  // namespace cuda

}  // namespace tune
