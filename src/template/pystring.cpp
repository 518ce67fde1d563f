#include "template/pystring.h"

#include <utf8proc.h>

#include <algorithm>

namespace tune::tmpl::py {

std::vector<char32_t> decode(const std::string& s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    utf8proc_int32_t cp = 0;
    auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                              utf8proc_ssize_t(s.size() - i), &cp);
    if (n <= 0) {  // invalid byte: keep it as a code point of its own (like surrogateescape)
      out.push_back(char32_t(0xDC00 + uint8_t(s[i])));
      ++i;
      continue;
    }
    out.push_back(char32_t(cp));
    i += size_t(n);
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp >= 0xDC80 && cp <= 0xDCFF) {
    out.push_back(char(cp - 0xDC00));
    return;
  }
  utf8proc_uint8_t buf[4];
  auto n = utf8proc_encode_char(utf8proc_int32_t(cp), buf);
  out.append(reinterpret_cast<const char*>(buf), size_t(n));
}

std::string encode(const std::vector<char32_t>& cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t cp : cps) append_utf8(out, cp);
  return out;
}

size_t length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::string strip(const std::string& s, const std::optional<std::string>& chars, bool left,
                  bool right) {
  auto cps = decode(s);
  std::vector<char32_t> set;
  if (chars) set = decode(*chars);
  auto strippable = [&](char32_t c) {
    return chars ? std::find(set.begin(), set.end(), c) != set.end() : is_space(c);
  };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strippable(cps[b])) ++b;
  if (right)
    while (e > b && strippable(cps[e - 1])) --e;
  return encode(std::vector<char32_t>(cps.begin() + b, cps.begin() + e));
}

static std::vector<std::string> split_whitespace(const std::string& s, int64_t maxsplit) {
  auto cps = decode(s);
  std::vector<std::string> out;
  size_t i = 0;
  while (true) {
    while (i < cps.size() && is_space(cps[i])) ++i;
    if (i == cps.size()) break;
    if (maxsplit >= 0 && int64_t(out.size()) == maxsplit) {
      size_t e = cps.size();
      while (e > i && is_space(cps[e - 1])) --e;
      out.push_back(encode(std::vector<char32_t>(cps.begin() + i, cps.begin() + e)));
      break;
    }
    size_t j = i;
    while (j < cps.size() && !is_space(cps[j])) ++j;
    out.push_back(encode(std::vector<char32_t>(cps.begin() + i, cps.begin() + j)));
    i = j;
  }
  return out;
}

std::vector<std::string> split(const std::string& s, const std::optional<std::string>& sep,
                               int64_t maxsplit) {
  if (!sep) return split_whitespace(s, maxsplit);
  std::vector<std::string> out;
  size_t pos = 0;
  while (maxsplit < 0 || int64_t(out.size()) < maxsplit) {
    size_t at = s.find(*sep, pos);
    if (at == std::string::npos) break;
    out.push_back(s.substr(pos, at - pos));
    pos = at + sep->size();
  }
  out.push_back(s.substr(pos));
  return out;
}

std::vector<std::string> rsplit(const std::string& s, const std::optional<std::string>& sep,
                                int64_t maxsplit) {
  if (maxsplit < 0) return split(s, sep, maxsplit);
  if (!sep) {  // rare in templates: reverse, split from the left, reverse back
    auto cps = decode(s);
    std::reverse(cps.begin(), cps.end());
    auto parts = split_whitespace(encode(cps), maxsplit);
    for (auto& p : parts) {
      auto c = decode(p);
      std::reverse(c.begin(), c.end());
      p = encode(c);
    }
    std::reverse(parts.begin(), parts.end());
    return parts;
  }
  std::vector<std::string> out;
  size_t end = s.size();
  while (int64_t(out.size()) < maxsplit) {
    if (end < sep->size()) break;
    size_t at = s.rfind(*sep, end - sep->size());
    if (at == std::string::npos) break;
    out.push_back(s.substr(at + sep->size(), end - at - sep->size()));
    end = at;
  }
  out.push_back(s.substr(0, end));
  std::reverse(out.begin(), out.end());
  return out;
}

std::string replace(const std::string& s, const std::string& old, const std::string& with,
                    int64_t count) {
  std::string out;
  if (old.empty()) {  // Python inserts `with` between every code point and at both ends
    auto cps = decode(s);
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += with;
        ++done;
      }
      if (i < cps.size()) append_utf8(out, cps[i]);
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t at = s.find(old, pos);
    if (at == std::string::npos) break;
    out.append(s, pos, at - pos);
    out += with;
    pos = at + old.size();
    ++done;
  }
  out.append(s, pos);
  return out;
}

static std::string map_case(const std::string& s, bool to_upper) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : decode(s)) {
    if (c < 0x80) {
      out.push_back(char(to_upper ? (c >= 'a' && c <= 'z' ? c - 32 : c)
                                  : (c >= 'A' && c <= 'Z' ? c + 32 : c)));
    } else {
      append_utf8(out, char32_t(to_upper ? utf8proc_toupper(utf8proc_int32_t(c))
                                         : utf8proc_tolower(utf8proc_int32_t(c))));
    }
  }
  return out;
}

std::string upper(const std::string& s) {
  return map_case(s, true);
}
std::string lower(const std::string& s) {
  return map_case(s, false);
}

static bool is_cased_letter(char32_t c) {
  auto cat = utf8proc_category(utf8proc_int32_t(c));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

std::string title(const std::string& s) {
  std::string out;
  bool previous_cased = false;
  for (char32_t c : decode(s)) {
    auto m = previous_cased ? utf8proc_tolower(utf8proc_int32_t(c))
                            : utf8proc_totitle(utf8proc_int32_t(c));
    append_utf8(out, char32_t(m));
    previous_cased = is_cased_letter(c);
  }
  return out;
}

std::string capitalize(const std::string& s) {
  auto cps = decode(s);
  std::string out;
  for (size_t i = 0; i < cps.size(); ++i) {
    auto m = i == 0 ? utf8proc_totitle(utf8proc_int32_t(cps[i]))
                    : utf8proc_tolower(utf8proc_int32_t(cps[i]));
    append_utf8(out, char32_t(m));
  }
  return out;
}

int64_t find(const std::string& s, const std::string& sub) {
  size_t at = s.find(sub);
  return at == std::string::npos ? -1 : int64_t(length(s.substr(0, at)));
}

int64_t count(const std::string& s, const std::string& sub) {
  if (sub.empty()) return int64_t(length(s)) + 1;
  int64_t n = 0;
  for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
  return n;
}

}  // namespace tune::tmpl::py
