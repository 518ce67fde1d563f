// generation_config.json: only the keys generation uses are read; the rest (transformers_version,
// pad_token_id, ...) are ignored as transformers' own unknown-key handling would keep them.
#include "tune/infer/generation_config.h"

#include <filesystem>

#include "tune/core/error.h"
#include "tune/io/files.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::infer {

namespace {

// An int or a list of ints (null: none).
std::vector<int64_t> id_list(const nlohmann::json& j, const std::string& key,
                             const std::string& source) {
  std::vector<int64_t> out;
  if (!j.contains(key) || j[key].is_null()) return out;
  const nlohmann::json& v = j[key];
  if (v.is_number_integer()) {
    out.push_back(v.get<int64_t>());
    return out;
  }
  TUNE_CHECK(v.is_array(), source, ": \"", key, "\" must be an integer or a list of integers, got ",
             v.dump());
  for (const auto& e : v) {
    TUNE_CHECK(e.is_number_integer(), source, ": \"", key,
               "\" must be an integer or a list of integers, got ", v.dump());
    out.push_back(e.get<int64_t>());
  }
  return out;
}

template <typename T>
std::optional<T> optional_value(const nlohmann::json& j, const std::string& key,
                                const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  const nlohmann::json& v = j[key];
  bool ok = false;
  if constexpr (std::is_same_v<T, bool>) {
    ok = v.is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    ok = v.is_number_integer();
  } else {
    ok = v.is_number();
  }
  TUNE_CHECK(ok, source, ": \"", key, "\" has the wrong type: ", v.dump());
  return v.get<T>();
}

}  // namespace

GenerationConfig parse_generation_config(const nlohmann::json& j, const std::string& source) {
  TUNE_CHECK(j.is_object(), source, ": expected a JSON object");
  GenerationConfig c;
  c.eos_token_ids = id_list(j, "eos_token_id", source);
  c.do_sample = optional_value<bool>(j, "do_sample", source);
  c.temperature = optional_value<double>(j, "temperature", source);
  c.top_p = optional_value<double>(j, "top_p", source);
  c.min_p = optional_value<double>(j, "min_p", source);
  c.repetition_penalty = optional_value<double>(j, "repetition_penalty", source);
  c.top_k = optional_value<int64_t>(j, "top_k", source);
  c.max_new_tokens = optional_value<int64_t>(j, "max_new_tokens", source);
  return c;
}

GenerationConfig read_generation_config(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "generation_config.json").string();
  if (!std::filesystem::exists(path)) return {};
  return parse_generation_config(io::read_json_file(path), path);
}

SamplingParams default_sampling(const GenerationConfig& c) {
  SamplingParams p;
  p.do_sample = c.do_sample.value_or(false);
  p.temperature = c.temperature.value_or(p.temperature);
  // transformers' GenerationConfig defaults top_k to 50: sampling without a top_k of its own
  // keeps the 50 most likely tokens there, and so here.
  p.top_k = c.top_k.value_or(50);
  p.top_p = c.top_p.value_or(p.top_p);
  p.min_p = c.min_p.value_or(p.min_p);
  p.repetition_penalty = c.repetition_penalty.value_or(p.repetition_penalty);
  return p;
}

std::vector<int64_t> end_of_sequence_ids(const GenerationConfig& config,
                                         const nlohmann::json& model_config,
                                         const tok::Tokenizer* tokenizer) {
  if (!config.eos_token_ids.empty()) return config.eos_token_ids;
  if (model_config.is_object()) {
    std::vector<int64_t> ids = id_list(model_config, "eos_token_id", "config.json");
    if (!ids.empty()) return ids;
  }
  if (tokenizer && tokenizer->config().eos_token) {
    if (auto id = tokenizer->token_to_id(*tokenizer->config().eos_token)) return {*id};
  }
  return {};
}

}  // namespace tune::infer
