// Tokenizer: loads tokenizer.json (+ tokenizer_config.json) and runs Hugging Face's pipeline:
// added tokens -> normalizer -> pre-tokenizer -> model -> post-processor; decode maps ids to
// token strings (added tokens first), drops special ones when asked, and runs the decoder.
//
// Behaviour choices, documented here once:
// - encode() follows tokenizer.json alone: specials come from its post-processor, exactly as
//   PreTrainedTokenizerFast does; add_bos_token/add_eos_token of tokenizer_config.json are
//   reported in config() but not re-applied (for the supported tokenizers the post-processor
//   already says the same thing, and applying both would double BOS).
// - Input that is not valid UTF-8 is an error naming the byte offset (the reference takes JS
//   strings and cannot receive such input).
// - truncation and padding in tokenizer.json are ignored: callers pack and pad themselves.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "tokenizer/added_vocabulary.h"
#include "tokenizer/decoder.h"
#include "tokenizer/model.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/text.h"
#include "tune/core/error.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::tok {

using json = nlohmann::json;
namespace fs = std::filesystem;

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<TokenModel> model;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;
  AddedVocabulary added;
  std::unordered_map<std::string, int32_t> added_ids;
  std::unordered_map<int32_t, std::string> added_tokens;
  std::unordered_set<std::string> specials;
  TokenizerConfig config;

  void encode_into(std::string_view text, AddSpecial add, std::vector<int32_t>& ids) const;
};

namespace {

json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(str(path, ": cannot open"));
  std::ostringstream s;
  s << in.rdbuf();
  try {
    return json::parse(s.str());
  } catch (const json::parse_error& e) {
    throw Error(str(path, ": not valid JSON: ", e.what()));
  }
}

std::optional<std::string> token_string(const json& j, const std::string& where) {
  if (j.is_null()) return std::nullopt;
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) {
    return j["content"].get<std::string>();
  }
  throw Error(str(where, ": expected a string or {\"content\": ...}, got ", j.dump()));
}

TokenizerConfig parse_config(const json& j, const std::string& file) {
  TokenizerConfig c;
  if (!j.is_object()) throw Error(str(file, ": expected a JSON object"));
  for (const auto& [key, member] : {std::pair{"bos_token", &TokenizerConfig::bos_token},
                                    std::pair{"eos_token", &TokenizerConfig::eos_token},
                                    std::pair{"pad_token", &TokenizerConfig::pad_token},
                                    std::pair{"unk_token", &TokenizerConfig::unk_token}}) {
    if (j.contains(key)) c.*member = token_string(j[key], str(file, ": ", key));
  }
  for (const auto& [key, member] : {std::pair{"add_bos_token", &TokenizerConfig::add_bos_token},
                                    std::pair{"add_eos_token", &TokenizerConfig::add_eos_token}}) {
    if (j.contains(key) && !j[key].is_null()) {
      if (!j[key].is_boolean()) throw Error(str(file, ": ", key, ": expected true or false"));
      c.*member = j[key].get<bool>();
    }
  }
  if (j.contains("chat_template") && !j["chat_template"].is_null()) {
    const auto& t = j["chat_template"];
    if (t.is_string()) {
      c.chat_templates.emplace_back("default", t.get<std::string>());
    } else if (t.is_array()) {
      for (size_t i = 0; i < t.size(); ++i) {
        if (!t[i].is_object() || !t[i].contains("name") || !t[i].contains("template")) {
          throw Error(str(file, ": chat_template[", i, "]: expected {\"name\", \"template\"}"));
        }
        c.chat_templates.emplace_back(t[i]["name"].get<std::string>(),
                                      t[i]["template"].get<std::string>());
      }
    } else {
      throw Error(str(file, ": chat_template: expected a string or a list of {name, template}"));
    }
  }
  if (j.contains("model_max_length") && j["model_max_length"].is_number()) {
    const double v = j["model_max_length"].get<double>();
    c.model_max_length = v >= 1e18 ? 0 : static_cast<int64_t>(v);
  }
  return c;
}

}  // namespace

std::optional<std::string> TokenizerConfig::chat_template(const std::string& name) const {
  for (const auto& [n, t] : chat_templates) {
    if (n == name) return t;
  }
  return std::nullopt;
}

std::vector<std::pair<std::string, std::string>> TokenizerConfig::template_tokens() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, value] : {std::pair{"bos_token", &bos_token},
                                    {"eos_token", &eos_token},
                                    {"unk_token", &unk_token},
                                    {"pad_token", &pad_token}}) {
    if (*value) out.emplace_back(name, **value);
  }
  return out;
}

Tokenizer Tokenizer::load(const std::string& dir_or_file) {
  std::string file = dir_or_file;
  if (fs::is_directory(dir_or_file)) file = (fs::path(dir_or_file) / "tokenizer.json").string();
  if (!fs::exists(file)) throw Error(str(file, ": no such file (expected a tokenizer.json)"));
  const json j = read_json(file);
  if (!j.is_object()) throw Error(str(file, ": expected a JSON object"));
  auto impl = std::make_unique<Impl>();
  const std::string at = file + ": ";
  auto get = [&](const char* key) { return j.contains(key) ? j[key] : json(); };
  if (!j.contains("model")) throw Error(str(at, "model: missing (every tokenizer.json has one)"));
  impl->normalizer = make_normalizer(get("normalizer"), at + "normalizer");
  impl->pre_tokenizer = make_pre_tokenizer(get("pre_tokenizer"), at + "pre_tokenizer");
  impl->model = make_model(j["model"], at + "model");
  impl->post_processor = make_post_processor(get("post_processor"), at + "post_processor");
  impl->decoder = make_decoder(get("decoder"), at + "decoder");

  std::vector<AddedToken> added;
  const json tokens = get("added_tokens");
  if (!tokens.is_null() && !tokens.is_array())
    throw Error(str(at, "added_tokens: expected a list"));
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto& t = tokens[i];
    const std::string where = str(at, "added_tokens[", i, "]");
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
        !t.contains("content") || !t["content"].is_string()) {
      throw Error(
          str(where, ": expected an object with an integer \"id\" and a string \"content\""));
    }
    AddedToken a;
    a.content = t["content"].get<std::string>();
    a.special = t.value("special", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    a.single_word = t.value("single_word", false);
    a.normalized = t.value("normalized", !a.special);
    if (a.content.empty()) continue;
    // Rust does not trust the file's id: a token already known keeps its id, one in the model
    // vocabulary takes the model's id, a new one the next free id after the vocabulary.
    const int64_t model_size = impl->model->vocab_size();
    if (auto it = impl->added_ids.find(a.content); it != impl->added_ids.end()) {
      a.id = it->second;
    } else if (auto id = impl->model->token_to_id(a.content)) {
      a.id = *id;
    } else if (impl->added_ids.empty()) {
      a.id = static_cast<int32_t>(model_size);
    } else {
      int32_t max_id = 0;
      for (const auto& kv : impl->added_ids) max_id = std::max(max_id, kv.second);
      a.id =
          (max_id >= model_size || model_size == 0) ? max_id + 1 : static_cast<int32_t>(model_size);
    }
    impl->added_ids[a.content] = a.id;
    impl->added_tokens[a.id] = a.content;
    if (a.special) impl->specials.insert(a.content);
    added.push_back(std::move(a));
  }
  impl->added = AddedVocabulary(std::move(added), impl->normalizer.get());

  const auto config_file = fs::path(file).parent_path() / "tokenizer_config.json";
  if (fs::exists(config_file))
    impl->config = parse_config(read_json(config_file.string()), config_file.string());
  return Tokenizer(std::move(impl));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

void Tokenizer::Impl::encode_into(std::string_view text, AddSpecial add,
                                  std::vector<int32_t>& ids) const {
  if (const size_t bad = find_invalid_utf8(text); bad != std::string_view::npos) {
    throw Error(str("tokenizer encode: the text is not valid UTF-8 at byte offset ", bad));
  }
  std::vector<Piece> pieces;
  for (auto& e : added.extract_and_normalize(text, normalizer.get())) {
    if (e.id >= 0) {
      ids.push_back(e.id);
      continue;
    }
    pieces.clear();
    if (pre_tokenizer) {
      pre_tokenizer->split(Piece{std::move(e.text), e.at_start}, pieces);
    } else {
      pieces.push_back(Piece{std::move(e.text), e.at_start});
    }
    for (const auto& p : pieces) model->tokenize(p.text, ids);
  }
  if (add == AddSpecial::yes && post_processor) post_processor->process(ids);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, AddSpecial add) const {
  std::vector<int32_t> ids;
  impl_->encode_into(text, add, ids);
  return ids;
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                                          AddSpecial add) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  std::string error;
  const auto n = static_cast<int64_t>(texts.size());
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < n; ++i) {
    try {
      impl_->encode_into(texts[static_cast<size_t>(i)], add, out[static_cast<size_t>(i)]);
    } catch (const std::exception& e) {
#pragma omp critical(tune_tok_batch_error)
      if (error.empty()) error = str("text ", i, ": ", e.what());
    }
  }
  if (!error.empty()) throw Error(error);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, SkipSpecial skip) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    auto t = id_to_token(id);
    if (!t) continue;  // unknown ids are dropped, as in Rust
    if (skip == SkipSpecial::yes && impl_->specials.contains(*t)) continue;
    tokens.push_back(std::move(*t));
  }
  if (!impl_->decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  impl_->decoder->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_ids.find(std::string(token)); it != impl_->added_ids.end())
    return it->second;
  return impl_->model->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (auto it = impl_->added_tokens.find(id); it != impl_->added_tokens.end()) return it->second;
  return impl_->model->id_to_token(id);
}

int64_t Tokenizer::vocab_size() const {
  int64_t n = impl_->model->vocab_size();
  for (const auto& [content, id] : impl_->added_ids) {
    if (!impl_->model->token_to_id(content)) ++n;
  }
  return n;
}

const TokenizerConfig& Tokenizer::config() const {
  return impl_->config;
}

}  // namespace tune::tok
