#include "template/renderer.h"

#include <unordered_map>

#include "template/builtins.h"

namespace tune::tmpl {
namespace {

struct Frame {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Frame> parent;
};
using FramePtr = std::shared_ptr<Frame>;

enum class Flow { kNormal, kBreak, kContinue };

class Renderer {
 public:
  Renderer(std::string* out, std::vector<Span>* spans, int* line)
      : out_(out), root_(out), spans_(spans), line_(line) {}

  Flow exec(const Body& body, const FramePtr& frame) {
    for (const StmtPtr& s : body) {
      Flow f = exec(*s, frame);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

 private:
  Flow exec(const Stmt& s, const FramePtr& frame) {
    if (s.line) *line_ = s.line;
    switch (s.kind) {
      case Stmt::Kind::kText:
        *out_ += s.text;
        return Flow::kNormal;
      case Stmt::Kind::kPrint:
        *out_ += str(eval(*s.expr, frame));
        return Flow::kNormal;
      case Stmt::Kind::kIf:
        for (size_t i = 0; i < s.conditions.size(); ++i) {
          if (truthy(eval(*s.conditions[i], frame))) return exec(s.bodies[i], frame);
        }
        return exec(s.else_body, frame);
      case Stmt::Kind::kFor:
        return exec_for(s, frame);
      case Stmt::Kind::kSet:
        assign(*s.target, eval(*s.expr, frame), frame);
        return Flow::kNormal;
      case Stmt::Kind::kSetBlock: {
        Value text = Value::string(capture(s.body, std::make_shared<Frame>(Frame{{}, frame})));
        if (s.filter) text = apply_filters(*s.filter, text, frame);
        assign(*s.target, text, frame);
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro:
        frame->vars[s.text] = make_macro(s, frame, nullptr);
        return Flow::kNormal;
      case Stmt::Kind::kCallBlock: {
        Value caller = make_macro(s, frame, nullptr);
        *out_ += str(call(*s.expr, frame, &caller));
        return Flow::kNormal;
      }
      case Stmt::Kind::kFilterBlock: {
        Value text = Value::string(capture(s.body, frame));
        *out_ += str(apply_filters(*s.filter, text, frame));
        return Flow::kNormal;
      }
      case Stmt::Kind::kBreak:
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        return Flow::kContinue;
      case Stmt::Kind::kGeneration: {
        size_t begin = out_->size();
        Flow f = exec(s.body, frame);
        if (out_ == root_) spans_->push_back({begin, out_->size()});
        return f;
      }
    }
    return Flow::kNormal;
  }

  std::string capture(const Body& body, const FramePtr& frame) {
    std::string text;
    std::string* saved = out_;
    out_ = &text;
    try {
      exec(body, frame);
    } catch (...) {
      out_ = saved;
      throw;
    }
    out_ = saved;
    return text;
  }

  // `filter` is a chain of kFilter nodes whose innermost operand is null: apply to `input`.
  Value apply_filters(const Expr& filter, const Value& input, const FramePtr& frame) {
    Value operand = filter.args[0] ? apply_filters(*filter.args[0], input, frame) : input;
    CallArgs args = eval_args(filter, frame, 1);
    return apply_filter(filter.name, operand, args);
  }

  void assign(const Expr& target, const Value& value, const FramePtr& frame) {
    if (target.kind == Expr::Kind::kName) {
      frame->vars[target.name] = value;
    } else if (target.kind == Expr::Kind::kTuple) {
      List items = iterate(value);
      if (items.size() != target.args.size())
        fail(items.size() < target.args.size()
                 ? "ValueError: not enough values to unpack (expected " +
                       std::to_string(target.args.size()) + ", got " +
                       std::to_string(items.size()) + ")"
                 : "ValueError: too many values to unpack (expected " +
                       std::to_string(target.args.size()) + ")");
      for (size_t i = 0; i < items.size(); ++i) assign(*target.args[i], items[i], frame);
    } else {  // ns.attr
      Value ns = lookup(target.args[0]->name, frame);
      if (ns.kind != Value::Kind::kNamespace)
        fail("TemplateRuntimeError: cannot assign attribute on non-namespace object");
      ns.dict->set(Value::string(target.name), value);
    }
  }

  Flow exec_for(const Stmt& s, const FramePtr& frame) {
    List all = iterate(eval(*s.expr, frame));
    List items;
    if (s.filter) {
      for (const Value& v : all) {
        auto probe = std::make_shared<Frame>(Frame{{}, frame});
        assign(*s.target, v, probe);
        if (truthy(eval(*s.filter, probe))) items.push_back(v);
      }
    } else {
      items = std::move(all);
    }
    if (items.empty()) return exec(s.else_body, std::make_shared<Frame>(Frame{{}, frame}));
    const int64_t n = int64_t(items.size());
    for (int64_t i = 0; i < n; ++i) {
      auto iteration = std::make_shared<Frame>(Frame{{}, frame});
      Value loop = Value::make_namespace();
      Dict& d = *loop.dict;
      d.set(Value::string("index0"), Value::integer(i));
      d.set(Value::string("index"), Value::integer(i + 1));
      d.set(Value::string("revindex0"), Value::integer(n - i - 1));
      d.set(Value::string("revindex"), Value::integer(n - i));
      d.set(Value::string("first"), Value::boolean(i == 0));
      d.set(Value::string("last"), Value::boolean(i == n - 1));
      d.set(Value::string("length"), Value::integer(n));
      d.set(Value::string("depth"), Value::integer(1));
      d.set(Value::string("depth0"), Value::integer(0));
      d.set(Value::string("previtem"),
            i > 0 ? items[size_t(i - 1)] : Value::undefined("there is no previous item"));
      d.set(Value::string("nextitem"),
            i + 1 < n ? items[size_t(i + 1)] : Value::undefined("there is no next item"));
      d.set(Value::string("cycle"), Value::callable([i](CallArgs& a) {
              if (a.args.empty()) fail("TypeError: no items for cycling given");
              return a.args[size_t(i) % a.args.size()];
            }));
      iteration->vars["loop"] = loop;
      assign(*s.target, items[size_t(i)], iteration);
      if (exec(s.body, iteration) == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  Value make_macro(const Stmt& s, const FramePtr& frame, const Value*) {
    const Stmt* def = &s;
    return Value::callable([this, def, frame](CallArgs& a) {
      auto scope = std::make_shared<Frame>(Frame{{}, frame});
      size_t next = 0;
      Value kwargs = Value::make_dict();
      std::vector<bool> bound(def->params.size(), false);
      for (const auto& [key, value] : a.kwargs) {
        bool matched = false;
        for (size_t i = 0; i < def->params.size(); ++i) {
          if (def->params[i].first == key) {
            scope->vars[key] = value;
            bound[i] = matched = true;
          }
        }
        if (!matched && key != "caller") kwargs.dict->set(Value::string(key), value);
        if (key == "caller") scope->vars["caller"] = value;
      }
      List varargs;
      for (const Value& v : a.args) {
        while (next < bound.size() && bound[next]) ++next;
        if (next < bound.size()) {
          scope->vars[def->params[next].first] = v;
          bound[next++] = true;
        } else {
          varargs.push_back(v);
        }
      }
      for (size_t i = 0; i < def->params.size(); ++i) {
        if (bound[i]) continue;
        const auto& [param, fallback] = def->params[i];
        scope->vars[param] = fallback
                                 ? eval(*fallback, scope)
                                 : Value::undefined("parameter '" + param + "' was not provided");
      }
      scope->vars["varargs"] = Value::make_tuple(std::move(varargs));
      scope->vars["kwargs"] = kwargs;
      return Value::string(capture(def->body, scope));
    });
  }

  Value lookup(const std::string& name, const FramePtr& frame) {
    for (Frame* f = frame.get(); f; f = f->parent.get()) {
      auto it = f->vars.find(name);
      if (it != f->vars.end()) return it->second;
    }
    return global(name);
  }

  CallArgs eval_args(const Expr& e, const FramePtr& frame, size_t from) {
    CallArgs args;
    for (size_t i = from; i < e.args.size(); ++i) args.args.push_back(eval(*e.args[i], frame));
    for (const auto& [k, v] : e.kwargs) args.kwargs.emplace_back(k, eval(*v, frame));
    return args;
  }

  Value call(const Expr& e, const FramePtr& frame, const Value* caller) {
    Value callee = eval(*e.args[0], frame);
    CallArgs args = eval_args(e, frame, 1);
    if (caller) args.kwargs.emplace_back("caller", *caller);
    require_defined(callee);
    if (callee.kind != Value::Kind::kCallable)
      fail("TypeError: '" + type_name(callee) + "' object is not callable");
    return (*callee.fn)(args);
  }

  Value eval(const Expr& e, const FramePtr& frame) {
    using K = Expr::Kind;
    switch (e.kind) {
      case K::kLiteral:
        return e.value;
      case K::kName:
        return lookup(e.name, frame);
      case K::kList:
      case K::kTuple: {
        List items;
        for (const auto& a : e.args) items.push_back(eval(*a, frame));
        return e.kind == K::kList ? Value::make_list(std::move(items))
                                  : Value::make_tuple(std::move(items));
      }
      case K::kDict: {
        Value d = Value::make_dict();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2)
          d.dict->set(eval(*e.args[i], frame), eval(*e.args[i + 1], frame));
        return d;
      }
      case K::kGetattr:
        return get_attribute(eval(*e.args[0], frame), e.name);
      case K::kGetitem:
        return get_item(eval(*e.args[0], frame), eval(*e.args[1], frame));
      case K::kSlice: {
        auto part = [&](size_t i) { return e.args[i] ? eval(*e.args[i], frame) : Value::none(); };
        return slice(eval(*e.args[0], frame), part(1), part(2), part(3));
      }
      case K::kCall:
        return call(e, frame, nullptr);
      case K::kFilter: {
        Value input = eval(*e.args[0], frame);
        CallArgs args = eval_args(e, frame, 1);
        return apply_filter(e.name, input, args);
      }
      case K::kTest: {
        Value input = eval(*e.args[0], frame);
        CallArgs args = eval_args(e, frame, 1);
        return Value::boolean(apply_test(e.name, input, args) != e.negated);
      }
      case K::kUnary:
        return unary_op(e.name, eval(*e.args[0], frame));
      case K::kBinary: {
        Value left = eval(*e.args[0], frame);
        if (e.name == "and") return truthy(left) ? eval(*e.args[1], frame) : left;
        if (e.name == "or") return truthy(left) ? left : eval(*e.args[1], frame);
        return binary_op(e.name, left, eval(*e.args[1], frame));
      }
      case K::kCompare: {
        Value left = eval(*e.args[0], frame);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.args[i + 1], frame);
          const std::string& op = e.ops[i];
          bool ok = op == "=="   ? equal(left, right)
                    : op == "!=" ? !equal(left, right)
                    : op == "<"  ? less(left, right)
                    : op == "<=" ? !less(right, left)
                    : op == ">"  ? less(right, left)
                    : op == ">=" ? !less(left, right)
                    : op == "in" ? contains(right, left)
                                 : !contains(right, left);
          if (!ok) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case K::kCondition:
        if (truthy(eval(*e.args[0], frame))) return eval(*e.args[1], frame);
        return e.args[2]
                   ? eval(*e.args[2], frame)
                   : Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                                      " evaluated to false and no else section was defined.");
    }
    return Value();
  }

  std::string* out_;
  std::string* const root_;
  std::vector<Span>* spans_;
  int* line_;
};

}  // namespace

Rendered render_body(const Body& body, const Value& variables, int* line) {
  Rendered result;
  auto frame = std::make_shared<Frame>();
  if (variables.is_mapping())
    for (const auto& [k, v] : variables.dict->items) frame->vars[k.s] = v;
  Renderer(&result.text, &result.generation, line).exec(body, frame);
  return result;
}

}  // namespace tune::tmpl
