// Qwen2: biases on q, k, v (not o); optional sliding window on some layers.
#include "models/family.h"

namespace tune::models {

// transformers 5 writes layer_types ("full_attention" | "sliding_attention"); older configs
// say use_sliding_window and window the layers from max_window_layers on.
void read_qwen_sliding_window(const ConfigReader& c, ModelConfig& out) {
  const int64_t layers = out.arch.num_layers;
  out.arch.sliding_window.assign(static_cast<size_t>(layers), 0);
  if (!c.boolean("use_sliding_window", false)) return;
  int64_t window = c.integer("sliding_window");
  if (c.has("layer_types")) {
    const auto& types = c.json()["layer_types"];
    if (!types.is_array() || static_cast<int64_t>(types.size()) != layers)
      c.fail("layer_types", str("must list one type per layer (", layers, ")"));
    for (int64_t l = 0; l < layers; ++l)
      if (types[static_cast<size_t>(l)] == "sliding_attention")
        out.arch.sliding_window[static_cast<size_t>(l)] = window;
  } else {
    int64_t first = c.integer("max_window_layers", layers);
    for (int64_t l = first; l < layers; ++l)
      out.arch.sliding_window[static_cast<size_t>(l)] = window;
  }
}

namespace {
void configure(const ConfigReader& c, ModelConfig& out) {
  out.arch.qkv_bias = true;
  read_qwen_sliding_window(c, out);
}
}  // namespace

const Family& qwen2_family() {
  static const Family f{"qwen2", configure};
  return f;
}

}  // namespace tune::models
