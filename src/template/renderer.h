// Executes a parsed template: statements write to an output string, expressions evaluate to
// Values. Scopes follow Jinja: each for-loop iteration and each macro call gets a fresh
// frame over its parent, so `set` inside them does not leak out (namespaces do).
#pragma once

#include <string>
#include <vector>

#include "template/ast.h"
#include "tune/template/chat_template.h"

namespace tune::tmpl {

// Renders `body` with `variables` as the context; records {% generation %} spans.
// Throws RenderError (value.h); `line` receives the line of the statement that failed.
Rendered render_body(const Body& body, const Value& variables, int* line);

}  // namespace tune::tmpl
