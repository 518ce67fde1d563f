// Mistral: Llama without biases, with a sliding attention window on every layer.
#include "models/family.h"

namespace tune::models {

namespace {
void configure(const ConfigReader& c, ModelConfig& out) {
  int64_t window = c.integer("sliding_window", 0);
  if (window < 0) c.fail("sliding_window", "must be positive or null");
  out.arch.sliding_window.assign(static_cast<size_t>(out.arch.num_layers), window);
}
}  // namespace

const Family& mistral_family() {
  static const Family f{"mistral", configure};
  return f;
}

}  // namespace tune::models
