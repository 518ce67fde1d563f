// Exports: a model directory (plus an optional PEFT adapter) written in the layout another runtime
// loads — Hugging Face (the adapter merged into the base weights), PEFT (the adapter alone) or
// GGUF (llama.cpp). Every export is assembled under a temporary name next to `out` and renamed
// into place when complete, so an interrupted or failed export never leaves a half-written result.
#pragma once

#include <string>

namespace tune::models {

enum class ExportFormat : uint8_t { hf, peft, gguf };

struct ExportOptions {
  std::string model_dir;    // the base model, Hugging Face layout
  std::string adapter_dir;  // a PEFT adapter folder, or empty
  ExportFormat format = ExportFormat::hf;
  // hf / gguf: the dtype of the written weights: "bf16", "f16", "f32", or empty for the
  // model's own (config.json's dtype).
  std::string dtype;
  // gguf only: the tensor encoding, "f32", "f16", "bf16", "q8_0" or "q4_k_m"; empty follows dtype.
  std::string quant;
  std::string out;  // a folder (hf, peft) or a .gguf file
};

// src/models/hf_export.cpp
void export_hf(const ExportOptions& options);
void export_peft(const ExportOptions& options);
// src/models/gguf_export.cpp
void export_gguf(const ExportOptions& options);

}  // namespace tune::models
