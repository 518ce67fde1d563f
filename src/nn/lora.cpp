#include "tune/nn/lora.h"

#include <cmath>

namespace tune::nn {

double LoraConfig::scale() const {
  double r_ = static_cast<double>(r);
  return scaling == LoraScaling::rslora ? alpha / std::sqrt(r_) : alpha / r_;
}

bool LoraConfig::targets_module(const std::string& name) const {
  for (const std::string& t : targets) {
    if (t == "all-linear") {
      if (name != "lm_head" && !name.ends_with(".lm_head")) return true;
      continue;
    }
    if (name == t) return true;
    if (name.size() > t.size() && name.ends_with(t) && name[name.size() - t.size() - 1] == '.')
      return true;
  }
  return false;
}

}  // namespace tune::nn
