// generation_config.json as transformers reads it: the model's end-of-sequence ids and its
// default sampling settings. HF semantics: sampling happens only with do_sample = true; without
// it generation is greedy whatever temperature/top_k/top_p say.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tune/infer/sampler.h"

namespace tune::tok {
class Tokenizer;
}

namespace tune::infer {

struct GenerationConfig {
  std::vector<int64_t> eos_token_ids;  // eos_token_id: an int or a list
  std::optional<bool> do_sample;
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<int64_t> top_k, max_new_tokens;
};

// Parses a generation_config.json object; `source` names it in errors.
GenerationConfig parse_generation_config(const nlohmann::json& json, const std::string& source);
// DIR/generation_config.json, or an empty config when the file does not exist.
GenerationConfig read_generation_config(const std::string& model_dir);

// The sampling settings the config asks for (fields it does not set keep SamplingParams'
// defaults).
SamplingParams default_sampling(const GenerationConfig& config);

// The ids that end a generation, as transformers finds them: generation_config.json's
// eos_token_id, else config.json's (`model_config`), else the tokenizer's eos_token (when a
// tokenizer is given). Empty when none says.
std::vector<int64_t> end_of_sequence_ids(const GenerationConfig& config,
                                         const nlohmann::json& model_config,
                                         const tok::Tokenizer* tokenizer);

}  // namespace tune::infer
