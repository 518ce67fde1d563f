// One architecture family: its model_type and how its config.json keys specialise the common
// Llama-style parse (biases, windows, q/k norms, tensor names), or read their own keys. Families
// live in src/models/<family>.cpp; the registry lists them.
#pragma once

#include "models/config_reader.h"
#include "tune/models/model.h"

namespace tune::models {

// Whether the registry first reads the Llama-style keys (hidden_size, num_hidden_layers, rope,
// ...) or the family's configure reads every key itself (GPT-2's n_embd, n_layer, ...).
enum class Keys : uint8_t { llama, own };

struct Family {
  const char* model_type;
  void (*configure)(const ConfigReader& config, ModelConfig& out);
  Keys keys = Keys::llama;
};

const Family& llama_family();
const Family& mistral_family();
const Family& qwen2_family();
const Family& qwen3_family();
const Family& gpt2_family();

// Shared by families whose configs carry Qwen-style sliding-window keys.
void read_qwen_sliding_window(const ConfigReader& config, ModelConfig& out);

}  // namespace tune::models
