// The public chat-template API: lex and parse once, check filter and test names as Jinja does
// at compile time, then render per conversation.
#include "tune/template/chat_template.h"

#include "template/builtins.h"
#include "template/parser.h"
#include "template/renderer.h"

namespace tune::tmpl {

struct ChatTemplate::Program {
  std::string name;
  Body body;
};

namespace {

void check_names(const Expr& e, const std::string& name) {
  if (e.kind == Expr::Kind::kFilter && !has_filter(e.name))
    syntax_error(name, e.line, e.column, "No filter named '" + e.name + "'.");
  if (e.kind == Expr::Kind::kTest && !has_test(e.name))
    syntax_error(name, e.line, e.column, "No test named '" + e.name + "'.");
  for (const auto& a : e.args)
    if (a) check_names(*a, name);
  for (const auto& [k, v] : e.kwargs)
    if (v) check_names(*v, name);
}

void check_names(const Body& body, const std::string& name) {
  for (const auto& s : body) {
    for (const Expr* e : {s->target.get(), s->expr.get(), s->filter.get()})
      if (e) check_names(*e, name);
    for (const auto& c : s->conditions) check_names(*c, name);
    for (const auto& [p, d] : s->params)
      if (d) check_names(*d, name);
    for (const auto& b : s->bodies) check_names(b, name);
    check_names(s->body, name);
    check_names(s->else_body, name);
  }
}

}  // namespace

Rendered render_value(const ChatTemplate::Program& program, const Value& variables);

ChatTemplate::ChatTemplate(const std::string& source, const std::string& name)
    : program_(std::make_unique<Program>()) {
  program_->name = name;
  program_->body = parse(tokenize(source, name), name);
  check_names(program_->body, name);
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::json& variables) const {
  return render_tracked(variables).text;
}

std::string ChatTemplate::render(const nlohmann::ordered_json& variables) const {
  return render_tracked(variables).text;
}

Rendered ChatTemplate::render_tracked(const nlohmann::json& variables) const {
  return render_value(*program_, Value::from_json(variables));
}

Rendered ChatTemplate::render_tracked(const nlohmann::ordered_json& variables) const {
  return render_value(*program_, Value::from_json(variables));
}

Rendered render_value(const ChatTemplate::Program& program, const Value& variables) {
  int line = 0;
  try {
    return render_body(program.body, variables, &line);
  } catch (const RenderError& e) {
    if (e.from_raise_exception) throw TemplateException(e.message);
    throw Error(tune::str(program.name, ":", line, ": ", e.message));
  }
}

}  // namespace tune::tmpl
