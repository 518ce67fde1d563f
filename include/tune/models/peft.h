// LoRA adapters in PEFT's folder layout: adapter_config.json + adapter_model.safetensors with
// tensors named "base_model.model.<module>.lora_A.weight" / ".lora_B.weight", so adapters move
// freely between tune.cpp, PEFT, vLLM and llama.cpp.
#pragma once

#include <string>

#include "tune/models/model.h"

namespace tune::models {

// Reads DIR/adapter_config.json. PEFT features we do not implement (DoRA, per-module ranks,
// LoRA biases, modules_to_save, regex targets) are errors, not silently different models.
nn::LoraConfig read_adapter_config(const std::string& dir);
// Loads DIR/adapter_model.safetensors into a model built with Training::lora.
void load_adapter(Model& model, const std::string& dir);
// Writes the model's LoRA tensors (in f32) and config in PEFT's layout, each file atomically.
// `trainable`, when defined, is a [trainable_numel] buffer (on any device) whose values are
// written instead of the parameters': a mixed-precision optimizer's f32 master weights.
void save_adapter(const Model& model, const std::string& dir, const std::string& base_model = "",
                  const Tensor& trainable = Tensor());

}  // namespace tune::models
