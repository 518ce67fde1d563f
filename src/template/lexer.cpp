#include "template/lexer.h"

#include <algorithm>
#include <cstring>

#include "template/pystring.h"
#include "tune/core/error.h"

namespace tune::tmpl {

void syntax_error(const std::string& name, int line, int column, const std::string& message) {
  throw Error(str(name, ":", line, ":", column, ": template syntax error: ", message));
}

namespace {

// Jinja normalizes \r\n and \r to \n and drops one trailing newline (keep_trailing_newline off).
std::string normalize_newlines(const std::string& source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

const char* const kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                                  "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                  ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};

class Lexer {
 public:
  Lexer(std::string source, const std::string& name) : src_(std::move(source)), name_(name) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    while (pos_ < src_.size()) root();
    Token eof;
    eof.kind = Token::Kind::kEof;
    locate(src_.size(), eof);
    tokens_.push_back(eof);
    return std::move(tokens_);
  }

 private:
  void locate(size_t offset, Token& t) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    size_t line = size_t(it - line_starts_.begin());
    size_t start = line_starts_[line - 1];
    t.line = int(line);
    t.column = int(py::length(src_.substr(start, offset - start))) + 1;
  }

  [[noreturn]] void error_at(size_t offset, const std::string& message) const {
    Token t;
    locate(offset, t);
    syntax_error(name_, t.line, t.column, message);
  }

  void push(Token::Kind kind, size_t offset, std::string text = {}) {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    locate(offset, t);
    tokens_.push_back(std::move(t));
  }

  // Text before a tag, with the tag's whitespace control (or lstrip_blocks) applied.
  void emit_data(size_t begin, std::string text, char sign, bool lstrip_allowed) {
    if (sign == '-') {
      text = py::strip(text, std::nullopt, false, true);
    } else if (sign != '+' && lstrip_allowed) {
      size_t l_pos = text.rfind('\n');
      l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
      if ((l_pos > 0 || line_starting_) && l_pos < text.size()) {
        std::string tail = text.substr(l_pos);
        auto cps = py::decode(tail);
        if (std::all_of(cps.begin(), cps.end(), py::is_space)) text.resize(l_pos);
      }
    }
    if (!text.empty()) push(Token::Kind::kData, begin, std::move(text));
  }

  static bool starts(const std::string& s, size_t at, const char* what) {
    return s.compare(at, std::strlen(what), what) == 0;
  }

  // `{%[-+]?\s*raw\s*(-%}\s*|%})` at `at`; returns the end of the match or npos.
  size_t match_raw_begin(size_t at, char* sign) const {
    size_t p = at + 2;
    *sign = 0;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) *sign = src_[p++];
    while (p < src_.size() && is_ascii_space(src_[p])) ++p;
    if (!starts(src_, p, "raw")) return std::string::npos;
    p += 3;
    size_t q = p;
    while (q < src_.size() && is_ascii_space(src_[q])) ++q;
    if (starts(src_, q, "-%}")) {
      q += 3;
      while (q < src_.size() && is_ascii_space(src_[q])) ++q;
      return q;
    }
    if (starts(src_, q, "%}")) return q + 2;
    return std::string::npos;
  }

  void root() {
    size_t at = pos_;
    while (true) {
      at = src_.find('{', at);
      if (at == std::string::npos || at + 1 >= src_.size()) {
        emit_data(pos_, src_.substr(pos_), 0, false);
        pos_ = src_.size();
        return;
      }
      char c = src_[at + 1];
      if (c == '{' || c == '%' || c == '#') break;
      ++at;
    }
    char kind = src_[at + 1];
    char sign =
        at + 2 < src_.size() && (src_[at + 2] == '-' || src_[at + 2] == '+') ? src_[at + 2] : 0;
    std::string text = src_.substr(pos_, at - pos_);
    if (kind == '%') {
      char raw_sign;
      size_t raw_end = match_raw_begin(at, &raw_sign);
      if (raw_end != std::string::npos) {
        emit_data(pos_, std::move(text), raw_sign, true);
        line_starting_ = src_[raw_end - 1] == '\n';
        raw(raw_end);
        return;
      }
    }
    emit_data(pos_, std::move(text), sign, kind != '{');
    size_t body = at + 2 + (sign ? 1 : 0);
    if (kind == '#') {
      comment(at, body);
    } else if (kind == '%') {
      push(Token::Kind::kBlockBegin, at);
      inside_tag(body, true);
    } else {
      push(Token::Kind::kVarBegin, at);
      inside_tag(body, false);
    }
  }

  void raw(size_t p) {
    // (.*?)({%[-+]?\s*endraw\s*(+%}|-%}\s*|%}\n?))
    size_t at = p;
    while (true) {
      at = src_.find("{%", at);
      if (at == std::string::npos) error_at(p, "Missing end of raw directive");
      size_t q = at + 2;
      char sign = 0;
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) sign = src_[q++];
      while (q < src_.size() && is_ascii_space(src_[q])) ++q;
      if (starts(src_, q, "endraw")) {
        q += 6;
        while (q < src_.size() && is_ascii_space(src_[q])) ++q;
        size_t end = std::string::npos;
        if (starts(src_, q, "+%}")) {
          end = q + 3;
        } else if (starts(src_, q, "-%}")) {
          end = q + 3;
          while (end < src_.size() && is_ascii_space(src_[end])) ++end;
        } else if (starts(src_, q, "%}")) {
          end = q + 2;
          if (end < src_.size() && src_[end] == '\n') ++end;
        }
        if (end != std::string::npos) {
          emit_data(p, src_.substr(p, at - p), sign, true);
          line_starting_ = src_[end - 1] == '\n';
          pos_ = end;
          return;
        }
      }
      at += 2;
    }
  }

  void comment(size_t open, size_t body) {
    size_t close = src_.find("#}", body);
    if (close == std::string::npos) error_at(open, "Missing end of comment tag");
    char sign =
        close > body && (src_[close - 1] == '-' || src_[close - 1] == '+') ? src_[close - 1] : 0;
    size_t end = close + 2;
    if (sign == '-') {
      while (end < src_.size() && is_ascii_space(src_[end])) ++end;
    } else if (sign == 0 && end < src_.size() && src_[end] == '\n') {
      ++end;
    }
    line_starting_ = src_[end - 1] == '\n';
    pos_ = end;
  }

  // Tokens inside {% ... %} or {{ ... }} up to and including the closing delimiter.
  void inside_tag(size_t p, bool block) {
    std::vector<char> balance;
    const size_t open = p;
    while (true) {
      while (p < src_.size() && is_ascii_space(src_[p])) ++p;
      if (p >= src_.size())
        error_at(open, block ? "unexpected end of template, expected '%}'"
                             : "unexpected end of template, expected '}}'");
      if (balance.empty()) {
        size_t end = std::string::npos;
        if (block) {
          if (starts(src_, p, "+%}")) {
            end = p + 3;
          } else if (starts(src_, p, "-%}")) {
            end = p + 3;
            while (end < src_.size() && is_ascii_space(src_[end])) ++end;
          } else if (starts(src_, p, "%}")) {
            end = p + 2;
            if (end < src_.size() && src_[end] == '\n') ++end;  // trim_blocks
          }
        } else {
          if (starts(src_, p, "-}}")) {
            end = p + 3;
            while (end < src_.size() && is_ascii_space(src_[end])) ++end;
          } else if (starts(src_, p, "}}")) {
            end = p + 2;
          }
        }
        if (end != std::string::npos) {
          push(block ? Token::Kind::kBlockEnd : Token::Kind::kVarEnd, p);
          line_starting_ = src_[end - 1] == '\n';
          pos_ = end;
          return;
        }
      }
      p = token(p, balance);
    }
  }

  size_t token(size_t p, std::vector<char>& balance) {
    unsigned char c = static_cast<unsigned char>(src_[p]);
    if (std::isdigit(c)) return number(p);
    if (std::isalpha(c) || c == '_' || c >= 0x80) {
      size_t q = p;
      while (q < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[q])) ||
                                 src_[q] == '_' || static_cast<unsigned char>(src_[q]) >= 0x80))
        ++q;
      push(Token::Kind::kName, p, src_.substr(p, q - p));
      return q;
    }
    if (c == '\'' || c == '"') return string(p);
    for (const char* op : kOperators) {
      if (!starts(src_, p, op)) continue;
      char o = op[0];
      if (std::strlen(op) == 1 && (o == '(' || o == '[' || o == '{')) {
        balance.push_back(o == '(' ? ')' : o == '[' ? ']' : '}');
      } else if (std::strlen(op) == 1 && (o == ')' || o == ']' || o == '}')) {
        if (balance.empty()) error_at(p, str("unexpected '", o, "'"));
        if (balance.back() != o)
          error_at(p, str("unexpected '", o, "', expected '", balance.back(), "'"));
        balance.pop_back();
      }
      push(Token::Kind::kOp, p, op);
      return p + std::strlen(op);
    }
    error_at(p, str("unexpected char '", src_.substr(p, 1), "'"));
  }

  size_t digits(size_t q) const {
    while (q < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[q])) || src_[q] == '_'))
      ++q;
    return q;
  }

  size_t number(size_t p) {
    size_t q = digits(p);
    bool is_float = false;
    if (q + 1 < src_.size() && src_[q] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[q + 1]))) {
      q = digits(q + 1);
      is_float = true;
    }
    if (q < src_.size() && (src_[q] == 'e' || src_[q] == 'E')) {
      size_t r = q + 1;
      if (r < src_.size() && (src_[r] == '+' || src_[r] == '-')) ++r;
      if (r < src_.size() && std::isdigit(static_cast<unsigned char>(src_[r]))) {
        q = digits(r);
        is_float = true;
      }
    }
    std::string text = src_.substr(p, q - p);
    text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
    Token t;
    locate(p, t);
    if (is_float) {
      t.kind = Token::Kind::kFloat;
      t.float_value = std::stod(text);
    } else if (text.size() > 1 && text[0] == '0' &&
               (text[1] == 'x' || text[1] == 'X' || text[1] == 'o' || text[1] == 'O' ||
                text[1] == 'b' || text[1] == 'B')) {
      q = p + 2;
      while (q < src_.size() &&
             (std::isalnum(static_cast<unsigned char>(src_[q])) || src_[q] == '_'))
        ++q;
      text = src_.substr(p + 2, q - p - 2);
      text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
      char base = char(std::tolower(src_[p + 1]));
      t.kind = Token::Kind::kInt;
      t.int_value = std::stoll(text, nullptr, base == 'x' ? 16 : base == 'o' ? 8 : 2);
    } else {
      t.kind = Token::Kind::kInt;
      t.int_value = std::stoll(text);
    }
    tokens_.push_back(t);
    return q;
  }

  // A quoted literal decoded like Python's "unicode-escape" codec.
  size_t string(size_t p) {
    char quote = src_[p];
    std::string value;
    size_t q = p + 1;
    while (true) {
      if (q >= src_.size()) error_at(p, "unexpected end of string");
      char c = src_[q];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        ++q;
        continue;
      }
      if (q + 1 >= src_.size()) error_at(p, "unexpected end of string");
      char e = src_[q + 1];
      q += 2;
      auto hex = [&](int n) {
        if (q + size_t(n) > src_.size()) error_at(p, "truncated \\xXX escape");
        char32_t cp = char32_t(std::stoul(src_.substr(q, size_t(n)), nullptr, 16));
        q += size_t(n);
        py::append_utf8(value, cp);
      };
      switch (e) {
        case 'n':
          value += '\n';
          break;
        case 't':
          value += '\t';
          break;
        case 'r':
          value += '\r';
          break;
        case '\\':
          value += '\\';
          break;
        case '\'':
          value += '\'';
          break;
        case '"':
          value += '"';
          break;
        case 'a':
          value += '\a';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'v':
          value += '\v';
          break;
        case '\n':
          break;
        case 'x':
          hex(2);
          break;
        case 'u':
          hex(4);
          break;
        case 'U':
          hex(8);
          break;
        default:
          if (e >= '0' && e <= '7') {
            int v = e - '0', n = 1;
            while (n < 3 && q < src_.size() && src_[q] >= '0' && src_[q] <= '7')
              v = v * 8 + (src_[q++] - '0'), ++n;
            py::append_utf8(value, char32_t(v));
          } else {
            value += '\\';
            value += e;
          }
      }
    }
    push(Token::Kind::kString, p, std::move(value));
    return q + 1;
  }

  std::string src_;
  const std::string& name_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  bool line_starting_ = true;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source, const std::string& name) {
  return Lexer(normalize_newlines(source), name).run();
}

}  // namespace tune::tmpl
