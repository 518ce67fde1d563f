// The template globals: Jinja's range, dict and namespace, and transformers' raise_exception
// and strftime_now.
#include <ctime>

#include "template/builtins.h"

namespace tune::tmpl {
namespace {

constexpr int64_t kMaxRange = 100000;  // the sandbox's MAX_RANGE

Value range(CallArgs& a) {
  for (const Value& v : a.args)
    if (!v.is_number() || v.kind == Value::Kind::kFloat) {
      require_defined(v);
      fail("TypeError: '" + type_name(v) + "' object cannot be interpreted as an integer");
    }
  int64_t start = 0, stop = 0, step = 1;
  if (a.args.size() == 1)
    stop = a.args[0].as_int();
  else if (a.args.size() >= 2)
    start = a.args[0].as_int(), stop = a.args[1].as_int();
  if (a.args.size() == 3) step = a.args[2].as_int();
  if (a.args.empty() || a.args.size() > 3) fail("TypeError: range expected 1 to 3 arguments");
  if (step == 0) fail("ValueError: range() arg 3 must not be zero");
  List out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (int64_t(out.size()) >= kMaxRange)
      fail(
          "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE "
          "(100000).");
    out.push_back(Value::integer(i));
  }
  return Value::make_list(std::move(out));
}

Value fill(Value target, CallArgs& a) {
  for (const Value& v : a.args) {
    if (!v.is_mapping()) fail("TypeError: expected a mapping, got " + type_name(v));
    for (auto& [k, x] : v.dict->items) target.dict->set(k, x);
  }
  for (auto& [k, x] : a.kwargs) target.dict->set(Value::string(k), x);
  return target;
}

Value strftime_now(CallArgs& a) {
  std::string format = str(a.get_or(0, "format", Value::string("")));
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buf[512];
  size_t n = std::strftime(buf, sizeof buf, format.c_str(), &local);
  return Value::string(std::string(buf, n));
}

}  // namespace

Value global(const std::string& name) {
  if (name == "range") return Value::callable(range);
  if (name == "dict")
    return Value::callable([](CallArgs& a) { return fill(Value::make_dict(), a); });
  if (name == "namespace")
    return Value::callable([](CallArgs& a) { return fill(Value::make_namespace(), a); });
  if (name == "raise_exception")
    return Value::callable([](CallArgs& a) -> Value {
      throw RenderError{str(a.get_or(0, "message", Value::string(""))), true};
    });
  if (name == "strftime_now") return Value::callable(strftime_now);
  return Value::undefined("'" + name + "' is undefined");
}

}  // namespace tune::tmpl
