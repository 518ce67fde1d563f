// A decode step replayed from a CUDA graph: the step's kernels run as they come the first time
// they see a given memory (which lets the activation arena settle on its size), are captured in a
// graph the second time, and the graph is replayed from then on — hundreds of small kernels for
// the price of one launch. `memory` names what the kernels point at (KV cache, arena, input
// buffers): when any of it moves, the step runs as it comes once more and is captured again. If
// capturing fails, the step runs as it comes from then on. TUNE_CUDA_GRAPHS=0 turns graphs off (for
// profiling).
#pragma once

#include <array>
#include <cstdlib>
#include <string>

#include "tune/core/device.h"
#include "tune/core/tensor.h"

namespace tune::infer {

class ReplayedStep {
 public:
  using Memory = std::array<const void*, 3>;

  ReplayedStep() {
    const char* env = std::getenv("TUNE_CUDA_GRAPHS");
    enabled_ = !(env && std::string(env) == "0");
  }

  // `compute` queues the step's kernels and returns its output tensor.
  template <typename Compute>
  Tensor run(const Memory& memory, Compute&& compute) {
    if (!enabled_) return compute();
    if (graph_.captured() && memory == captured_) {
      graph_.launch();
      return output_;
    }
    if (memory != warm_) {
      warm_ = memory;
      return compute();
    }
    graph_.begin_capture();
    try {
      output_ = compute();
      graph_.end_capture();
    } catch (...) {
      graph_.abort_capture();
      enabled_ = false;
      return compute();
    }
    captured_ = memory;
    graph_.launch();
    return output_;
  }

 private:
  CudaGraph graph_;
  Memory captured_{}, warm_{};
  Tensor output_;
  bool enabled_ = true;
};

}  // namespace tune::infer
