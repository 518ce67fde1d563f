// Patterns of tokenizer.json: {"String": "..."} (a literal) or {"Regex": "..."} (PCRE2 with UTF,
// UCP and JIT; Hugging Face compiles these with Oniguruma, whose syntax PCRE2 shares for what
// tokenizers use). find_all iterates matches the way the Rust crates do: leftmost-first,
// non-overlapping, and an empty match right after the previous match is skipped.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace tune::tok {

using Span = std::pair<size_t, size_t>;  // [begin, end) byte offsets

class Regex {
 public:
  // Throws tune::Error naming `where` with PCRE2's message and the offset in the pattern.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  std::vector<Span> find_all(std::string_view text) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8
};

class Pattern {
 public:
  // json: {"String": s} or {"Regex": r}
  Pattern(const nlohmann::json& j, const std::string& where);
  std::vector<Span> find_all(std::string_view text) const;

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
};

}  // namespace tune::tok
