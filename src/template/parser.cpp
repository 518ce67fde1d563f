#include "template/parser.h"

#include <set>

namespace tune::tmpl {
namespace {

using TK = Token::Kind;
using EK = Expr::Kind;
using SK = Stmt::Kind;

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const std::string& name) : t_(tokens), name_(name) {}

  Body parse_all() {
    Body body = subparse({});
    if (cur().kind != TK::kEof) error(cur(), "unexpected token");
    return body;
  }

 private:
  const Token& cur() const { return t_[pos_]; }
  const Token& peek(size_t n = 1) const { return t_[std::min(pos_ + n, t_.size() - 1)]; }
  const Token& next() { return t_[pos_ < t_.size() - 1 ? pos_++ : pos_]; }
  bool is_op(const char* op) const { return cur().kind == TK::kOp && cur().text == op; }
  bool is_name(const char* n) const { return cur().kind == TK::kName && cur().text == n; }
  bool skip_op(const char* op) { return is_op(op) ? (next(), true) : false; }
  bool skip_name(const char* n) { return is_name(n) ? (next(), true) : false; }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TK::kEof:
        return "end of template";
      case TK::kBlockEnd:
        return "end of statement block";
      case TK::kVarEnd:
        return "end of print statement";
      case TK::kName:
        return "'" + t.text + "'";
      case TK::kOp:
        return "'" + t.text + "'";
      case TK::kString:
        return "string";
      default:
        return "token";
    }
  }

  [[noreturn]] void error(const Token& t, const std::string& message) const {
    syntax_error(name_, t.line, t.column, message);
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) error(cur(), std::string("expected '") + op + "', got " + describe(cur()));
  }
  void expect_name(const char* n) {
    if (!skip_name(n)) error(cur(), std::string("expected '") + n + "', got " + describe(cur()));
  }
  std::string expect_identifier() {
    if (cur().kind != TK::kName) error(cur(), "expected a name, got " + describe(cur()));
    return next().text;
  }
  void expect_block_end() {
    if (cur().kind != TK::kBlockEnd)
      error(cur(), "expected end of statement block, got " + describe(cur()));
    next();
  }

  ExprPtr node(EK kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->column = at.column;
    return e;
  }

  // Statements until a block tag whose first name is in `end_names` (left unconsumed, at the
  // name), or the end of the template when `end_names` is empty.
  Body subparse(const std::set<std::string>& end_names) {
    Body body;
    while (cur().kind != TK::kEof) {
      const Token& t = cur();
      if (t.kind == TK::kData) {
        auto s = std::make_unique<Stmt>();
        s->kind = SK::kText;
        s->text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.kind == TK::kVarBegin) {
        next();
        auto s = std::make_unique<Stmt>();
        s->kind = SK::kPrint;
        s->line = t.line;
        s->column = t.column;
        s->expr = parse_tuple(true);
        if (cur().kind != TK::kVarEnd)
          error(cur(), "expected end of print statement, got " + describe(cur()));
        next();
        body.push_back(std::move(s));
      } else if (t.kind == TK::kBlockBegin) {
        next();
        if (cur().kind == TK::kName && end_names.count(cur().text)) return body;
        body.push_back(parse_statement());
      } else {
        error(t, "unexpected " + describe(t));
      }
    }
    if (!end_names.empty()) {
      std::string expected;
      for (auto& n : end_names) expected += (expected.empty() ? "'" : " or '") + n + "'";
      error(cur(), "unexpected end of template, expected " + expected);
    }
    return body;
  }

  Body parse_body(const std::set<std::string>& end_names) {
    Body body = subparse(end_names);
    return body;
  }

  StmtPtr make_stmt(SK kind, const Token& at) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = at.line;
    s->column = at.column;
    return s;
  }

  StmtPtr parse_statement() {
    const Token& t = cur();
    if (t.kind != TK::kName) error(t, "tag name expected");
    const std::string& tag = t.text;
    if (tag == "if") return parse_if();
    if (tag == "for") return parse_for();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "call") return parse_call_block();
    if (tag == "filter") return parse_filter_block();
    if (tag == "generation") {
      auto s = make_stmt(SK::kGeneration, next());
      expect_block_end();
      s->body = parse_body({"endgeneration"});
      next();
      expect_block_end();
      return s;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) error(t, "'" + tag + "' outside of a loop");
      auto s = make_stmt(tag == "break" ? SK::kBreak : SK::kContinue, next());
      expect_block_end();
      return s;
    }
    error(t, "Encountered unknown tag '" + tag + "'.");
  }

  StmtPtr parse_if() {
    auto s = make_stmt(SK::kIf, next());
    s->conditions.push_back(parse_tuple(false));
    expect_block_end();
    while (true) {
      s->bodies.push_back(parse_body({"elif", "else", "endif"}));
      std::string which = next().text;
      if (which == "elif") {
        s->conditions.push_back(parse_tuple(false));
        expect_block_end();
        continue;
      }
      expect_block_end();
      if (which == "else") {
        s->else_body = parse_body({"endif"});
        next();
        expect_block_end();
      }
      return s;
    }
  }

  StmtPtr parse_for() {
    auto s = make_stmt(SK::kFor, next());
    s->target = parse_assign_target(false);
    expect_name("in");
    s->expr = parse_tuple(false, /*stop_at_if=*/true);
    if (skip_name("if")) s->filter = parse_expression(true);
    if (is_name("recursive")) error(cur(), "recursive loops are not supported");
    expect_block_end();
    ++loop_depth_;
    s->body = parse_body({"endfor", "else"});
    --loop_depth_;
    if (next().text == "else") {
      expect_block_end();
      s->else_body = parse_body({"endfor"});
      next();
    }
    expect_block_end();
    return s;
  }

  StmtPtr parse_set() {
    const Token& at = next();
    auto target = parse_assign_target(true);
    if (skip_op("=")) {
      auto s = make_stmt(SK::kSet, at);
      s->target = std::move(target);
      s->expr = parse_tuple(true);
      expect_block_end();
      return s;
    }
    auto s = make_stmt(SK::kSetBlock, at);
    s->target = std::move(target);
    if (is_op("|")) s->filter = parse_filter_chain(nullptr);
    expect_block_end();
    s->body = parse_body({"endset"});
    next();
    expect_block_end();
    return s;
  }

  void parse_signature(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      std::string param = expect_identifier();
      ExprPtr def;
      if (skip_op("=")) def = parse_expression(true);
      s.params.emplace_back(param, std::move(def));
    }
    next();
  }

  StmtPtr parse_macro() {
    auto s = make_stmt(SK::kMacro, next());
    s->text = expect_identifier();
    parse_signature(*s);
    expect_block_end();
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_body({"endmacro"});
    loop_depth_ = saved;
    next();
    expect_block_end();
    return s;
  }

  StmtPtr parse_call_block() {
    auto s = make_stmt(SK::kCallBlock, next());
    if (is_op("(")) parse_signature(*s);
    s->expr = parse_expression(true);
    if (s->expr->kind != EK::kCall) error(cur(), "expected call");
    expect_block_end();
    s->body = parse_body({"endcall"});
    next();
    expect_block_end();
    return s;
  }

  StmtPtr parse_filter_block() {
    auto s = make_stmt(SK::kFilterBlock, next());
    s->filter = parse_filter_chain(nullptr, /*leading_pipe=*/false);
    expect_block_end();
    s->body = parse_body({"endfilter"});
    next();
    expect_block_end();
    return s;
  }

  // Names, `ns.attr` (set only) or a tuple of names.
  ExprPtr parse_assign_target(bool allow_namespace) {
    const Token& at = cur();
    if (allow_namespace && at.kind == TK::kName && peek().kind == TK::kOp && peek().text == ".") {
      auto e = node(EK::kGetattr, at);
      auto base = node(EK::kName, at);
      base->name = next().text;
      next();
      e->name = expect_identifier();
      e->args.push_back(std::move(base));
      return e;
    }
    std::vector<ExprPtr> names;
    bool paren = skip_op("(");
    while (true) {
      auto n = node(EK::kName, cur());
      n->name = expect_identifier();
      names.push_back(std::move(n));
      if (!skip_op(",")) break;
      if (cur().kind != TK::kName) break;
    }
    if (paren) expect_op(")");
    if (names.size() == 1 && !paren) return std::move(names[0]);
    auto t = node(EK::kTuple, at);
    t->args = std::move(names);
    return t;
  }

  // Comma-separated expressions form a tuple (as in `{{ a, b }}` and `for x in a, b`).
  ExprPtr parse_tuple(bool with_condexpr, bool stop_at_if = false) {
    const Token& at = cur();
    std::vector<ExprPtr> items;
    bool saw_comma = false;
    while (true) {
      if (!items.empty()) {
        if (!skip_op(",")) break;
        saw_comma = true;
      }
      if (cur().kind == TK::kBlockEnd || cur().kind == TK::kVarEnd || is_op(")") ||
          (stop_at_if && is_name("if")))
        break;
      items.push_back(parse_expression(with_condexpr));
    }
    if (items.empty()) error(cur(), "expected an expression, got " + describe(cur()));
    if (items.size() == 1 && !saw_comma) return std::move(items[0]);
    auto t = node(EK::kTuple, at);
    t->args = std::move(items);
    return t;
  }

  ExprPtr parse_expression(bool with_condexpr) {
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    ExprPtr e = parse_or();
    while (is_name("if")) {
      const Token& at = next();
      auto c = node(EK::kCondition, at);
      auto cond = parse_or();
      ExprPtr otherwise;
      if (skip_name("else")) otherwise = parse_condexpr();
      c->args.push_back(std::move(cond));
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(otherwise));
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const char* op, ExprPtr left, ExprPtr right, const Token& at) {
    auto b = node(EK::kBinary, at);
    b->name = op;
    b->args.push_back(std::move(left));
    b->args.push_back(std::move(right));
    return b;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      const Token& at = next();
      e = binary("or", std::move(e), parse_and(), at);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      const Token& at = next();
      e = binary("and", std::move(e), parse_not(), at);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      auto u = node(EK::kUnary, next());
      u->name = "not";
      u->args.push_back(parse_not());
      return u;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token& at = cur();
    ExprPtr e = parse_math1();
    std::vector<std::string> ops;
    std::vector<ExprPtr> operands;
    while (true) {
      if (cur().kind == TK::kOp &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" ||
           cur().text == ">" || cur().text == ">=")) {
        ops.push_back(next().text);
      } else if (is_name("in")) {
        next();
        ops.push_back("in");
      } else if (is_name("not") && peek().kind == TK::kName && peek().text == "in") {
        next();
        next();
        ops.push_back("notin");
      } else {
        break;
      }
      operands.push_back(parse_math1());
    }
    if (ops.empty()) return e;
    auto c = node(EK::kCompare, at);
    c->args.push_back(std::move(e));
    for (auto& o : operands) c->args.push_back(std::move(o));
    c->ops = std::move(ops);
    return c;
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& at = next();
      e = binary(at.text == "+" ? "+" : "-", std::move(e), parse_concat(), at);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const Token& at = next();
      e = binary("~", std::move(e), parse_math2(), at);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& at = next();
      std::string op = at.text;
      e = binary(op == "*"    ? "*"
                 : op == "/"  ? "/"
                 : op == "//" ? "//"
                              : "%",
                 std::move(e), parse_pow(), at);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const Token& at = next();
      e = binary("**", std::move(e), parse_unary(true), at);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Token& at = next();
      e = node(EK::kUnary, at);
      e->name = at.text;
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    if (t.kind == TK::kName) {
      next();
      auto e = node(EK::kLiteral, t);
      if (t.text == "true" || t.text == "True")
        e->value = Value::boolean(true);
      else if (t.text == "false" || t.text == "False")
        e->value = Value::boolean(false);
      else if (t.text == "none" || t.text == "None")
        e->value = Value::none();
      else {
        e->kind = EK::kName;
        e->name = t.text;
      }
      return e;
    }
    if (t.kind == TK::kString) {
      std::string s;
      while (cur().kind == TK::kString) s += next().text;  // adjacent literals concatenate
      auto e = node(EK::kLiteral, t);
      e->value = Value::string(std::move(s));
      return e;
    }
    if (t.kind == TK::kInt || t.kind == TK::kFloat) {
      next();
      auto e = node(EK::kLiteral, t);
      e->value = t.kind == TK::kInt ? Value::integer(t.int_value) : Value::real(t.float_value);
      return e;
    }
    if (is_op("(")) {
      next();
      if (skip_op(")")) {
        auto e = node(EK::kTuple, t);
        return e;
      }
      ExprPtr e = parse_tuple(true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      next();
      auto e = node(EK::kList, t);
      while (!is_op("]")) {
        if (!e->args.empty()) {
          expect_op(",");
          if (is_op("]")) break;
        }
        e->args.push_back(parse_expression(true));
      }
      next();
      return e;
    }
    if (is_op("{")) {
      next();
      auto e = node(EK::kDict, t);
      while (!is_op("}")) {
        if (!e->args.empty()) {
          expect_op(",");
          if (is_op("}")) break;
        }
        e->args.push_back(parse_expression(true));
        expect_op(":");
        e->args.push_back(parse_expression(true));
      }
      next();
      return e;
    }
    error(t, "unexpected " + describe(t));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        const Token& at = next();
        if (cur().kind == TK::kInt) {
          auto g = node(EK::kGetitem, at);
          auto idx = node(EK::kLiteral, cur());
          idx->value = Value::integer(next().int_value);
          g->args.push_back(std::move(e));
          g->args.push_back(std::move(idx));
          e = std::move(g);
          continue;
        }
        auto g = node(EK::kGetattr, at);
        g->name = expect_identifier();
        g->args.push_back(std::move(e));
        e = std::move(g);
      } else if (is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr base) {
    const Token& at = next();  // [
    std::vector<ExprPtr> parts(3);
    bool slice = false;
    int part = 0;
    while (!is_op("]")) {
      if (skip_op(":")) {
        slice = true;
        if (++part > 2) error(cur(), "invalid slice");
        continue;
      }
      if (parts[size_t(part)]) error(cur(), "expected ']' or ':'");
      parts[size_t(part)] = parse_expression(true);
      if (is_op(",")) error(cur(), "tuple subscripts are not supported");
    }
    next();
    if (!slice) {
      if (!parts[0]) error(at, "expected a subscript");
      auto g = node(EK::kGetitem, at);
      g->args.push_back(std::move(base));
      g->args.push_back(std::move(parts[0]));
      return g;
    }
    auto s = node(EK::kSlice, at);
    s->args.push_back(std::move(base));
    for (auto& p : parts) s->args.push_back(std::move(p));
    return s;
  }

  void parse_args(Expr& call) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) {
        expect_op(",");
        if (is_op(")")) break;
      }
      first = false;
      if (cur().kind == TK::kName && peek().kind == TK::kOp && peek().text == "=") {
        std::string key = next().text;
        next();
        call.kwargs.emplace_back(key, parse_expression(true));
      } else {
        if (!call.kwargs.empty()) error(cur(), "positional argument follows keyword argument");
        call.args.push_back(parse_expression(true));
      }
    }
    next();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = node(EK::kCall, cur());
    c->args.push_back(std::move(callee));
    parse_args(*c);
    return c;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filter_chain(std::move(e));
      } else if (is_name("is")) {
        e = parse_test(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  // `| name(args)` once or repeated; `leading_pipe` false for `{% filter name %}`.
  ExprPtr parse_filter_chain(ExprPtr e, bool leading_pipe = true) {
    bool first = true;
    while (first ? (!leading_pipe || is_op("|")) : is_op("|")) {
      if (leading_pipe || !first) next();
      first = false;
      auto f = node(EK::kFilter, cur());
      f->name = expect_identifier();
      while (is_op(".")) {
        next();
        f->name += "." + expect_identifier();
      }
      f->args.push_back(std::move(e));
      if (is_op("(")) {
        auto holder = node(EK::kCall, cur());
        parse_args(*holder);
        for (auto& a : holder->args) f->args.push_back(std::move(a));
        f->kwargs = std::move(holder->kwargs);
      }
      e = std::move(f);
    }
    return e;
  }

  ExprPtr parse_test(ExprPtr e) {
    const Token& at = next();  // is
    auto t = node(EK::kTest, at);
    t->negated = skip_name("not");
    t->name = expect_identifier();
    while (is_op(".")) {
      next();
      t->name += "." + expect_identifier();
    }
    t->args.push_back(std::move(e));
    if (is_op("(")) {
      auto holder = node(EK::kCall, cur());
      parse_args(*holder);
      for (auto& a : holder->args) t->args.push_back(std::move(a));
      t->kwargs = std::move(holder->kwargs);
    } else if ((cur().kind == TK::kName || cur().kind == TK::kString || cur().kind == TK::kInt ||
                cur().kind == TK::kFloat || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) error(cur(), "You cannot chain multiple tests with is");
      t->args.push_back(parse_postfix(parse_primary()));
    }
    return t;
  }

  const std::vector<Token>& t_;
  const std::string& name_;
  size_t pos_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Body parse(const std::vector<Token>& tokens, const std::string& name) {
  return Parser(tokens, name).parse_all();
}

}  // namespace tune::tmpl
