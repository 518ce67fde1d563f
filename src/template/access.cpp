// obj.name, obj[key] and obj[a:b:c] as Jinja's ImmutableSandboxedEnvironment resolves them, and
// the Python methods templates call on str, dict and list values.
#include <algorithm>
#include <optional>
#include <set>

#include "template/builtins.h"
#include "template/pystring.h"

namespace tune::tmpl {
namespace {

std::optional<std::string> opt_string(const CallArgs& a, size_t i, const std::string& name) {
  const Value* v = a.get(i, name);
  if (!v || v->is_none()) return std::nullopt;
  if (!v->is_string()) fail("TypeError: expected a string argument, got " + type_name(*v));
  return v->s;
}

int64_t opt_int(const CallArgs& a, size_t i, const std::string& name, int64_t fallback) {
  const Value* v = a.get(i, name);
  if (!v || v->is_none()) return fallback;
  if (!v->is_number() || v->kind == Value::Kind::kFloat)
    fail("TypeError: '" + type_name(*v) + "' object cannot be interpreted as an integer");
  return v->as_int();
}

const std::string& arg_string(const CallArgs& a, size_t i, const std::string& method) {
  const Value* v = a.get(i, "");
  if (!v) fail("TypeError: " + method + "() takes at least " + std::to_string(i + 1) + " argument");
  if (!v->is_string()) {
    require_defined(*v);
    fail("TypeError: " + method + "() argument must be str, not " + type_name(*v));
  }
  return v->s;
}

Value strings(const std::vector<std::string>& parts) {
  List out;
  for (const auto& p : parts) out.push_back(Value::string(p));
  return Value::make_list(std::move(out));
}

// startswith/endswith take a string or a tuple of strings.
bool affix(const std::string& s, const Value& what, bool prefix) {
  auto test = [&](const std::string& x) {
    if (x.size() > s.size()) return false;
    return prefix ? s.compare(0, x.size(), x) == 0
                  : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (what.is_string()) return test(what.s);
  if (what.kind == Value::Kind::kTuple) {
    for (const Value& v : *what.list)
      if (v.is_string() && test(v.s)) return true;
    return false;
  }
  require_defined(what);
  fail(std::string("TypeError: ") + (prefix ? "startswith" : "endswith") +
       " first arg must be str or a tuple of str, not " + type_name(what));
}

Value string_method(const std::string& s, const std::string& name) {
  auto bind = [](Function f) { return Value::callable(std::move(f)); };
  if (name == "strip" || name == "lstrip" || name == "rstrip")
    return bind([s, name](CallArgs& a) {
      return Value::string(
          py::strip(s, opt_string(a, 0, "chars"), name != "rstrip", name != "lstrip"));
    });
  if (name == "split" || name == "rsplit")
    return bind([s, name](CallArgs& a) {
      auto sep = opt_string(a, 0, "sep");
      if (sep && sep->empty()) fail("ValueError: empty separator");
      int64_t maxsplit = opt_int(a, 1, "maxsplit", -1);
      return strings(name == "split" ? py::split(s, sep, maxsplit) : py::rsplit(s, sep, maxsplit));
    });
  if (name == "splitlines")
    return bind([s](CallArgs&) {
      auto parts = py::split(s, std::string("\n"), -1);
      if (!parts.empty() && parts.back().empty()) parts.pop_back();
      return strings(parts);
    });
  if (name == "startswith" || name == "endswith")
    return bind([s, name](CallArgs& a) {
      const Value* what = a.get(0, "");
      if (!what) fail("TypeError: " + name + "() takes at least 1 argument (0 given)");
      return Value::boolean(affix(s, *what, name == "startswith"));
    });
  if (name == "replace")
    return bind([s](CallArgs& a) {
      return Value::string(py::replace(s, arg_string(a, 0, "replace"), arg_string(a, 1, "replace"),
                                       opt_int(a, 2, "count", -1)));
    });
  if (name == "upper") return bind([s](CallArgs&) { return Value::string(py::upper(s)); });
  if (name == "lower") return bind([s](CallArgs&) { return Value::string(py::lower(s)); });
  if (name == "title") return bind([s](CallArgs&) { return Value::string(py::title(s)); });
  if (name == "capitalize")
    return bind([s](CallArgs&) { return Value::string(py::capitalize(s)); });
  if (name == "find")
    return bind([s](CallArgs& a) { return Value::integer(py::find(s, arg_string(a, 0, "find"))); });
  if (name == "index")
    return bind([s](CallArgs& a) {
      int64_t at = py::find(s, arg_string(a, 0, "index"));
      if (at < 0) fail("ValueError: substring not found");
      return Value::integer(at);
    });
  if (name == "count")
    return bind(
        [s](CallArgs& a) { return Value::integer(py::count(s, arg_string(a, 0, "count"))); });
  if (name == "join")
    return bind([s](CallArgs& a) {
      const Value* items = a.get(0, "");
      if (!items) fail("TypeError: join() takes exactly one argument (0 given)");
      std::string out;
      bool first = true;
      for (const Value& v : iterate(*items)) {
        if (!v.is_string())
          fail("TypeError: sequence item: expected str instance, " + type_name(v) + " found");
        if (!first) out += s;
        first = false;
        out += v.s;
      }
      return Value::string(std::move(out));
    });
  auto all_of = [s](auto pred) {
    auto cps = py::decode(s);
    return !cps.empty() && std::all_of(cps.begin(), cps.end(), pred);
  };
  if (name == "isdigit")
    return bind([all_of](CallArgs&) {
      return Value::boolean(all_of([](char32_t c) { return c >= '0' && c <= '9'; }));
    });
  if (name == "isspace")
    return bind([all_of](CallArgs&) { return Value::boolean(all_of(py::is_space)); });
  if (name == "isalpha")
    return bind([all_of](CallArgs&) {
      return Value::boolean(all_of([](char32_t c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }));
    });
  if (name == "isupper")
    return bind([s](CallArgs&) { return Value::boolean(py::upper(s) == s && py::lower(s) != s); });
  if (name == "islower")
    return bind([s](CallArgs&) { return Value::boolean(py::lower(s) == s && py::upper(s) != s); });
  return Value::undefined("'str object' has no attribute '" + name + "'");
}

const std::set<std::string> kUnsafeDict = {"clear", "pop", "popitem", "setdefault", "update"};
const std::set<std::string> kUnsafeList = {"append", "clear",  "extend",  "insert",
                                           "pop",    "remove", "reverse", "sort"};

Value unsafe(const std::string& attr, const std::string& type) {
  return Value::undefined("SecurityError: access to attribute '" + attr + "' of '" + type +
                          "' object is unsafe.");
}

std::optional<Value> dict_method(const Value& d, const std::string& name) {
  auto bind = [](Function f) { return Value::callable(std::move(f)); };
  if (kUnsafeDict.count(name)) return unsafe(name, "dict");
  if (name == "get")
    return bind([d](CallArgs& a) {
      const Value* key = a.get(0, "");
      if (!key) fail("TypeError: get expected at least 1 argument, got 0");
      Value* found = d.dict->find(*key);
      return found ? *found : a.get_or(1, "", Value::none());
    });
  if (name == "keys" || name == "values" || name == "items")
    return bind([d, name](CallArgs&) {
      List out;
      for (auto& [k, v] : d.dict->items)
        out.push_back(name == "keys" ? k : name == "values" ? v : Value::make_tuple({k, v}));
      return Value::make_list(std::move(out));
    });
  if (name == "copy")
    return bind([d](CallArgs&) {
      Value c = Value::make_dict();
      c.dict->items = d.dict->items;
      return c;
    });
  return std::nullopt;
}

std::optional<Value> list_method(const Value& l, const std::string& name) {
  if (kUnsafeList.count(name)) return unsafe(name, type_name(l));
  if (name == "index")
    return Value::callable([l](CallArgs& a) {
      const Value* x = a.get(0, "");
      for (size_t i = 0; x && i < l.list->size(); ++i)
        if (equal((*l.list)[i], *x)) return Value::integer(int64_t(i));
      fail("ValueError: " + (x ? repr(*x) : "") + " is not in list");
    });
  if (name == "count")
    return Value::callable([l](CallArgs& a) {
      const Value* x = a.get(0, "");
      int64_t n = 0;
      for (const Value& v : *l.list) n += x && equal(v, *x);
      return Value::integer(n);
    });
  return std::nullopt;
}

Value no_attribute(const Value& obj, const Value& key) {
  if (key.is_string())
    return Value::undefined("'" + object_type_repr(obj) + "' has no attribute '" + key.s + "'");
  return Value::undefined(object_type_repr(obj) + " has no element " + repr(key));
}

int64_t normalize_index(int64_t i, size_t n) {
  return i < 0 ? i + int64_t(n) : i;
}

}  // namespace

std::string object_type_repr(const Value& v) {
  if (v.is_none()) return "None";
  if (v.is_undefined()) return "Undefined";
  return type_name(v) + " object";
}

Value get_attribute(const Value& obj, const std::string& name) {
  require_defined(obj);
  if (!name.empty() && name[0] == '_')
    return Value::undefined("SecurityError: access to attribute '" + name + "' of '" +
                            type_name(obj) + "' object is unsafe.");
  switch (obj.kind) {
    case Value::Kind::kDict: {
      if (auto m = dict_method(obj, name)) return *m;
      if (Value* v = obj.dict->find(name)) return *v;
      break;
    }
    case Value::Kind::kNamespace:
      if (Value* v = obj.dict->find(name)) return *v;
      break;
    case Value::Kind::kString:
      return string_method(obj.s, name);
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      if (auto m = list_method(obj, name)) return *m;
      break;
    default:
      break;
  }
  return no_attribute(obj, Value::string(name));
}

Value get_item(const Value& obj, const Value& key) {
  require_defined(obj);
  switch (obj.kind) {
    case Value::Kind::kDict:
      if (Value* v = obj.dict->find(key)) return *v;
      break;
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      if (key.is_number() && key.kind != Value::Kind::kFloat) {
        int64_t i = normalize_index(key.as_int(), obj.list->size());
        if (i >= 0 && i < int64_t(obj.list->size())) return (*obj.list)[size_t(i)];
        return no_attribute(obj, key);
      }
      break;
    case Value::Kind::kString:
      if (key.is_number() && key.kind != Value::Kind::kFloat) {
        auto cps = py::decode(obj.s);
        int64_t i = normalize_index(key.as_int(), cps.size());
        if (i >= 0 && i < int64_t(cps.size())) {
          std::string one;
          py::append_utf8(one, cps[size_t(i)]);
          return Value::string(std::move(one));
        }
        return no_attribute(obj, key);
      }
      break;
    default:
      break;
  }
  if (key.is_string()) return get_attribute(obj, key.s);
  return no_attribute(obj, key);
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step_v) {
  require_defined(obj);
  size_t n = 0;
  std::vector<char32_t> cps;
  if (obj.is_string()) {
    cps = py::decode(obj.s);
    n = cps.size();
  } else if (obj.is_sequence()) {
    n = obj.list->size();
  } else {
    fail("TypeError: '" + type_name(obj) + "' object is not subscriptable");
  }
  auto as_index = [](const Value& v) -> std::optional<int64_t> {
    if (v.is_none() || v.is_undefined()) return std::nullopt;
    if (!v.is_number() || v.kind == Value::Kind::kFloat)
      fail("TypeError: slice indices must be integers or None");
    return v.as_int();
  };
  int64_t step = as_index(step_v).value_or(1);
  if (step == 0) fail("ValueError: slice step cannot be zero");
  int64_t len = int64_t(n);
  auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t i = *v < 0 ? *v + len : *v;
    if (step > 0) return std::clamp<int64_t>(i, 0, len);
    return std::clamp<int64_t>(i, -1, len - 1);
  };
  int64_t b = clamp(as_index(start), step > 0 ? 0 : len - 1);
  int64_t e = clamp(as_index(stop), step > 0 ? len : -1);
  std::vector<size_t> picks;
  for (int64_t i = b; step > 0 ? i < e : i > e; i += step) picks.push_back(size_t(i));
  if (obj.is_string()) {
    std::string out;
    for (size_t i : picks) py::append_utf8(out, cps[i]);
    return Value::string(std::move(out));
  }
  List out;
  for (size_t i : picks) out.push_back((*obj.list)[i]);
  return obj.kind == Value::Kind::kTuple ? Value::make_tuple(std::move(out))
                                         : Value::make_list(std::move(out));
}

}  // namespace tune::tmpl
