// LoRA (Hu et al. 2021) as PEFT defines it: y = W x + scale * B A dropout(x), A [r, in],
// B [out, r], scale = alpha / r, or alpha / sqrt(r) with rsLoRA (Kalajdzievski 2023).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tune::nn {

enum class LoraScaling : uint8_t { standard, rslora };

struct LoraConfig {
  int64_t r = 16;
  double alpha = 16;
  double dropout = 0.0;
  LoraScaling scaling = LoraScaling::standard;
  // Module-name suffixes ("q_proj", "mlp.down_proj") or the single entry "all-linear", which
  // targets every Linear except the output head, as PEFT does.
  std::vector<std::string> targets = {"all-linear"};
  uint64_t seed = 0;  // dropout masks and initialisation

  double scale() const;
  // PEFT's rule: a target matches the whole module name or its suffix after a '.'.
  bool targets_module(const std::string& module_name) const;
};

}  // namespace tune::nn
