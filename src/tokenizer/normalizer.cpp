#include "tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <vector>

#include "tokenizer/regex.h"
#include "tokenizer/text.h"
#include "tune/core/error.h"

namespace tune::tok {
namespace {

using json = nlohmann::json;

class Unicode final : public Normalizer {
 public:
  explicit Unicode(int options) : options_(options) {}
  void normalize(std::string& s) const override {
    if (s.empty()) return;
    utf8proc_uint8_t* out = nullptr;
    const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                static_cast<utf8proc_ssize_t>(s.size()), &out,
                                static_cast<utf8proc_option_t>(options_));
    if (n < 0) throw Error(str("unicode normalization failed: ", utf8proc_errmsg(n)));
    s.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
    std::free(out);
  }

 private:
  int options_;
};

class Lowercase final : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
      const char32_t c = next_cp(s, i);
      if (c == 0x130) {  // the one unconditional multi-character lowercase mapping
        out += "i\xCC\x87";
      } else {
        append_cp(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
      }
    }
    s = std::move(out);
  }
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        size_t i = b;
        if (!is_white_space(next_cp(s, i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!is_white_space(next_cp(s, i))) break;
        e = start;
      }
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class Replace final : public Normalizer {
 public:
  Replace(const json& j, const std::string& where)
      : pattern_(j.at("pattern"), where + ".pattern"),
        content_(j.at("content").get<std::string>()) {}
  void normalize(std::string& s) const override {
    const auto spans = pattern_.find_all(s);
    if (spans.empty()) return;
    std::string out;
    size_t prev = 0;
    for (const auto& [b, e] : spans) {
      out.append(s, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(s, prev);
    s = std::move(out);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend_);
  }

 private:
  std::string prepend_;
};

// BERT's: clean control characters, space out CJK ideographs, strip accents, lowercase.
class Bert final : public Normalizer {
 public:
  explicit Bert(const json& j) {
    clean_text_ = j.value("clean_text", true);
    chinese_ = j.value("handle_chinese_chars", true);
    lowercase_ = j.value("lowercase", true);
    strip_accents_ = j.contains("strip_accents") && !j["strip_accents"].is_null()
                         ? j["strip_accents"].get<bool>()
                         : lowercase_;
  }
  void normalize(std::string& s) const override {
    std::string out;
    for (size_t i = 0; i < s.size();) {
      const char32_t c = next_cp(s, i);
      const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
      if (clean_text_) {
        if (c == 0 || c == 0xFFFD) continue;
        const bool ws =
            c == ' ' || c == '\t' || c == '\n' || c == '\r' || cat == UTF8PROC_CATEGORY_ZS;
        if (ws) {
          out += ' ';
          continue;
        }
        const bool control = (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
                              cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_CO);
        if (control) continue;
      }
      if (chinese_ && is_cjk(c)) {
        out += ' ';
        append_cp(out, c);
        out += ' ';
      } else {
        append_cp(out, c);
      }
    }
    if (strip_accents_) {
      Unicode(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE).normalize(out);
      std::string kept;
      for (size_t i = 0; i < out.size();) {
        const char32_t c = next_cp(out, i);
        if (utf8proc_category(static_cast<utf8proc_int32_t>(c)) != UTF8PROC_CATEGORY_MN) {
          append_cp(kept, c);
        }
      }
      out = std::move(kept);
    }
    if (lowercase_) Lowercase().normalize(out);
    s = std::move(out);
  }

 private:
  static bool is_cjk(char32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
  }
  bool clean_text_, chinese_, lowercase_, strip_accents_;
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(std::string& s) const override {
    for (const auto& p : parts_) p->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw Error(str(where, ": a normalizer must be an object with a string \"type\""));
  }
  const auto type = j["type"].get<std::string>();
  try {
    if (type == "NFC") return std::make_unique<Unicode>(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (type == "NFD") return std::make_unique<Unicode>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
    if (type == "NFKC") {
      return std::make_unique<Unicode>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    }
    if (type == "NFKD") {
      return std::make_unique<Unicode>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
    }
    if (type == "Lowercase") return std::make_unique<Lowercase>();
    if (type == "Strip")
      return std::make_unique<Strip>(j.value("strip_left", true), j.value("strip_right", true));
    if (type == "StripAccents") {
      throw Error(str(where, ".type: StripAccents is not supported yet"));
    }
    if (type == "Replace") return std::make_unique<Replace>(j, where);
    if (type == "Prepend") return std::make_unique<Prepend>(j.at("prepend").get<std::string>());
    if (type == "BertNormalizer") return std::make_unique<Bert>(j);
    if (type == "Sequence") {
      const auto& list = j.at("normalizers");
      std::vector<std::unique_ptr<Normalizer>> parts;
      for (size_t i = 0; i < list.size(); ++i) {
        if (auto n = make_normalizer(list[i], str(where, ".normalizers[", i, "]"))) {
          parts.push_back(std::move(n));
        }
      }
      return std::make_unique<Sequence>(std::move(parts));
    }
  } catch (const json::exception& e) {
    throw Error(str(where, " (", type, "): ", e.what()));
  }
  throw Error(str(where, ".type: unknown normalizer type '", type,
                  "' (known: NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace, Prepend, "
                  "BertNormalizer, Sequence)"));
}

}  // namespace tune::tok
