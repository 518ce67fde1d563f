// The value every Jinja expression evaluates to, with Python's semantics: templates are written
// against Python objects (transformers passes the JSON-decoded conversation), so truthiness,
// equality, ordering, str() and repr() follow CPython, and dicts keep insertion order.
// Lists, dicts and namespaces are shared by reference, as Python objects are.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace tune::tmpl {

struct Value;
using List = std::vector<Value>;
struct Dict;
struct CallArgs;
using Function = std::function<Value(CallArgs&)>;

struct Value {
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kTuple,
    kDict,
    kNamespace,
    kCallable
  };
  Kind kind = Kind::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0.0;
  std::string s;                 // a string's bytes; an undefined's message when it is used
  std::shared_ptr<List> list;    // list and tuple
  std::shared_ptr<Dict> dict;    // dict and namespace (the loop object is a namespace)
  std::shared_ptr<Function> fn;  // callable (macros, globals, bound methods)

  static Value undefined(std::string message) {
    Value v;
    v.s = std::move(message);
    return v;
  }
  static Value none() { return with_kind(Kind::kNone); }
  static Value boolean(bool x) {
    Value v = with_kind(Kind::kBool);
    v.b = x;
    return v;
  }
  static Value integer(int64_t x) {
    Value v = with_kind(Kind::kInt);
    v.i = x;
    return v;
  }
  static Value real(double x) {
    Value v = with_kind(Kind::kFloat);
    v.f = x;
    return v;
  }
  static Value string(std::string x) {
    Value v = with_kind(Kind::kString);
    v.s = std::move(x);
    return v;
  }
  static Value make_list(List items = {});
  static Value make_tuple(List items);
  static Value make_dict();
  static Value make_namespace();
  static Value callable(Function f);
  static Value from_json(const nlohmann::json& j);
  static Value from_json(const nlohmann::ordered_json& j);

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_none() const { return kind == Kind::kNone; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_number() const {
    return kind == Kind::kInt || kind == Kind::kFloat || kind == Kind::kBool;
  }
  bool is_sequence() const { return kind == Kind::kList || kind == Kind::kTuple; }
  bool is_mapping() const { return kind == Kind::kDict; }
  double as_double() const {
    return kind == Kind::kFloat ? f : kind == Kind::kBool ? b : double(i);
  }
  // int value of an int or bool (Python's bool is an int).
  int64_t as_int() const { return kind == Kind::kBool ? int64_t(b) : i; }

 private:
  static Value with_kind(Kind k) {
    Value v;
    v.kind = k;
    return v;
  }
};

struct Dict {
  std::vector<std::pair<Value, Value>> items;
  Value* find(const Value& key);
  Value* find(const std::string& key);
  void set(const Value& key, Value value);
};

struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
  // Positional `index` or keyword `name`, else undefined; `fallback` when neither was passed.
  const Value* get(size_t index, const std::string& name) const;
  Value get_or(size_t index, const std::string& name, Value fallback) const;
};

// The error a Jinja template raises while rendering (UndefinedError, TypeError, ...). The
// engine adds the template name and line when it reaches the public API.
struct RenderError {
  std::string message;
  bool from_raise_exception = false;
};
[[noreturn]] void fail(std::string message);

bool truthy(const Value& v);
bool equal(const Value& a, const Value& b);
// Python's <, raising TypeError for unorderable operands.
bool less(const Value& a, const Value& b);
std::string type_name(const Value& v);  // "str", "int", "dict", ...
// Python's str() and repr(); printing an undefined gives "".
std::string str(const Value& v);
std::string repr(const Value& v);
std::string float_repr(double d);
// json.dumps(v, ensure_ascii=False, indent, separators, sort_keys) as transformers' tojson calls
// it.
struct JsonStyle {
  int indent = -1;  // < 0: None
  std::string item_separator = ", ", key_separator = ": ";
  bool sort_keys = false;
};
std::string to_json(const Value& v, const JsonStyle& style);
// Items a for loop visits: list/tuple elements, dict keys, string characters; undefined: none.
List iterate(const Value& v);
// Raises the undefined's error if v is undefined (attribute access, arithmetic, calls).
void require_defined(const Value& v);

}  // namespace tune::tmpl
