#include "tokenizer/decoder.h"

#include "tokenizer/regex.h"
#include "tokenizer/text.h"
#include "tune/core/error.h"

namespace tune::tok {
namespace {

using json = nlohmann::json;

// Token strings back to bytes through GPT-2's map; a token with a character outside the map
// contributes its own UTF-8 bytes. The whole list becomes one lossily decoded string.
class ByteLevel final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      const size_t mark = bytes.size();
      bool ok = true;
      for (size_t i = 0; i < t.size() && ok;) {
        const int b = char_to_byte(next_cp(t, i));
        if (b < 0)
          ok = false;
        else
          bytes += static_cast<char>(b);
      }
      if (!ok) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class Replace final : public Decoder {
 public:
  Replace(const json& j, const std::string& where)
      : pattern_(j.at("pattern"), where + ".pattern"),
        content_(j.at("content").get<std::string>()) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      const auto spans = pattern_.find_all(t);
      if (spans.empty()) continue;
      std::string out;
      size_t prev = 0;
      for (const auto& [b, e] : spans) {
        out.append(t, prev, b - prev);
        out += content_;
        prev = e;
      }
      out.append(t, prev);
      t = std::move(out);
    }
  }

 private:
  Pattern pattern_;
  std::string content_;
};

// Runs of <0xXX> tokens become the string of their bytes, or one U+FFFD per byte when those
// bytes are not valid UTF-8.
class ByteFallback final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    size_t nbytes = 0;
    auto flush = [&] {
      if (nbytes == 0) return;
      if (find_invalid_utf8(bytes) == std::string::npos) {
        out.push_back(bytes);
      } else {
        for (size_t k = 0; k < nbytes; ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      bytes.clear();
      nbytes = 0;
    };
    for (auto& t : tokens) {
      int value = -1;
      if (t.size() == 6 && t.starts_with("<0x") && t.back() == '>') {
        value = hex(t[3]) * 16 + hex(t[4]);
        if (hex(t[3]) < 0 || hex(t[4]) < 0) value = -1;
      }
      if (value >= 0) {
        bytes += static_cast<char>(value);
        ++nbytes;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }
};

class Fuse final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Removes up to `start` leading and `stop` trailing copies of `content` from every token.
class Strip final : public Decoder {
 public:
  explicit Strip(const json& j) {
    const auto c = j.at("content").get<std::string>();
    size_t i = 0;
    content_ = next_cp(c, i);
    start_ = j.value("start", 0);
    stop_ = j.value("stop", 0);
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<std::pair<size_t, char32_t>> cps;  // (byte offset, code point)
      for (size_t i = 0; i < t.size();) {
        const size_t b = i;
        cps.emplace_back(b, next_cp(t, i));
      }
      size_t cut_start = 0, cut_stop = 0;
      for (size_t k = 0; k < cps.size() && k < start_; ++k) {
        if (cps[k].second != content_) break;
        cut_start = k + 1;
      }
      for (size_t k = 0; k < cps.size() && k < stop_; ++k) {
        if (cps[cps.size() - 1 - k].second != content_) break;
        cut_stop = k + 1;
      }
      if (cut_start + cut_stop >= cps.size()) {
        t.clear();
        continue;
      }
      const size_t b = cut_start < cps.size() ? cps[cut_start].first : t.size();
      const size_t e = cps[cps.size() - cut_stop - 1].first +
                       static_cast<size_t>(utf8_len(
                           static_cast<unsigned char>(t[cps[cps.size() - cut_stop - 1].first])));
      t = t.substr(b, e - b);
    }
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

class Metaspace final : public Decoder {
 public:
  explicit Metaspace(const json& j) {
    rep_ = j.value("replacement", std::string("\xE2\x96\x81"));
    if (j.contains("prepend_scheme")) {
      prepend_ = j["prepend_scheme"].get<std::string>() != "never";
    } else {
      prepend_ = j.value("add_prefix_space", true);
    }
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const auto& t = tokens[i];
      size_t pos = 0, hit;
      while ((hit = t.find(rep_, pos)) != std::string::npos) {
        out.append(t, pos, hit - pos);
        out += ' ';
        pos = hit + rep_.size();
      }
      out.append(t, pos);
      if (i == 0 && prepend_ && out.starts_with(' ')) out.erase(0, 1);
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string rep_;
  bool prepend_;
};

// BERT's "##" continuation: strip the prefix, else prepend a space; optional cleanup of spaces
// before punctuation and contractions.
class WordPiece final : public Decoder {
 public:
  explicit WordPiece(const json& j)
      : prefix_(j.value("prefix", std::string("##"))), cleanup_(j.value("cleanup", true)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto& t = tokens[i];
      if (i != 0) {
        if (t.starts_with(prefix_))
          t.erase(0, prefix_.size());
        else
          t.insert(0, " ");
      }
      if (cleanup_) t = cleanup(t);
    }
  }
  static std::string cleanup(std::string s) {
    static const std::pair<const char*, const char*> kRules[] = {
        {" .", "."},   {" ?", "?"},     {" !", "!"},    {" ,", ","},
        {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},  {" do not", " don't"},
        {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (const auto& [from, to] : kRules) {
      const std::string f = from, r = to;
      std::string out;
      size_t pos = 0, hit;
      while ((hit = s.find(f, pos)) != std::string::npos) {
        out.append(s, pos, hit - pos);
        out += r;
        pos = hit + f.size();
      }
      out.append(s, pos);
      s = std::move(out);
    }
    return s;
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

// Classic BPE end-of-word suffix: the suffix becomes a space, except on the last token.
class BpeDecoder final : public Decoder {
 public:
  explicit BpeDecoder(const json& j) : suffix_(j.value("suffix", std::string("</w>"))) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto& t = tokens[i];
      const std::string rep = i + 1 == tokens.size() ? "" : " ";
      std::string out;
      size_t pos = 0, hit;
      while (!suffix_.empty() && (hit = t.find(suffix_, pos)) != std::string::npos) {
        out.append(t, pos, hit - pos);
        out += rep;
        pos = hit + suffix_.size();
      }
      out.append(t, pos);
      t = std::move(out);
    }
  }

 private:
  std::string suffix_;
};

class Sequence final : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw Error(str(where, ": a decoder must be an object with a string \"type\""));
  }
  const auto type = j["type"].get<std::string>();
  try {
    if (type == "ByteLevel") return std::make_unique<ByteLevel>();
    if (type == "Replace") return std::make_unique<Replace>(j, where);
    if (type == "ByteFallback") return std::make_unique<ByteFallback>();
    if (type == "Fuse") return std::make_unique<Fuse>();
    if (type == "Strip") return std::make_unique<Strip>(j);
    if (type == "Metaspace") return std::make_unique<Metaspace>(j);
    if (type == "WordPiece") return std::make_unique<WordPiece>(j);
    if (type == "BPEDecoder") return std::make_unique<BpeDecoder>(j);
    if (type == "Sequence") {
      const auto& list = j.at("decoders");
      std::vector<std::unique_ptr<Decoder>> parts;
      for (size_t i = 0; i < list.size(); ++i) {
        if (auto d = make_decoder(list[i], str(where, ".decoders[", i, "]")))
          parts.push_back(std::move(d));
      }
      return std::make_unique<Sequence>(std::move(parts));
    }
  } catch (const json::exception& e) {
    throw Error(str(where, " (", type, "): ", e.what()));
  }
  throw Error(str(where, ".type: unknown decoder type '", type,
                  "' (known: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, WordPiece, "
                  "BPEDecoder, Sequence)"));
}

}  // namespace tune::tok
