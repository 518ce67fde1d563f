// Pre-tokenizers of tokenizer.json ("pre_tokenizer"): Split, ByteLevel, Metaspace, Whitespace,
// WhitespaceSplit, Digits, Punctuation, BertPreTokenizer, CharDelimiterSplit and Sequence. Each
// splits every piece into smaller pieces (and may rewrite them: ByteLevel maps bytes to GPT-2's
// printable characters, Metaspace spaces to the replacement); empty pieces are dropped.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/regex.h"

namespace tune::tok {

struct Piece {
  std::string text;
  bool at_start = false;  // begins at offset 0 of the original text (Metaspace prepend "first")
};

enum class SplitBehavior : uint8_t {
  removed,
  isolated,
  merged_with_previous,
  merged_with_next,
  contiguous
};

// Cuts `text` (length n) around `matches` (sorted, disjoint) as Hugging Face's
// NormalizedString::split does; returns non-empty ranges.
std::vector<Span> split_ranges(size_t n, const std::vector<Span>& matches, SplitBehavior behavior,
                               bool invert);

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Appends the pieces `in` splits into to `out`.
  virtual void split(Piece in, std::vector<Piece>& out) const = 0;
};

// nullptr for a JSON null.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where);

// Shared with the ByteLevel decoder.
const char* gpt2_pattern();

}  // namespace tune::tok
