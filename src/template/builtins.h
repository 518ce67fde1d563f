// Jinja's built-in filters, tests and globals (plus transformers' tojson, raise_exception and
// strftime_now), attribute and item access with the sandbox's rules, Python's str/dict/list
// methods, and the arithmetic operators.
#pragma once

#include <string>

#include "template/value.h"

namespace tune::tmpl {

bool has_filter(const std::string& name);
bool has_test(const std::string& name);
Value apply_filter(const std::string& name, const Value& input, const CallArgs& args);
bool apply_test(const std::string& name, const Value& input, const CallArgs& args);

// obj.name and obj[key] as Jinja's sandbox resolves them: dict keys, then methods (mutating
// ones are unsafe in the immutable sandbox); missing → an undefined that explains why.
Value get_attribute(const Value& obj, const std::string& name);
Value get_item(const Value& obj, const Value& key);
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
std::string object_type_repr(const Value& v);

// + - * / // % ** ~ with Python's rules; `in` membership.
Value binary_op(const std::string& op, const Value& a, const Value& b);
Value unary_op(const std::string& op, const Value& a);
bool contains(const Value& container, const Value& item);

// range, dict, namespace, raise_exception, strftime_now.
Value global(const std::string& name);

}  // namespace tune::tmpl
