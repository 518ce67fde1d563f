// Python's str methods over UTF-8 bytes. Python strings are sequences of code points, so
// lengths, indices and slices count code points; whitespace is str.isspace()'s set.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tune::tmpl::py {

std::vector<char32_t> decode(const std::string& s);
std::string encode(const std::vector<char32_t>& cps);
void append_utf8(std::string& out, char32_t cp);
size_t length(const std::string& s);

bool is_space(char32_t cp);
// strip/lstrip/rstrip: `chars` absent strips whitespace, else any code point in `chars`.
std::string strip(const std::string& s, const std::optional<std::string>& chars, bool left,
                  bool right);
std::vector<std::string> split(const std::string& s, const std::optional<std::string>& sep,
                               int64_t maxsplit);
std::vector<std::string> rsplit(const std::string& s, const std::optional<std::string>& sep,
                                int64_t maxsplit);
std::string replace(const std::string& s, const std::string& old, const std::string& with,
                    int64_t count);
std::string upper(const std::string& s);
std::string lower(const std::string& s);
std::string title(const std::string& s);
std::string capitalize(const std::string& s);
// Code-point index of the first occurrence, or -1.
int64_t find(const std::string& s, const std::string& sub);
int64_t count(const std::string& s, const std::string& sub);

}  // namespace tune::tmpl::py
