// Device helpers of embedding.cu, rope.cu, kv_cache.cu and attention*.cu: the storage helpers of
// device_math.cuh, and the device word through which embedding.cu and rope.cu report the first
// out-of-range index (embedding_kernels.h says why; one word per host thread and device,
// allocated on first use).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include <climits>
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_math.cuh"
#include "tune/core/dtype.h"

namespace tune::cuda {

class IndexCheck {
 public:
  // Arms the word on the calling thread's stream; unarmed when `armed` is false (the caller checked
  // the indices on the host) or inside graph capture.
  explicit IndexCheck(bool armed = true) {
    if (!armed) return;
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    TUNE_CUDA_CHECK(cudaStreamIsCapturing(cudaStreamPerThread, &st));
    if (st != cudaStreamCaptureStatusNone) return;
    flag_ = word();
    TUNE_CUDA_CHECK(cudaMemsetAsync(flag_, 0xff, sizeof(unsigned long long), cudaStreamPerThread));
  }
  // The word kernels atomicMin their bad index into, or null (capture: no check).
  unsigned long long* flag() const { return flag_; }
  // After the kernel: -1, or the smallest bad index. Waits for the stream.
  int64_t first_bad() const {
    if (!flag_) return -1;
    unsigned long long v = 0;
    TUNE_CUDA_CHECK(
        cudaMemcpyAsync(&v, flag_, sizeof v, cudaMemcpyDeviceToHost, cudaStreamPerThread));
    TUNE_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
    return v == ULLONG_MAX ? -1 : static_cast<int64_t>(v);
  }

 private:
  static unsigned long long* word() {
    struct Words {
      unsigned long long* p[16] = {};
      ~Words() {
        for (auto* w : p) {
          if (w) cudaFree(w);
        }
      }
    };
    thread_local Words words;
    int dev = 0;
    TUNE_CUDA_CHECK(cudaGetDevice(&dev));
    unsigned long long*& w = words.p[dev & 15];
    if (!w) TUNE_CUDA_CHECK(cudaMalloc(&w, sizeof(unsigned long long)));
    return w;
  }
  unsigned long long* flag_ = nullptr;
};

__device__ __forceinline__ void report_bad_index(unsigned long long* flag, int64_t i) {
  if (flag) atomicMin(flag, static_cast<unsigned long long>(i));
}

}  // namespace tune::cuda
