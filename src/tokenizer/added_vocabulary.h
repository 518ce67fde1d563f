// Added tokens (tokenizer.json "added_tokens"), extracted before the model sees the text exactly
// as Hugging Face's AddedVocabulary does: tokens with normalized=false are matched on the raw
// text, then the pieces between them are normalized and tokens with normalized=true are matched
// on that (against their own normalized content). Matching is leftmost-longest and
// non-overlapping; single_word rejects a match with a word character (Rust regex \w) touching
// it; lstrip/rstrip let the token swallow the whitespace beside it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/normalizer.h"

namespace tune::tok {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false, lstrip = false, rstrip = false, normalized = true, single_word = false;
};

// One piece of the input after extraction: an added token (id >= 0) or normalized text.
struct Extracted {
  std::string text;
  int32_t id = -1;
  bool at_start = false;  // begins at offset 0 of the input
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // Splits `text` into added tokens and normalized pieces (empty pieces dropped).
  std::vector<Extracted> extract_and_normalize(std::string_view text,
                                               const Normalizer* normalizer) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // A byte trie over token contents for leftmost-longest search.
  class Matcher {
   public:
    void add(std::string_view pattern, int32_t token_index);
    // (begin, end, token index) of every leftmost-longest, non-overlapping match.
    struct Match {
      size_t begin, end;
      int32_t token;
    };
    std::vector<Match> find_all(std::string_view text) const;
    bool empty() const { return nodes_.size() <= 1; }

   private:
    struct Node {
      std::unordered_map<unsigned char, int32_t> next;
      int32_t token = -1;
    };
    std::vector<Node> nodes_{Node{}};
  };

  void split(const Extracted& piece, const Matcher& matcher, std::vector<Extracted>& out) const;

  std::vector<AddedToken> tokens_;
  Matcher raw_, normalized_;
};

}  // namespace tune::tok
