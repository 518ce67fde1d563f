// Arithmetic, concatenation and membership with Python's semantics (int/float promotion,
// floor division and modulo signs, str * int, list + list).
#include <cmath>

#include "template/builtins.h"
#include "template/pystring.h"

namespace tune::tmpl {
namespace {

[[noreturn]] void unsupported(const std::string& op, const Value& a, const Value& b) {
  require_defined(a);
  require_defined(b);
  fail("TypeError: unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" +
       type_name(b) + "'");
}

bool both_int(const Value& a, const Value& b) {
  return a.is_number() && b.is_number() && a.kind != Value::Kind::kFloat &&
         b.kind != Value::Kind::kFloat;
}

Value repeat(const Value& seq, int64_t n) {
  if (seq.is_string()) {
    std::string out;
    for (int64_t k = 0; k < n; ++k) out += seq.s;
    return Value::string(std::move(out));
  }
  List out;
  for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq.list->begin(), seq.list->end());
  return seq.kind == Value::Kind::kTuple ? Value::make_tuple(std::move(out))
                                         : Value::make_list(std::move(out));
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

Value binary_op(const std::string& op, const Value& a, const Value& b) {
  using K = Value::Kind;
  if (op == "~") return Value::string(str(a) + str(b));
  require_defined(a);
  require_defined(b);
  if (op == "+") {
    if (both_int(a, b)) return Value::integer(a.as_int() + b.as_int());
    if (a.is_number() && b.is_number()) return Value::real(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) return Value::string(a.s + b.s);
    if (a.kind == b.kind && a.is_sequence()) {
      List out = *a.list;
      out.insert(out.end(), b.list->begin(), b.list->end());
      return a.kind == K::kTuple ? Value::make_tuple(std::move(out))
                                 : Value::make_list(std::move(out));
    }
    if (a.is_string())
      fail("TypeError: can only concatenate str (not \"" + type_name(b) + "\") to str");
    if (a.kind == K::kList)
      fail("TypeError: can only concatenate list (not \"" + type_name(b) + "\") to list");
    unsupported("+", a, b);
  }
  if (op == "-") {
    if (both_int(a, b)) return Value::integer(a.as_int() - b.as_int());
    if (a.is_number() && b.is_number()) return Value::real(a.as_double() - b.as_double());
    unsupported("-", a, b);
  }
  if (op == "*") {
    if (both_int(a, b)) return Value::integer(a.as_int() * b.as_int());
    if (a.is_number() && b.is_number()) return Value::real(a.as_double() * b.as_double());
    if ((a.is_string() || a.is_sequence()) && b.is_number() && b.kind != K::kFloat)
      return repeat(a, b.as_int());
    if ((b.is_string() || b.is_sequence()) && a.is_number() && a.kind != K::kFloat)
      return repeat(b, a.as_int());
    unsupported("*", a, b);
  }
  if (op == "/") {
    if (!(a.is_number() && b.is_number())) unsupported("/", a, b);
    if (b.as_double() == 0) fail("ZeroDivisionError: division by zero");
    return Value::real(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (!(a.is_number() && b.is_number())) {
      if (op == "%" && a.is_string())
        fail("TypeError: printf-style string formatting is not supported");
      unsupported(op, a, b);
    }
    if (both_int(a, b)) {
      if (b.as_int() == 0)
        fail(op == "//" ? "ZeroDivisionError: integer division or modulo by zero"
                        : "ZeroDivisionError: integer modulo by zero");
      int64_t q = floor_div(a.as_int(), b.as_int());
      return op == "//" ? Value::integer(q) : Value::integer(a.as_int() - q * b.as_int());
    }
    double x = a.as_double(), y = b.as_double();
    if (y == 0)
      fail(op == "//" ? "ZeroDivisionError: float floor division by zero"
                      : "ZeroDivisionError: float modulo");
    // CPython's float_divmod.
    double m = std::fmod(x, y);
    double div = (x - m) / y;
    if (m != 0 && ((y < 0) != (m < 0))) {
      m += y;
      div -= 1.0;
    }
    if (op == "%") return Value::real(m != 0 ? m : std::copysign(0.0, y));
    double fl = std::floor(div);
    if (div - fl > 0.5) fl += 1.0;
    return Value::real(fl);
  }
  if (op == "**") {
    if (both_int(a, b) && b.as_int() >= 0) {
      int64_t r = 1, base = a.as_int();
      for (int64_t e = b.as_int(); e > 0; --e) r *= base;
      return Value::integer(r);
    }
    if (a.is_number() && b.is_number()) return Value::real(std::pow(a.as_double(), b.as_double()));
    unsupported("** or pow()", a, b);
  }
  fail("unknown operator " + op);
}

Value unary_op(const std::string& op, const Value& a) {
  if (op == "not") return Value::boolean(!truthy(a));
  require_defined(a);
  if (!a.is_number())
    fail("TypeError: bad operand type for unary " + op + ": '" + type_name(a) + "'");
  if (op == "-")
    return a.kind == Value::Kind::kFloat ? Value::real(-a.f) : Value::integer(-a.as_int());
  return a.kind == Value::Kind::kFloat ? a : Value::integer(a.as_int());
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case Value::Kind::kString:
      if (!item.is_string()) {
        require_defined(item);
        fail("TypeError: 'in <string>' requires string as left operand, not " + type_name(item));
      }
      return container.s.find(item.s) != std::string::npos;
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      for (const Value& v : *container.list)
        if (equal(v, item)) return true;
      return false;
    case Value::Kind::kDict:
      return container.dict->find(item) != nullptr;
    case Value::Kind::kUndefined:
      return false;
    default:
      fail("TypeError: argument of type '" + type_name(container) + "' is not iterable");
  }
}

}  // namespace tune::tmpl
