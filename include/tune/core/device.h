// The few things core needs from a device backend: memory and copies. Declared here, defined by
// src/backend/cuda (or by its no_cuda.cpp stub, which says the build has no CUDA), so core never
// includes a backend header.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace tune {

// True when this build has the CUDA backend and a device is visible.
bool cuda_available();
int cuda_device_count();
// One line per device ("0: NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90"), or why there are none.
std::string cuda_describe();

// Device memory, freed when the returned owner is released.
std::shared_ptr<void> cuda_allocate(size_t bytes, void** data);
enum class CopyKind { host_to_device, device_to_host, device_to_device };
void cuda_copy(void* dst, const void* src, size_t bytes, CopyKind kind);
// Bytes of device memory in use on the current device (total minus free), for benchmarks.
size_t cuda_memory_in_use();
// Sets `bytes` of device memory to zero, queued on the calling thread's stream.
void cuda_zero(void* dst, size_t bytes);
// Waits until the current device has finished everything queued on it (every stream), so a host
// clock around a step measures the step (benchmarks).
void cuda_synchronize();
// The most bytes allocated at once from the current device's memory pool (where cuda_allocate
// and every stream-ordered allocation come from: parameters, gradients, optimizer state,
// activations, scratch) since the last cuda_reset_peak_memory(): what
// torch.cuda.max_memory_allocated() reports on the torch side. Not counted: the CUDA context, the
// pool's cached but unused memory, and the few buffers taken with plain cudaMalloc (the cuBLASLt
// workspace, small per-kernel scratch).
size_t cuda_peak_memory();
void cuda_reset_peak_memory();

// Page-locked host memory (cudaMallocHost), freed when the owner is released: copies between it
// and the device run asynchronously, at full PCIe speed.
std::shared_ptr<void> cuda_allocate_pinned(size_t bytes, void** data);

// A second stream for copies that overlap compute (activation offload). copy() first waits for
// everything queued so far on the calling thread's stream (so it copies finished values), then
// copies on its own stream and returns a ticket; wait(ticket) makes the calling thread's stream
// wait for that copy before anything queued after it. Nothing blocks the host.
class CopyStream {
 public:
  using Ticket = std::shared_ptr<void>;  // the copy's completion event
  CopyStream();
  Ticket copy(void* dst, const void* src, size_t bytes, CopyKind kind);
  void wait(const Ticket& ticket);

 private:
  std::shared_ptr<void> stream_;
};

// A CUDA graph of the work queued on the calling thread's stream between begin_capture() and
// end_capture(), replayed by launch() with the same kernels and arguments: a decode step, whose
// hundreds of small kernels then cost one launch. Nothing may wait for the device or copy from
// pageable host memory while capturing.
class CudaGraph {
 public:
  void begin_capture();
  void end_capture();
  // Ends a capture that failed part way, discarding what was recorded.
  void abort_capture();
  void launch();
  bool captured() const { return exec_ != nullptr; }
  void clear() { exec_.reset(); }

 private:
  std::shared_ptr<void> exec_;  // the instantiated graph
};

}  // namespace tune
