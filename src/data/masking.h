// From byte spans of a text to a per-token mask: which tokens of the text's tokenization are
// training targets. The tokenizer has no offsets, so the text is tokenized whole (the ids must be
// exactly the whole text's tokenization) and also span by span; when the pieces concatenate to
// the whole (the normal case: turn boundaries sit at special tokens) each token's mask comes from
// its piece. Otherwise a token straddles a boundary and the offsets are recovered exactly by
// decoding prefixes of the ids. The rule is Hugging Face's (char_to_token over the span): a token
// is counted when any byte of it lies inside a span.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tune/template/chat_template.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::data {

struct Tokenized {
  std::vector<int32_t> ids;
  std::vector<uint8_t> counted;  // 1: a training target
};

// Tokenizes `text` with AddSpecial::no; `spans` are sorted, disjoint byte ranges.
Tokenized tokenize_spans(const tok::Tokenizer& tokenizer, std::string_view text,
                         const std::vector<tmpl::Span>& spans);

}  // namespace tune::data
