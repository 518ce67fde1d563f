// CUDA memory and device queries behind include/tune/core/device.h. Allocations come from the
// stream-ordered pool (cudaMallocAsync) so that freeing and reusing activation memory does not
// synchronise the device.
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "tune/core/device.h"
#include "tune/core/error.h"

namespace tune {

bool cuda_available() {
  return cuda_device_count() > 0;
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

std::string cuda_describe() {
  int n = cuda_device_count();
  if (n == 0) return "built with CUDA, but no device is visible";
  std::string out;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    TUNE_CUDA_CHECK(cudaGetDeviceProperties(&p, i));
    out += str(i ? "; " : "", i, ": ", p.name, ", ",
               static_cast<double>(p.totalGlobalMem) / (1ull << 30), " GiB, sm_", p.major, p.minor);
  }
  return out;
}

std::shared_ptr<void> cuda_allocate(size_t bytes, void** data) {
  TUNE_CHECK(cuda_available(), "cuda_allocate: no CUDA device is visible");
  void* p = nullptr;
  TUNE_CUDA_CHECK(cudaMallocAsync(&p, bytes == 0 ? 1 : bytes, cudaStreamPerThread));
  *data = p;
  return std::shared_ptr<void>(p, [](void* q) { cudaFreeAsync(q, cudaStreamPerThread); });
}

void cuda_copy(void* dst, const void* src, size_t bytes, CopyKind kind) {
  cudaMemcpyKind k = kind == CopyKind::host_to_device   ? cudaMemcpyHostToDevice
                     : kind == CopyKind::device_to_host ? cudaMemcpyDeviceToHost
                                                        : cudaMemcpyDeviceToDevice;
  TUNE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, k, cudaStreamPerThread));
  if (kind == CopyKind::device_to_host) TUNE_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
}

size_t cuda_memory_in_use() {
  size_t free = 0, total = 0;
  TUNE_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return total - free;
}

void cuda_zero(void* dst, size_t bytes) {
  TUNE_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, cudaStreamPerThread));
}

void cuda_synchronize() {
  TUNE_CUDA_CHECK(cudaDeviceSynchronize());
}

namespace {
// The pool cudaMallocAsync draws from on the current device.
cudaMemPool_t current_pool() {
  int device = 0;
  TUNE_CUDA_CHECK(cudaGetDevice(&device));
  cudaMemPool_t pool = nullptr;
  TUNE_CUDA_CHECK(cudaDeviceGetMemPool(&pool, device));
  return pool;
}
}  // namespace

size_t cuda_peak_memory() {
  uint64_t high = 0;  // cuuint64_t in the driver API
  TUNE_CUDA_CHECK(cudaMemPoolGetAttribute(current_pool(), cudaMemPoolAttrUsedMemHigh, &high));
  return static_cast<size_t>(high);
}

void cuda_reset_peak_memory() {
  // The only value the attribute accepts is 0, which sets the mark to what is in use now.
  uint64_t zero = 0;
  TUNE_CUDA_CHECK(cudaMemPoolSetAttribute(current_pool(), cudaMemPoolAttrUsedMemHigh, &zero));
}

void CudaGraph::begin_capture() {
  exec_.reset();
  TUNE_CUDA_CHECK(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeThreadLocal));
}

void CudaGraph::end_capture() {
  cudaGraph_t graph = nullptr;
  TUNE_CUDA_CHECK(cudaStreamEndCapture(cudaStreamPerThread, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  TUNE_CUDA_CHECK(status);
  exec_ = std::shared_ptr<void>(
      exec, [](void* e) { cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(e)); });
}

void CudaGraph::abort_capture() {
  cudaGraph_t graph = nullptr;
  if (cudaStreamEndCapture(cudaStreamPerThread, &graph) == cudaSuccess && graph)
    cudaGraphDestroy(graph);
  cudaGetLastError();  // the capture's error is not this call's
  exec_.reset();
}

void CudaGraph::launch() {
  TUNE_CHECK(exec_, "CudaGraph::launch before a capture");
  TUNE_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_.get()), cudaStreamPerThread));
}

}  // namespace tune
