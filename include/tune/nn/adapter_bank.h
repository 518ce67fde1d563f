// Several LoRA adapters over one frozen base, for serving: each request picks the base model or
// one adapter, and rows of different adapters share one batched forward
// (CausalLM::forward_batch). A Linear's output for a row of adapter a is
//   y = x W^T + b + scale_a * (x A_a^T) B_a^T
// with A_a [r, in] and B_a [out, r] as PEFT stores them. The base model keeps no adapter of its
// own; the bank holds each adapter's tensors by module name ("model.layers.0.self_attn.q_proj").
// Adapter 0 is the base model; adapters are numbered 1, 2, ... in the order they are added.
// Loading from PEFT folders lives in the infer layer (tune/infer/batch_engine.h), which may read
// files; this class only holds tensors.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "tune/core/tensor.h"

namespace tune::nn {

struct LoraDelta {
  Tensor a;  // [r, in]
  Tensor b;  // [out, r]
  double scale = 1.0;
};

class AdapterBank {
 public:
  // Adds an adapter; `deltas` maps module names to their A, B and scale. Returns its id (>= 1).
  // Names are unique.
  int add(const std::string& name, std::unordered_map<std::string, LoraDelta> deltas);
  int size() const { return static_cast<int>(adapters_.size()); }
  // The id of the adapter called `name`, -1 when none is.
  int find(const std::string& name) const;
  const std::string& name(int id) const;
  // The delta adapter `id` puts on `module`; null for id 0 (the base model) or a module the
  // adapter does not target.
  const LoraDelta* delta(int id, const std::string& module) const;

 private:
  struct Adapter {
    std::string name;
    std::unordered_map<std::string, LoraDelta> deltas;
  };
  std::vector<Adapter> adapters_;
};

}  // namespace tune::nn
