// Span -> token mask. The exact path works in "half bytes": offset(k) is twice the byte length of
// decode(ids[:k]) when that is a prefix of the text, or twice the length of the complete
// characters plus one when the prefix ends inside a UTF-8 character (the decoder shows the
// partial character as U+FFFD). Span boundaries sit on character boundaries, so this is enough
// to decide which tokens overlap a span; offsets are monotonic, so each boundary is a binary
// search of O(log n) decodes.
#include "masking.h"

#include <map>

#include "tune/core/error.h"

namespace tune::data {

namespace {

using tok::AddSpecial;

class PrefixOffsets {
 public:
  PrefixOffsets(const tok::Tokenizer& tokenizer, std::string_view text,
                const std::vector<int32_t>& ids)
      : tokenizer_(tokenizer), text_(text), ids_(ids) {}

  // Twice the byte offset where token k starts (k = ids.size(): the end).
  int64_t at(size_t k) {
    if (k == 0) return 0;
    auto it = memo_.find(k);
    if (it != memo_.end()) return it->second;
    std::string decoded = tokenizer_.decode(std::span<const int32_t>(ids_.data(), k));
    int64_t off = -1;
    if (text_.substr(0, decoded.size()) == decoded) {
      off = 2 * static_cast<int64_t>(decoded.size());
    } else {
      static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
      std::string_view s(decoded);
      while (s.size() >= 3 && s.substr(s.size() - 3) == kReplacement) s.remove_suffix(3);
      if (s.size() < decoded.size() && text_.substr(0, s.size()) == s) {
        off = 2 * static_cast<int64_t>(s.size()) + 1;
      }
    }
    TUNE_CHECK(off >= 0, "cannot find which tokens hold the assistant's turns: decoding the first ",
               k,
               " tokens does not give back a prefix of the text (the tokenizer normalizes the "
               "text). Train on all tokens (data.train_on: all) for this data");
    memo_[k] = off;
    return off;
  }

  // The first k in [lo, hi] with at(k) > x (hi when none).
  size_t first_above(int64_t x, size_t lo, size_t hi) {
    while (lo < hi) {
      const size_t mid = lo + (hi - lo) / 2;
      if (at(mid) > x) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    return lo;
  }

 private:
  const tok::Tokenizer& tokenizer_;
  std::string_view text_;
  const std::vector<int32_t>& ids_;
  std::map<size_t, int64_t> memo_;
};

}  // namespace

Tokenized tokenize_spans(const tok::Tokenizer& tokenizer, std::string_view text,
                         const std::vector<tmpl::Span>& spans) {
  Tokenized out;
  out.ids = tokenizer.encode(text, AddSpecial::no);
  out.counted.assign(out.ids.size(), 0);
  if (spans.empty()) return out;

  // Piece by piece: outside, inside, outside, ...
  std::vector<int32_t> joined;
  std::vector<uint8_t> mask;
  size_t pos = 0;
  auto piece = [&](size_t end, uint8_t inside) {
    if (end <= pos) return;
    const auto ids = tokenizer.encode(text.substr(pos, end - pos), AddSpecial::no);
    joined.insert(joined.end(), ids.begin(), ids.end());
    mask.insert(mask.end(), ids.size(), inside);
    pos = end;
  };
  for (const auto& s : spans) {
    TUNE_ASSERT(s.begin >= pos && s.end >= s.begin && s.end <= text.size(),
                "spans must be sorted, disjoint and inside the text");
    piece(s.begin, 0);
    piece(s.end, 1);
  }
  piece(text.size(), 0);
  if (joined == out.ids) {
    out.counted = std::move(mask);
    return out;
  }

  // A token straddles a span boundary: exact offsets from decoded prefixes.
  PrefixOffsets offsets(tokenizer, text, out.ids);
  const size_t n = out.ids.size();
  TUNE_CHECK(offsets.at(n) == 2 * static_cast<int64_t>(text.size()),
             "cannot find which tokens hold the assistant's turns: the tokenizer's decode does "
             "not give back the text. Train on all tokens (data.train_on: all) for this data");
  for (const auto& s : spans) {
    if (s.end == s.begin) continue;
    // Token t = [at(t), at(t + 1)) overlaps [begin, end) when at(t + 1) > 2 begin and
    // at(t) < 2 end.
    const size_t first = offsets.first_above(2 * static_cast<int64_t>(s.begin), 1, n) - 1;
    const size_t stop = offsets.first_above(2 * static_cast<int64_t>(s.end) - 1, 0, n);
    for (size_t t = first; t < stop && t < n; ++t) out.counted[t] = 1;
  }
  return out;
}

}  // namespace tune::data
