#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "tokenizer/text.h"
#include "tune/core/error.h"

namespace tune::tok {

namespace {

// Oniguruma (which Hugging Face compiles these patterns with) and PCRE2 disagree on two Unicode
// classes: PCRE2's \s also matches U+180E (kept in its horizontal-space list, though Unicode 6.3
// dropped it from White_Space), and its \w is [\p{L}\p{N}_] where Oniguruma's is
// Letter | Mark | Number | Connector_Punctuation. Spell both out as Oniguruma means them.
std::string as_oniguruma_classes(const std::string& pattern, const std::string& where) {
  constexpr const char* kWord = "\\p{L}\\p{M}\\p{N}\\p{Pc}";
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char e = pattern[++i];
      if (e == 's') {
        out += "\\p{White_Space}";
      } else if (e == 'S') {
        out += "\\P{White_Space}";
      } else if (e == 'w') {
        out += in_class ? str(kWord) : str("[", kWord, "]");
      } else if (e == 'W') {
        if (in_class)
          throw Error(
              str(where, ": \\W inside a character class is not supported in /", pattern, "/"));
        out += str("[^", kWord, "]");
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (in_class && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      size_t end = pattern.find(":]", i + 2);  // POSIX class such as [:alpha:]
      if (end != std::string::npos) {
        out.append(pattern, i, end + 2 - i);
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

Regex::Regex(const std::string& source, const std::string& where) {
  const std::string pattern = as_oniguruma_classes(source, where);
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw Error(str(where, ": bad regex: ", reinterpret_cast<const char*>(msg), " at offset ",
                    offset, " in /", source, "/",
                    pattern == source ? "" : str(" (compiled as /", pattern, "/)")));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when unavailable
  code_ = code;
}

Regex::~Regex() {
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

std::vector<Span> Regex::find_all(std::string_view text) const {
  auto* code = static_cast<pcre2_code*>(code_);
  thread_local pcre2_match_data* md = pcre2_match_data_create(16, nullptr);
  std::vector<Span> out;
  size_t pos = 0;
  size_t last_match_end = std::string_view::npos;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  while (pos <= text.size()) {
    const int rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw Error(str("regex match failed: ", reinterpret_cast<const char*>(msg)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (b == e && e == last_match_end) {
      // An empty match right after the previous one: step one character and search again.
      if (pos >= text.size()) break;
      pos += static_cast<size_t>(utf8_len(static_cast<unsigned char>(text[pos])));
      continue;
    }
    out.emplace_back(b, e);
    last_match_end = e;
    if (e == pos && b == e) {
      if (pos >= text.size()) break;
      pos += static_cast<size_t>(utf8_len(static_cast<unsigned char>(text[pos])));
    } else {
      pos = e;
    }
  }
  return out;
}

Pattern::Pattern(const nlohmann::json& j, const std::string& where) {
  if (j.is_object() && j.contains("String") && j["String"].is_string()) {
    literal_ = j["String"].get<std::string>();
  } else if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) {
    regex_ = std::make_unique<Regex>(j["Regex"].get<std::string>(), where + ".Regex");
  } else {
    throw Error(
        str(where, ": a pattern must be {\"String\": ...} or {\"Regex\": ...}, got ", j.dump()));
  }
}

std::vector<Span> Pattern::find_all(std::string_view text) const {
  if (regex_) return regex_->find_all(text);
  std::vector<Span> out;
  if (literal_.empty()) return out;
  size_t pos = 0;
  while ((pos = text.find(literal_, pos)) != std::string_view::npos) {
    out.emplace_back(pos, pos + literal_.size());
    pos += literal_.size();
  }
  return out;
}

}  // namespace tune::tok
