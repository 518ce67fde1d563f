// WordPiece (BERT): greedy longest-match-first over one pre-tokenized word, as Hugging Face's
// Rust `tokenizers` does it.
//
// How: starting at byte 0, try the longest remaining substring, then drop one UTF-8 character
// from its end until the vocabulary has it; pieces after the first are looked up with
// `continuing_subword_prefix` in front ("##ing"). If some position has no match at all, the whole
// word becomes the unk token — never a partial split. A word of more than
// `max_input_chars_per_word` characters (Unicode scalars, not bytes) is the unk token without
// being looked at, even when it is itself in the vocabulary.
//
// Loading follows Rust's deserializer: unk_token, continuing_subword_prefix,
// max_input_chars_per_word and vocab are all required. A missing unk token in the vocabulary is
// not an error until a word needs it (Rust fails on that encode, not on load); so do we.
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/model.h"
#include "tune/core/error.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::tok {

namespace {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

bool is_continuation_byte(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += !is_continuation_byte(c);
  return n;
}

// The start of the last character of s[begin, end): one step back over a UTF-8 character
// (always at least one byte, so invalid input cannot loop).
size_t previous_char_start(std::string_view s, size_t begin, size_t end) {
  size_t i = end - 1;
  while (i > begin && is_continuation_byte(s[i])) --i;
  return i;
}

class WordPiece final : public TokenModel {
 public:
  WordPiece(Vocab vocab, std::string unk_token, std::string prefix, uint64_t max_chars,
            std::string where)
      : vocab_(std::move(vocab)),
        unk_token_(std::move(unk_token)),
        prefix_(std::move(prefix)),
        max_chars_(max_chars),
        where_(std::move(where)) {
    vocab_r_.reserve(vocab_.size());
    for (const auto& [token, id] : vocab_) vocab_r_.emplace(id, token);
    if (auto it = vocab_.find(unk_token_); it != vocab_.end()) unk_id_ = it->second;
  }

  void tokenize(std::string_view word, std::vector<int32_t>& ids) const override {
    if (utf8_length(word) > max_chars_) {
      ids.push_back(unk_id(word));
      return;
    }
    const size_t first = ids.size();
    std::string prefixed;  // prefix_ + candidate, for pieces after the first
    size_t start = 0;
    while (start < word.size()) {
      size_t end = word.size();
      std::optional<int32_t> found;
      while (start < end) {
        std::string_view candidate = word.substr(start, end - start);
        if (start > 0) {
          prefixed.assign(prefix_).append(candidate);
          candidate = prefixed;
        }
        if (auto it = vocab_.find(candidate); it != vocab_.end()) {
          found = it->second;
          break;
        }
        end = previous_char_start(word, start, end);
      }
      if (!found) {
        ids.resize(first);
        ids.push_back(unk_id(word));
        return;
      }
      ids.push_back(*found);
      start = end;
    }
  }

  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
    return std::nullopt;
  }

  std::optional<std::string> id_to_token(int32_t id) const override {
    if (auto it = vocab_r_.find(id); it != vocab_r_.end()) return it->second;
    return std::nullopt;
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }

 private:
  int32_t unk_id(std::string_view word) const {
    TUNE_CHECK(unk_id_.has_value(), where_, ".unk_token \"", unk_token_,
               "\" is not in the vocabulary, and WordPiece needs it for the word \"", word,
               "\" (no split into vocabulary pieces, or longer than max_input_chars_per_word = ",
               max_chars_, ")");
    return *unk_id_;
  }

  Vocab vocab_;
  std::unordered_map<int32_t, std::string> vocab_r_;
  std::string unk_token_;
  std::string prefix_;  // continuing_subword_prefix, "##" in BERT
  uint64_t max_chars_;  // max_input_chars_per_word, in Unicode scalars
  std::optional<int32_t> unk_id_;
  std::string where_;
};

// A non-negative JSON integer (parsed JSON stores it unsigned; a json built in C++ from an int
// stores it signed), or nullopt for anything else, floats such as 5.0 included (Rust refuses them).
std::optional<uint64_t> as_unsigned(const nlohmann::json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0) return value.get<uint64_t>();
  return std::nullopt;
}

const nlohmann::json& required(const nlohmann::json& model, const char* key,
                               const std::string& where) {
  auto it = model.find(key);
  TUNE_CHECK(it != model.end(), where, ".", key, " is missing (WordPiece needs it)");
  return *it;
}

std::string required_string(const nlohmann::json& model, const char* key,
                            const std::string& where) {
  const nlohmann::json& value = required(model, key, where);
  TUNE_CHECK(value.is_string(), where, ".", key, " must be a string, got ", value.dump());
  return value.get<std::string>();
}

}  // namespace

std::unique_ptr<TokenModel> make_wordpiece(const nlohmann::json& model, const std::string& where) {
  TUNE_CHECK(model.is_object(), where, ": must be an object, got ", model.dump());
  if (auto type = model.find("type"); type != model.end()) {
    TUNE_CHECK(type->is_string() && type->get<std::string>() == "WordPiece", where,
               ".type must be \"WordPiece\" for a WordPiece model, got ", type->dump());
  }
  std::string unk_token = required_string(model, "unk_token", where);
  std::string prefix = required_string(model, "continuing_subword_prefix", where);

  const nlohmann::json& max_chars = required(model, "max_input_chars_per_word", where);
  const std::optional<uint64_t> max_chars_value = as_unsigned(max_chars);
  TUNE_CHECK(max_chars_value, where,
             ".max_input_chars_per_word must be a non-negative integer, got ", max_chars.dump());

  const nlohmann::json& vocab_json = required(model, "vocab", where);
  TUNE_CHECK(vocab_json.is_object(), where, ".vocab must be an object of token -> id, got a ",
             vocab_json.type_name());
  Vocab vocab;
  vocab.reserve(vocab_json.size());
  for (const auto& [token, id] : vocab_json.items()) {
    const std::optional<uint64_t> value = as_unsigned(id);
    TUNE_CHECK(value && *value <= uint64_t{std::numeric_limits<int32_t>::max()}, where, ".vocab[\"",
               token, "\"] must be an id in 0..", std::numeric_limits<int32_t>::max(), ", got ",
               id.dump());
    vocab[token] = static_cast<int32_t>(*value);
  }
  return std::make_unique<WordPiece>(std::move(vocab), std::move(unk_token), std::move(prefix),
                                     *max_chars_value, where);
}

}  // namespace tune::tok
