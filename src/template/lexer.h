// Splits template source into tokens exactly as Jinja2's lexer does with trim_blocks and
// lstrip_blocks on: text between tags (whitespace control `{%-`, `-%}`, `{{-`, `-}}`, `{%+`
// applied), tag delimiters, and the names, literals and operators inside tags. `{% raw %}`
// content and comments are handled here and never reach the parser.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tune::tmpl {

struct Token {
  enum class Kind {
    kData,
    kVarBegin,
    kVarEnd,
    kBlockBegin,
    kBlockEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEof
  };
  Kind kind = Kind::kEof;
  std::string text;  // data, name, operator, or a string literal's decoded value
  int64_t int_value = 0;
  double float_value = 0.0;
  int line = 1, column = 1;
};

// Throws tune::Error "<name>:<line>:<column>: <what>" on malformed input.
std::vector<Token> tokenize(const std::string& source, const std::string& name);

// "name:line:column: message" — the form every template syntax error takes.
[[noreturn]] void syntax_error(const std::string& name, int line, int column,
                               const std::string& message);

}  // namespace tune::tmpl
