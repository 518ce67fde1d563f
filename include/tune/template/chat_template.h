// Chat templates: a Jinja engine covering what Hub chat templates use, rendering exactly as
// Python Jinja2 does in the environment transformers sets up (ImmutableSandboxedEnvironment,
// trim_blocks, lstrip_blocks, loop controls, transformers' tojson, raise_exception,
// strftime_now, the {% generation %} block). Engine internals live in src/template/.
#pragma once

#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tune/core/error.h"

namespace tune::tmpl {

// What raise_exception(msg) throws: what() is the template's own message, unchanged.
class TemplateException : public Error {
 public:
  explicit TemplateException(const std::string& message) : Error(message) {}
};

// A byte range [begin, end) of the rendered text.
struct Span {
  size_t begin = 0, end = 0;
};

struct Rendered {
  std::string text;
  // What {% generation %} blocks produced (assistant turns), in order.
  std::vector<Span> generation;
};

class ChatTemplate {
 public:
  // Parses once; a syntax error throws tune::Error naming `name`, line and column.
  explicit ChatTemplate(const std::string& source, const std::string& name = "chat_template");
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Renders with `variables` as the template's context (messages, tools, add_generation_prompt,
  // bos_token, ...). raise_exception(msg) in the template throws tune::Error carrying msg.
  std::string render(const nlohmann::json& variables) const;
  Rendered render_tracked(const nlohmann::json& variables) const;
  // The same from ordered_json, which keeps objects in document order as Python's dicts do:
  // use it when the order of keys can show (tools | tojson, iterating a dict).
  std::string render(const nlohmann::ordered_json& variables) const;
  Rendered render_tracked(const nlohmann::ordered_json& variables) const;

  struct Program;

 private:
  std::unique_ptr<Program> program_;
};

}  // namespace tune::tmpl
