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

namespace {
// The pool's default release threshold is 0: every synchronisation would hand its free memory
// back to the driver and the next step would map it again. Keeping it (as torch's caching
// allocator does) makes a training step's frees and re-allocations free.
void keep_pool_memory() {
  static const bool done = [] {
    int device = 0;
    TUNE_CUDA_CHECK(cudaGetDevice(&device));
    cudaMemPool_t pool;
    TUNE_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    uint64_t keep = UINT64_MAX;
    TUNE_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    return true;
  }();
  (void)done;
}
}  // namespace

std::shared_ptr<void> cuda_allocate(size_t bytes, void** data) {
  TUNE_CHECK(cuda_available(), "cuda_allocate: no CUDA device is visible");
  keep_pool_memory();
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

std::shared_ptr<void> cuda_allocate_pinned(size_t bytes, void** data) {
  void* p = nullptr;
  TUNE_CUDA_CHECK(cudaMallocHost(&p, bytes == 0 ? 1 : bytes));
  *data = p;
  return std::shared_ptr<void>(p, [](void* q) { cudaFreeHost(q); });
}

namespace {
std::shared_ptr<void> new_event() {
  cudaEvent_t e = nullptr;
  TUNE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return std::shared_ptr<void>(e, [](void* q) { cudaEventDestroy(static_cast<cudaEvent_t>(q)); });
}
}  // namespace

CopyStream::CopyStream() {
  cudaStream_t s = nullptr;
  TUNE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream_ =
      std::shared_ptr<void>(s, [](void* q) { cudaStreamDestroy(static_cast<cudaStream_t>(q)); });
}

CopyStream::Ticket CopyStream::copy(void* dst, const void* src, size_t bytes, CopyKind kind) {
  const auto stream = static_cast<cudaStream_t>(stream_.get());
  const std::shared_ptr<void> ready = new_event(), done = new_event();
  TUNE_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(ready.get()), cudaStreamPerThread));
  TUNE_CUDA_CHECK(cudaStreamWaitEvent(stream, static_cast<cudaEvent_t>(ready.get()), 0));
  const cudaMemcpyKind k = kind == CopyKind::host_to_device   ? cudaMemcpyHostToDevice
                           : kind == CopyKind::device_to_host ? cudaMemcpyDeviceToHost
                                                              : cudaMemcpyDeviceToDevice;
  TUNE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, k, stream));
  TUNE_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(done.get()), stream));
  return done;
}

void CopyStream::wait(const Ticket& ticket) {
  if (ticket)
    TUNE_CUDA_CHECK(
        cudaStreamWaitEvent(cudaStreamPerThread, static_cast<cudaEvent_t>(ticket.get()), 0));
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
