// Qwen3: per-head RMSNorm on q and k before RoPE, an explicit head_dim (often != hidden/heads),
// attention_bias on q, k, v, o as in Llama.
#include "models/family.h"

namespace tune::models {

namespace {
void configure(const ConfigReader& c, ModelConfig& out) {
  out.arch.qk_norm = true;
  out.arch.qkv_bias = out.arch.o_bias = c.boolean("attention_bias", false);
  read_qwen_sliding_window(c, out);
}
}  // namespace

const Family& qwen3_family() {
  static const Family f{"qwen3", configure};
  return f;
}

}  // namespace tune::models
