#include "tokenizer/pre_tokenizer.h"

#include <utf8proc.h>

#include <functional>

#include "tokenizer/text.h"
#include "tune/core/error.h"

namespace tune::tok {

using json = nlohmann::json;

const char* gpt2_pattern() {
  return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
}

std::vector<Span> split_ranges(size_t n, const std::vector<Span>& matches, SplitBehavior behavior,
                               bool invert) {
  // Every byte covered, each part tagged as match or not (empty matches kept, as in Rust).
  std::vector<std::pair<Span, bool>> parts;
  if (n == 0) {
    parts.push_back({{0, 0}, false});
  } else {
    size_t prev = 0;
    for (const auto& [b, e] : matches) {
      if (prev != b) parts.push_back({{prev, b}, false});
      parts.push_back({{b, e}, true});
      prev = e;
    }
    if (prev != n) parts.push_back({{prev, n}, false});
  }
  if (invert) {
    for (auto& p : parts) p.second = !p.second;
  }
  std::vector<Span> out;
  switch (behavior) {
    case SplitBehavior::removed:
      for (const auto& [r, m] : parts) {
        if (!m) out.push_back(r);
      }
      break;
    case SplitBehavior::isolated:
      for (const auto& [r, m] : parts) out.push_back(r);
      break;
    case SplitBehavior::merged_with_previous: {
      bool prev_match = false;
      for (const auto& [r, m] : parts) {
        if (m && !prev_match && !out.empty()) {
          out.back().second = r.second;
        } else {
          out.push_back(r);
        }
        prev_match = m;
      }
      break;
    }
    case SplitBehavior::merged_with_next: {
      bool prev_match = false;
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        const auto& [r, m] = *it;
        if (m && !prev_match && !out.empty()) {
          out.back().first = r.first;
        } else {
          out.push_back(r);
        }
        prev_match = m;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::contiguous: {
      bool prev_match = false;
      for (const auto& [r, m] : parts) {
        if (m == prev_match && !out.empty()) {
          out.back().second = r.second;
        } else {
          out.push_back(r);
        }
        prev_match = m;
      }
      break;
    }
  }
  std::erase_if(out, [](const Span& s) { return s.first == s.second; });
  return out;
}

namespace {

// Each character for which `pred` holds is a match of its own.
std::vector<Span> char_matches(std::string_view s, const std::function<bool(char32_t)>& pred) {
  std::vector<Span> out;
  for (size_t i = 0; i < s.size();) {
    const size_t b = i;
    if (pred(next_cp(s, i))) out.emplace_back(b, i);
  }
  return out;
}

void emit(const Piece& in, const std::vector<Span>& ranges, std::vector<Piece>& out) {
  for (const auto& [b, e] : ranges) {
    out.push_back({in.text.substr(b, e - b), in.at_start && b == 0});
  }
}

SplitBehavior parse_behavior(const json& j, const std::string& where) {
  const auto b = j.get<std::string>();
  if (b == "Removed") return SplitBehavior::removed;
  if (b == "Isolated") return SplitBehavior::isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (b == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (b == "Contiguous") return SplitBehavior::contiguous;
  throw Error(str(where, ": unknown split behavior '", b,
                  "' (known: Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)"));
}

bool is_numeric(char32_t c) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

// BERT's punctuation: ASCII punctuation or any Unicode P* category.
bool is_punctuation(char32_t c) {
  if (c < 0x80)
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

class Split final : public PreTokenizer {
 public:
  Split(const json& j, const std::string& where)
      : pattern_(j.at("pattern"), where + ".pattern"),
        behavior_(parse_behavior(j.at("behavior"), where + ".behavior")),
        invert_(j.value("invert", false)) {}
  void split(Piece in, std::vector<Piece>& out) const override {
    emit(in, split_ranges(in.text.size(), pattern_.find_all(in.text), behavior_, invert_), out);
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class RegexSplit final : public PreTokenizer {
 public:
  RegexSplit(const std::string& pattern, SplitBehavior behavior, bool invert,
             const std::string& where)
      : regex_(pattern, where), behavior_(behavior), invert_(invert) {}
  void split(Piece in, std::vector<Piece>& out) const override {
    emit(in, split_ranges(in.text.size(), regex_.find_all(in.text), behavior_, invert_), out);
  }

 private:
  Regex regex_;
  SplitBehavior behavior_;
  bool invert_;
};

class CharSplit final : public PreTokenizer {
 public:
  CharSplit(std::function<bool(char32_t)> pred, SplitBehavior behavior)
      : pred_(std::move(pred)), behavior_(behavior) {}
  void split(Piece in, std::vector<Piece>& out) const override {
    emit(in, split_ranges(in.text.size(), char_matches(in.text, pred_), behavior_, false), out);
  }

 private:
  std::function<bool(char32_t)> pred_;
  SplitBehavior behavior_;
};

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(const json& j, const std::string& where)
      : add_prefix_space_(j.value("add_prefix_space", true)) {
    if (j.value("use_regex", true)) regex_ = std::make_unique<Regex>(gpt2_pattern(), where);
  }
  void split(Piece in, std::vector<Piece>& out) const override {
    if (add_prefix_space_ && !in.text.starts_with(' ')) in.text.insert(0, " ");
    std::vector<Piece> parts;
    if (regex_) {
      emit(in,
           split_ranges(in.text.size(), regex_->find_all(in.text), SplitBehavior::isolated, false),
           parts);
    } else if (!in.text.empty()) {
      parts.push_back(std::move(in));
    }
    const auto& map = byte_to_char();
    for (auto& p : parts) {
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (const char c : p.text) mapped += map[static_cast<unsigned char>(c)];
      out.push_back({std::move(mapped), p.at_start});
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Metaspace final : public PreTokenizer {
 public:
  enum class Prepend : uint8_t { always, first, never };
  Metaspace(const json& j, const std::string& where) {
    const auto rep = j.value("replacement", std::string("\xE2\x96\x81"));
    size_t i = 0;
    replacement_ = next_cp(rep, i);
    rep_ = rep;
    if (j.contains("prepend_scheme")) {
      const auto s = j["prepend_scheme"].get<std::string>();
      if (s == "always")
        prepend_ = Prepend::always;
      else if (s == "first")
        prepend_ = Prepend::first;
      else if (s == "never")
        prepend_ = Prepend::never;
      else
        throw Error(str(where, ".prepend_scheme: unknown '", s, "' (known: always, first, never)"));
    } else {
      prepend_ = j.value("add_prefix_space", true) ? Prepend::always : Prepend::never;
    }
    split_ = j.value("split", true);
  }
  void split(Piece in, std::vector<Piece>& out) const override {
    std::string s;
    s.reserve(in.text.size() + 3);
    for (const char c : in.text) {
      if (c == ' ')
        s += rep_;
      else
        s += c;
    }
    const bool prepend = prepend_ == Prepend::always || (prepend_ == Prepend::first && in.at_start);
    if (prepend && !s.starts_with(rep_)) s.insert(0, rep_);
    in.text = std::move(s);
    if (!split_) {
      if (!in.text.empty()) out.push_back(std::move(in));
      return;
    }
    const char32_t r = replacement_;
    emit(in,
         split_ranges(in.text.size(), char_matches(in.text, [r](char32_t c) { return c == r; }),
                      SplitBehavior::merged_with_next, false),
         out);
  }

 private:
  char32_t replacement_;
  std::string rep_;
  Prepend prepend_ = Prepend::always;
  bool split_ = true;
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void split(Piece in, std::vector<Piece>& out) const override {
    std::vector<Piece> cur{std::move(in)}, next;
    for (const auto& p : parts_) {
      next.clear();
      for (auto& piece : cur) p->split(std::move(piece), next);
      std::swap(cur, next);
    }
    for (auto& piece : cur) out.push_back(std::move(piece));
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

// Rust regex's Unicode \w.
constexpr const char* kWord = R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])";

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw Error(str(where, ": a pre-tokenizer must be an object with a string \"type\""));
  }
  const auto type = j["type"].get<std::string>();
  try {
    if (type == "Split") return std::make_unique<Split>(j, where);
    if (type == "ByteLevel") return std::make_unique<ByteLevel>(j, where);
    if (type == "Metaspace") return std::make_unique<Metaspace>(j, where);
    if (type == "Whitespace") {
      const std::string w = kWord;
      const std::string not_word_space =
          std::string(R"([^\s\x{85})") + std::string(w.substr(1, w.size() - 2)) + "]";
      return std::make_unique<RegexSplit>(w + "+|" + not_word_space + "+", SplitBehavior::removed,
                                          true, where);
    }
    if (type == "WhitespaceSplit") {
      return std::make_unique<CharSplit>(is_white_space, SplitBehavior::removed);
    }
    if (type == "Digits") {
      return std::make_unique<CharSplit>(is_numeric, j.value("individual_digits", false)
                                                         ? SplitBehavior::isolated
                                                         : SplitBehavior::contiguous);
    }
    if (type == "Punctuation") {
      const auto b = j.contains("behavior") ? parse_behavior(j["behavior"], where + ".behavior")
                                            : SplitBehavior::isolated;
      return std::make_unique<CharSplit>(is_punctuation, b);
    }
    if (type == "CharDelimiterSplit") {
      const auto d = j.at("delimiter").get<std::string>();
      size_t i = 0;
      const char32_t dc = next_cp(d, i);
      return std::make_unique<CharSplit>([dc](char32_t c) { return c == dc; },
                                         SplitBehavior::removed);
    }
    if (type == "BertPreTokenizer") {
      std::vector<std::unique_ptr<PreTokenizer>> parts;
      parts.push_back(std::make_unique<CharSplit>(is_white_space, SplitBehavior::removed));
      parts.push_back(std::make_unique<CharSplit>(is_punctuation, SplitBehavior::isolated));
      return std::make_unique<Sequence>(std::move(parts));
    }
    if (type == "Sequence") {
      const auto& list = j.at("pretokenizers");
      std::vector<std::unique_ptr<PreTokenizer>> parts;
      for (size_t i = 0; i < list.size(); ++i) {
        if (auto p = make_pre_tokenizer(list[i], str(where, ".pretokenizers[", i, "]"))) {
          parts.push_back(std::move(p));
        }
      }
      return std::make_unique<Sequence>(std::move(parts));
    }
  } catch (const json::exception& e) {
    throw Error(str(where, " (", type, "): ", e.what()));
  }
  throw Error(str(where, ".type: unknown pre-tokenizer type '", type,
                  "' (known: Split, ByteLevel, Metaspace, Whitespace, WhitespaceSplit, Digits, "
                  "Punctuation, CharDelimiterSplit, BertPreTokenizer, Sequence)"));
}

}  // namespace tune::tok
