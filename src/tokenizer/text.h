// UTF-8 helpers shared by the tokenizer pipeline: code point decoding, the White_Space test that
// Rust's char::is_whitespace uses, Rust's String::from_utf8_lossy, and GPT-2's byte <-> char map.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tune::tok {

// Length of the UTF-8 sequence that starts with byte `b` (1 for stray continuation bytes).
inline int utf8_len(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b >> 5) == 0x6) return 2;
  if ((b >> 4) == 0xE) return 3;
  if ((b >> 3) == 0x1E) return 4;
  return 1;
}

// Decodes the code point at s[i] (s is valid UTF-8) and advances i past it.
char32_t next_cp(std::string_view s, size_t& i);
void append_cp(std::string& out, char32_t cp);

// Byte offset of the first invalid UTF-8 sequence, or npos when `s` is valid.
size_t find_invalid_utf8(std::string_view s);

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// Unicode White_Space (what Rust's char::is_whitespace tests).
bool is_white_space(char32_t c);

// GPT-2's bytes_to_unicode: every byte as a printable code point, and back.
const std::array<std::string, 256>& byte_to_char();
// The byte for a code point of that map, or -1.
int char_to_byte(char32_t c);

}  // namespace tune::tok
