// Builds the AST from tokens with Jinja2's grammar and operator precedence:
// condexpr < or < and < not < compare < + - < ~ < * / // % < ** < unary < postfix/filter/test.
#pragma once

#include <string>
#include <vector>

#include "template/ast.h"
#include "template/lexer.h"

namespace tune::tmpl {

// Throws tune::Error "<name>:<line>:<column>: template syntax error: ..." on bad syntax.
Body parse(const std::vector<Token>& tokens, const std::string& name);

}  // namespace tune::tmpl
