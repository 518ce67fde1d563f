// Jinja's built-in tests (`x is defined`, `x is equalto 3`, ...) with Jinja 3.1's semantics:
// bool counts as a number but not an integer; undefined is iterable and a sequence.
#include <map>

#include "template/builtins.h"
#include "template/pystring.h"

namespace tune::tmpl {
namespace {

using Test = bool (*)(const Value&, const CallArgs&);
using K = Value::Kind;

const Value& arg(const CallArgs& a, const std::string& test) {
  const Value* v = a.get(0, "other");
  if (!v) v = a.get(0, "value");
  if (!v) fail("TypeError: test '" + test + "' takes an argument");
  return *v;
}

bool t_defined(const Value& v, const CallArgs&) {
  return !v.is_undefined();
}
bool t_undefined(const Value& v, const CallArgs&) {
  return v.is_undefined();
}
bool t_none(const Value& v, const CallArgs&) {
  return v.is_none();
}
bool t_boolean(const Value& v, const CallArgs&) {
  return v.kind == K::kBool;
}
bool t_true(const Value& v, const CallArgs&) {
  return v.kind == K::kBool && v.b;
}
bool t_false(const Value& v, const CallArgs&) {
  return v.kind == K::kBool && !v.b;
}
bool t_integer(const Value& v, const CallArgs&) {
  return v.kind == K::kInt;
}
bool t_float(const Value& v, const CallArgs&) {
  return v.kind == K::kFloat;
}
bool t_number(const Value& v, const CallArgs&) {
  return v.is_number();
}
bool t_string(const Value& v, const CallArgs&) {
  return v.is_string();
}
bool t_mapping(const Value& v, const CallArgs&) {
  return v.is_mapping();
}
bool t_iterable(const Value& v, const CallArgs&) {
  return v.is_string() || v.is_sequence() || v.is_mapping() || v.is_undefined();
}
bool t_sequence(const Value& v, const CallArgs& a) {
  return t_iterable(v, a);
}
bool t_callable(const Value& v, const CallArgs&) {
  return v.kind == K::kCallable;
}
bool t_eq(const Value& v, const CallArgs& a) {
  return equal(v, arg(a, "eq"));
}
bool t_ne(const Value& v, const CallArgs& a) {
  return !equal(v, arg(a, "ne"));
}
bool t_lt(const Value& v, const CallArgs& a) {
  return less(v, arg(a, "lt"));
}
bool t_le(const Value& v, const CallArgs& a) {
  return !less(arg(a, "le"), v);
}
bool t_gt(const Value& v, const CallArgs& a) {
  return less(arg(a, "gt"), v);
}
bool t_ge(const Value& v, const CallArgs& a) {
  return !less(v, arg(a, "ge"));
}
bool t_in(const Value& v, const CallArgs& a) {
  return contains(arg(a, "in"), v);
}
bool t_odd(const Value& v, const CallArgs&) {
  require_defined(v);
  return binary_op("%", v, Value::integer(2)).as_double() == 1;
}
bool t_even(const Value& v, const CallArgs&) {
  require_defined(v);
  return binary_op("%", v, Value::integer(2)).as_double() == 0;
}
bool t_divisibleby(const Value& v, const CallArgs& a) {
  return binary_op("%", v, arg(a, "divisibleby")).as_double() == 0;
}
bool t_lower(const Value& v, const CallArgs&) {
  return py::lower(str(v)) == str(v);
}
bool t_upper(const Value& v, const CallArgs&) {
  return py::upper(str(v)) == str(v);
}
bool t_escaped(const Value&, const CallArgs&) {
  return false;
}

// `is sameas`: identity. Containers are the same object when they share storage; None, True
// and False are singletons; small ints and equal strings are treated as identical as CPython
// interns them in practice.
bool t_sameas(const Value& v, const CallArgs& a) {
  const Value& o = arg(a, "sameas");
  if (v.kind != o.kind) return false;
  switch (v.kind) {
    case K::kList:
    case K::kTuple:
      return v.list == o.list;
    case K::kDict:
    case K::kNamespace:
      return v.dict == o.dict;
    case K::kCallable:
      return v.fn == o.fn;
    default:
      return equal(v, o);
  }
}

const std::map<std::string, Test>& tests() {
  static const std::map<std::string, Test> table = {
      {"defined", t_defined},
      {"undefined", t_undefined},
      {"none", t_none},
      {"boolean", t_boolean},
      {"true", t_true},
      {"false", t_false},
      {"integer", t_integer},
      {"float", t_float},
      {"number", t_number},
      {"string", t_string},
      {"mapping", t_mapping},
      {"iterable", t_iterable},
      {"sequence", t_sequence},
      {"callable", t_callable},
      {"sameas", t_sameas},
      {"escaped", t_escaped},
      {"in", t_in},
      {"odd", t_odd},
      {"even", t_even},
      {"divisibleby", t_divisibleby},
      {"lower", t_lower},
      {"upper", t_upper},
      {"eq", t_eq},
      {"equalto", t_eq},
      {"==", t_eq},
      {"ne", t_ne},
      {"!=", t_ne},
      {"lt", t_lt},
      {"lessthan", t_lt},
      {"<", t_lt},
      {"le", t_le},
      {"<=", t_le},
      {"gt", t_gt},
      {"greaterthan", t_gt},
      {">", t_gt},
      {"ge", t_ge},
      {">=", t_ge},
  };
  return table;
}

}  // namespace

bool has_test(const std::string& name) {
  return tests().count(name) > 0;
}

bool apply_test(const std::string& name, const Value& input, const CallArgs& args) {
  auto it = tests().find(name);
  if (it == tests().end()) fail("TemplateRuntimeError: No test named '" + name + "'.");
  return it->second(input, args);
}

}  // namespace tune::tmpl
