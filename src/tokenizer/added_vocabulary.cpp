#include "tokenizer/added_vocabulary.h"

#include <utf8proc.h>

#include "tokenizer/text.h"

namespace tune::tok {
namespace {

// Rust regex's Unicode \w: Alphabetic, marks, decimal digits, connector punctuation, joiners.
bool is_word_char(char32_t c) {
  if (c < 0x80)
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (c == 0x200C || c == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

// The code point that ends at byte `end` of s (end > 0).
char32_t prev_cp(std::string_view s, size_t end) {
  size_t b = end - 1;
  while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
  return next_cp(s, b);
}

}  // namespace

void AddedVocabulary::Matcher::add(std::string_view pattern, int32_t token_index) {
  if (pattern.empty()) return;
  int32_t node = 0;
  for (const char ch : pattern) {
    const auto c = static_cast<unsigned char>(ch);
    auto it = nodes_[static_cast<size_t>(node)].next.find(c);
    if (it == nodes_[static_cast<size_t>(node)].next.end()) {
      nodes_.push_back(Node{});
      const auto child = static_cast<int32_t>(nodes_.size() - 1);
      nodes_[static_cast<size_t>(node)].next.emplace(c, child);
      node = child;
    } else {
      node = it->second;
    }
  }
  // The first token with this content keeps it (special tokens come first, as in Rust).
  if (nodes_[static_cast<size_t>(node)].token < 0)
    nodes_[static_cast<size_t>(node)].token = token_index;
}

std::vector<AddedVocabulary::Matcher::Match> AddedVocabulary::Matcher::find_all(
    std::string_view text) const {
  std::vector<Match> out;
  if (empty()) return out;
  const auto& root = nodes_[0].next;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!root.contains(static_cast<unsigned char>(text[pos]))) {
      ++pos;
      continue;
    }
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      const auto& next = nodes_[static_cast<size_t>(node)].next;
      auto it = next.find(static_cast<unsigned char>(text[i]));
      if (it == next.end()) break;
      node = it->second;
      if (nodes_[static_cast<size_t>(node)].token >= 0) {
        best = nodes_[static_cast<size_t>(node)].token;
        best_end = i + 1;
      }
    }
    if (best >= 0) {
      out.push_back({pos, best_end, best});
      pos = best_end;
    } else {
      ++pos;
    }
  }
  return out;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)) {
  // Rust orders the tries special tokens first, then the others, each in file order.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const auto& t = tokens_[i];
      if (t.special != (pass == 0)) continue;
      if (t.normalized) {
        std::string content = t.content;
        if (normalizer != nullptr) normalizer->normalize(content);
        normalized_.add(content, static_cast<int32_t>(i));
      } else {
        raw_.add(t.content, static_cast<int32_t>(i));
      }
    }
  }
}

void AddedVocabulary::split(const Extracted& piece, const Matcher& matcher,
                            std::vector<Extracted>& out) const {
  const std::string_view s = piece.text;
  size_t start_offset = 0;
  auto push_text = [&](size_t b, size_t e) {
    if (e > b) out.push_back({std::string(s.substr(b, e - b)), -1, piece.at_start && b == 0});
  };
  for (const auto& m : matcher.find_all(s)) {
    const AddedToken& t = tokens_[static_cast<size_t>(m.token)];
    size_t start = m.begin, stop = m.end;
    if (t.single_word) {
      const bool start_ok = start == 0 || !is_word_char(prev_cp(s, start));
      size_t i = stop;
      const bool stop_ok = stop == s.size() || !is_word_char(next_cp(s, i));
      if (!start_ok || !stop_ok) continue;
    }
    if (t.lstrip) {
      size_t b = start;
      while (b > 0) {
        const size_t before = b;
        size_t cb = b - 1;
        while (cb > 0 && (static_cast<unsigned char>(s[cb]) & 0xC0) == 0x80) --cb;
        size_t i = cb;
        if (!is_white_space(next_cp(s, i))) break;
        b = cb;
        if (b == before) break;
      }
      start = std::max(b, start_offset);
    }
    if (t.rstrip) {
      while (stop < s.size()) {
        size_t i = stop;
        if (!is_white_space(next_cp(s, i))) break;
        stop = i;
      }
    }
    push_text(start_offset, start);
    out.push_back({std::string(s.substr(start, stop - start)), t.id, piece.at_start && start == 0});
    start_offset = stop;
  }
  push_text(start_offset, s.size());
}

std::vector<Extracted> AddedVocabulary::extract_and_normalize(std::string_view text,
                                                              const Normalizer* normalizer) const {
  std::vector<Extracted> first;
  split(Extracted{std::string(text), -1, true}, raw_, first);
  std::vector<Extracted> out;
  for (auto& p : first) {
    if (p.id >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    if (normalizer != nullptr) normalizer->normalize(p.text);
    split(p, normalized_, out);
  }
  return out;
}

}  // namespace tune::tok
