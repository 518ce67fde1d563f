// One architecture family: its model_type and how its config.json keys specialise the common
// Llama-style parse (biases, windows, q/k norms, tensor names). Families live in
// src/models/<family>.cpp; the registry lists them.
#pragma once

#include "models/config_reader.h"
#include "tune/models/model.h"

namespace tune::models {

struct Family {
  const char* model_type;
  void (*configure)(const ConfigReader& config, ModelConfig& out);
};

const Family& llama_family();
const Family& mistral_family();
const Family& qwen2_family();
const Family& qwen3_family();

// Shared by families whose configs carry Qwen-style sliding-window keys.
void read_qwen_sliding_window(const ConfigReader& config, ModelConfig& out);

}  // namespace tune::models
