// Models: Hugging Face `model_type` -> architecture (nn::TransformerConfig) + tensor-name table,
// and a loaded model = its config, its parameters (flat buffers) and its CausalLM. One small file
// per architecture family (src/models/<family>.cpp) and one registry (src/models/registry.cpp).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tune/nn/transformer.h"

namespace tune::models {

struct ModelConfig {
  std::string model_type;
  std::string source;  // the config.json it came from, for messages
  nn::TransformerConfig arch;
  nn::TensorNames names;
  DType dtype = DType::f32;  // the checkpoint's dtype (config "dtype" / "torch_dtype")
  nlohmann::json json;       // the whole config.json, kept for writing it back
};

// Parses a config.json object. Errors name `source`, the key and what to do.
ModelConfig parse_model_config(const nlohmann::json& json, const std::string& source);
// Reads DIR/config.json.
ModelConfig read_model_config(const std::string& dir);
// The model_types this build supports, for messages and `tune env`.
std::vector<std::string> supported_model_types();

// full: every parameter trainable; lora: base frozen, adapters trainable; none: inference, every
// parameter frozen (no gradient buffers at all).
enum class Training : uint8_t { full, lora, none };

struct ModelOptions {
  // Parameter and activation dtype: f32 or f64 on the CPU; f32, bf16 or f16 on CUDA.
  DType dtype = DType::f32;
  Training training = Training::full;
  nn::LoraConfig lora;  // used when training == lora
  Device device = Device::cpu;
};

class Model {
 public:
  // Declares and allocates every parameter (zero-filled).
  Model(const ModelConfig& config, const ModelOptions& options);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  nn::ParamStore& params() { return params_; }
  const nn::ParamStore& params() const { return params_; }
  nn::CausalLM& lm() { return *lm_; }

 private:
  ModelConfig config_;
  ModelOptions options_;
  nn::ParamStore params_;
  std::unique_ptr<nn::CausalLM> lm_;
};

// A model directory in Hugging Face layout (config.json + model.safetensors or a sharded index),
// weights converted to options.dtype. Every tensor the model needs must be present with its
// shape; on any error nothing is returned.
std::unique_ptr<Model> load_model(const std::string& dir, const ModelOptions& options);
// Copies the base weights from DIR's checkpoint into an existing model.
void load_weights(Model& model, const std::string& dir);

}  // namespace tune::models
