// What the generate/chat commands (and later the server) share: a model directory loaded for
// generation — weights (+ a PEFT adapter), tokenizer, generation_config.json, end-of-sequence ids
// — the option table for sampling, and prompts turned into token ids (plain text, or messages
// through the tokenizer's chat template as transformers' apply_chat_template does).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tune/core/options.h"
#include "tune/infer/generation_config.h"
#include "tune/infer/generator.h"
#include "tune/models/model.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::infer {

struct LoadedModel {
  std::unique_ptr<models::Model> model;
  std::optional<tok::Tokenizer> tokenizer;
  GenerationConfig generation;
  std::vector<int64_t> eos_token_ids;
  std::string dir;
};

// model_dir in Hugging Face layout; adapter_dir ("" for none) a PEFT LoRA adapter, applied
// unmerged (exact); tokenizer_dir ("" for model_dir) holds tokenizer.json. Errors say which
// folder lacks what. The tokenizer's vocabulary must fit the model's embedding.
// The weights go to `device` in `dtype` (see ModelOptions).
LoadedModel load_for_generation(const std::string& model_dir, const std::string& adapter_dir,
                                const std::string& tokenizer_dir, Device device = Device::cpu,
                                DType dtype = DType::f32);

// Where generation runs, from the `device` and `dtype` options of generation_option_specs():
// the CPU in f32, or CUDA in bf16 unless --dtype says otherwise.
struct Placement {
  Device device = Device::cpu;
  DType dtype = DType::f32;
};
Placement placement(const Options& options);

// Options shared by `tune generate` and `tune chat`: model, adapter, tokenizer, device, dtype,
// system, max_new_tokens, sampling (do_sample, temperature, top_k, top_p, min_p,
// repetition_penalty, seed) and stop.
std::vector<OptionSpec> generation_option_specs();
// The settings for one run: generation_config.json's defaults, overridden by what the command
// line set. Setting temperature (> 0), top_k, top_p, min_p or seed turns sampling on;
// temperature 0 means greedy. `stop` comes separately (each --stop is taken literally).
GenerateOptions generate_options(const Options& options, const LoadedModel& loaded,
                                 const std::vector<std::string>& stop);

// Plain text, encoded with the tokenizer's special tokens (BOS where it adds one).
std::vector<int64_t> encode_text(const LoadedModel& loaded, const std::string& text);
// messages [{role, content}, ...] rendered with the chat template (add_generation_prompt = true)
// and encoded without adding special tokens, as apply_chat_template(tokenize=True) does.
std::vector<int64_t> encode_chat(const LoadedModel& loaded, const nlohmann::ordered_json& messages);
// The rendered text of the same, for messages.
std::string render_chat(const LoadedModel& loaded, const nlohmann::ordered_json& messages,
                        bool add_generation_prompt);

}  // namespace tune::infer
