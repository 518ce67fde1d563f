// Generated token ids -> text, piece by piece, for streaming: a piece is released only once it is
// final — never half of a multibyte character (the decoder shows an incomplete one as U+FFFD,
// which the next token may complete), never text that might be the start of a stop string. A stop
// string ends the generation: the text before it is released, the stop string itself is not.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tune::tok {
class Tokenizer;
}

namespace tune::infer {

class TextStream {
 public:
  // Special tokens are left out of the text (transformers' skip_special_tokens=True).
  TextStream(const tok::Tokenizer& tokenizer, std::vector<std::string> stop_strings);

  // Adds one generated token; returns the text that became final (possibly empty). After a stop
  // string appeared, stopped() is true and further tokens are ignored.
  std::string push(int64_t id);
  // The end of the generation: releases what was held back (an incomplete character's U+FFFD, a
  // partial stop string that did not complete). Returns it.
  std::string finish();

  bool stopped() const { return stopped_; }
  // Everything released so far: after finish(), the whole completion.
  const std::string& text() const { return released_; }

 private:
  std::string release_up_to(const std::string& text, size_t end);

  const tok::Tokenizer* tokenizer_;
  std::vector<std::string> stop_;
  std::vector<int32_t> ids_;
  std::string released_;
  bool stopped_ = false;
};

// The length of the longest prefix of `text` that ends on a complete UTF-8 character and is not
// followed by only U+FFFD replacement characters (a multibyte character still arriving).
size_t stable_utf8_prefix(const std::string& text);

}  // namespace tune::infer
