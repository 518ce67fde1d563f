// Each push decodes all generated ids again (decoders such as SentencePiece's strip a leading
// space only at the start, so decoding token by token would not concatenate to the same text);
// that is O(generated) per token, small next to a forward pass.
#include "tune/infer/text_stream.h"

#include <algorithm>

#include "tune/tokenizer/tokenizer.h"

namespace tune::infer {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

size_t stable_utf8_prefix(const std::string& text) {
  size_t end = text.size();
  // A trailing incomplete sequence of raw bytes: back up to its lead byte.
  size_t i = end, cont = 0;
  while (i > 0 && cont < 3 && (static_cast<unsigned char>(text[i - 1]) & 0xC0) == 0x80) {
    --i;
    ++cont;
  }
  if (i > 0) {
    const auto lead = static_cast<unsigned char>(text[i - 1]);
    const size_t need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
    if (lead >= 0xC0 && cont < need) end = i - 1;
  }
  // Trailing replacement characters: bytes of a character that the next token may complete.
  while (end >= kReplacement.size() &&
         std::string_view(text).substr(end - kReplacement.size(), kReplacement.size()) ==
             kReplacement)
    end -= kReplacement.size();
  return end;
}

TextStream::TextStream(const tok::Tokenizer& tokenizer, std::vector<std::string> stop_strings)
    : tokenizer_(&tokenizer), stop_(std::move(stop_strings)) {
  std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
}

std::string TextStream::release_up_to(const std::string& text, size_t end) {
  if (end <= released_.size()) return {};
  std::string piece = text.substr(released_.size(), end - released_.size());
  released_ += piece;
  return piece;
}

std::string TextStream::push(int64_t id) {
  if (stopped_) return {};
  ids_.push_back(static_cast<int32_t>(id));
  const std::string text = tokenizer_->decode(ids_, tok::SkipSpecial::yes);
  // The earliest stop string wins; only text not yet released can hold a new one (a stop string
  // may straddle the released boundary).
  size_t stop_at = std::string::npos;
  size_t longest = 0;
  for (const std::string& s : stop_) longest = std::max(longest, s.size());
  const size_t from = released_.size() > longest ? released_.size() - longest + 1 : 0;
  for (const std::string& s : stop_) stop_at = std::min(stop_at, text.find(s, from));
  if (stop_at != std::string::npos) {
    stopped_ = true;
    return release_up_to(text, std::max(stop_at, released_.size()));
  }
  // Hold back the longest tail that could still grow into a stop string.
  const size_t stable = stable_utf8_prefix(text);
  size_t end = stable;
  for (const std::string& s : stop_) {
    for (size_t n = std::min(s.size() - 1, stable); n > 0; --n) {
      if (text.compare(stable - n, n, s, 0, n) == 0) {
        end = std::min(end, stable - n);
        break;
      }
    }
  }
  return release_up_to(text, end);
}

std::string TextStream::finish() {
  if (stopped_ || ids_.empty()) return {};
  const std::string text = tokenizer_->decode(ids_, tok::SkipSpecial::yes);
  return release_up_to(text, text.size());
}

}  // namespace tune::infer
