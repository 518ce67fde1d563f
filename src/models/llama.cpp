// Llama (1, 2, 3.x): attention_bias puts biases on q, k, v and o; mlp_bias on the MLP.
#include "models/family.h"

namespace tune::models {

namespace {
void configure(const ConfigReader& c, ModelConfig& out) {
  out.arch.qkv_bias = out.arch.o_bias = c.boolean("attention_bias", false);
  out.arch.mlp_bias = c.boolean("mlp_bias", false);
}
}  // namespace

const Family& llama_family() {
  static const Family f{"llama", configure};
  return f;
}

}  // namespace tune::models
