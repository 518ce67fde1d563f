// Hugging Face tokenizers: tokenizer.json (normalizer -> pre-tokenizer -> model -> post-processor,
// decoder, added tokens) and tokenizer_config.json, producing the same ids as Hugging Face's
// Rust `tokenizers`, byte for byte. The pipeline components live in src/tokenizer/, one file per
// component family; this header is what the rest of tune.cpp uses.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tune::tok {

enum class AddSpecial : uint8_t { no, yes };   // encode: run the post-processor's specials
enum class SkipSpecial : uint8_t { no, yes };  // decode: drop special added tokens

// What tokenizer_config.json says (transformers' view of the tokenizer).
struct TokenizerConfig {
  std::optional<std::string> bos_token, eos_token, pad_token, unk_token;
  std::optional<bool> add_bos_token, add_eos_token;
  // chat_template: a string, or a list of {name, template}; "default" is the plain string form.
  std::vector<std::pair<std::string, std::string>> chat_templates;
  int64_t model_max_length = 0;  // 0: not given (transformers' huge sentinel is mapped to 0)
  // The named template, or the default one; nullopt when the tokenizer has none.
  std::optional<std::string> chat_template(const std::string& name = "default") const;
  // The special tokens a chat template sees as variables (bos_token, eos_token, unk_token,
  // pad_token), those that are set, as transformers passes them to apply_chat_template.
  std::vector<std::pair<std::string, std::string>> template_tokens() const;
};

// A model maps one pre-tokenized piece to ids (BPE, WordPiece, Unigram implement it).
class TokenModel {
 public:
  virtual ~TokenModel() = default;
  virtual void tokenize(std::string_view piece, std::vector<int32_t>& ids) const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  // The token's string in the vocabulary; nullopt for ids outside it.
  virtual std::optional<std::string> id_to_token(int32_t id) const = 0;
  virtual int64_t vocab_size() const = 0;
};

class Tokenizer {
 public:
  // A directory with tokenizer.json (and optionally tokenizer_config.json), or a tokenizer.json
  // file. Errors name the file and the JSON path of what is wrong ("model.type").
  static Tokenizer load(const std::string& dir_or_file);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  std::vector<int32_t> encode(std::string_view text, AddSpecial add = AddSpecial::yes) const;
  // Many texts at once on all cores; results in input order, identical to encode() one by one.
  std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string>& texts,
                                                 AddSpecial add = AddSpecial::yes) const;
  std::string decode(std::span<const int32_t> ids, SkipSpecial skip = SkipSpecial::no) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;  // added tokens included
  std::optional<std::string> id_to_token(int32_t id) const;
  int64_t vocab_size() const;  // model vocabulary plus added tokens
  const TokenizerConfig& config() const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tune::tok
