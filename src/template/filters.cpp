// Jinja's built-in filters as templates use them, with Jinja 3.1's signatures and defaults, and
// transformers' tojson (json.dumps with ensure_ascii=False, indent, separators, sort_keys).
#include <algorithm>
#include <cmath>
#include <map>

#include "template/builtins.h"
#include "template/pystring.h"

namespace tune::tmpl {
namespace {

using Filter = Value (*)(const Value&, const CallArgs&);

bool flag(const CallArgs& a, size_t i, const std::string& name, bool fallback) {
  const Value* v = a.get(i, name);
  return v ? truthy(*v) : fallback;
}

Value list_of(List items) {
  return Value::make_list(std::move(items));
}

// Attribute paths like "a.b" or "0" (as Jinja's make_attrgetter).
Value lookup_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t pos = 0;
  while (true) {
    size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    cur = get_item(cur, numeric ? Value::integer(std::stoll(part)) : Value::string(part));
    if (dot == std::string::npos) return cur;
    pos = dot + 1;
  }
}

Value sort_key(const Value& v, bool case_sensitive) {
  return !case_sensitive && v.is_string() ? Value::string(py::lower(v.s)) : v;
}

Value f_length(const Value& v, const CallArgs&) {
  switch (v.kind) {
    case Value::Kind::kString:
      return Value::integer(int64_t(py::length(v.s)));
    case Value::Kind::kList:
    case Value::Kind::kTuple:
      return Value::integer(int64_t(v.list->size()));
    case Value::Kind::kDict:
      return Value::integer(int64_t(v.dict->items.size()));
    case Value::Kind::kUndefined:
      return Value::integer(0);
    default:
      fail("TypeError: object of type '" + type_name(v) + "' has no len()");
  }
}

Value f_trim(const Value& v, const CallArgs& a) {
  const Value* chars = a.get(0, "chars");
  std::optional<std::string> c;
  if (chars && !chars->is_none()) c = str(*chars);
  return Value::string(py::strip(str(v), c, true, true));
}

Value f_tojson(const Value& v, const CallArgs& a) {
  JsonStyle st;
  bool ensure_ascii = flag(a, 0, "ensure_ascii", false);
  const Value* indent = a.get(1, "indent");
  if (indent && !indent->is_none()) {
    st.indent = int(std::max<int64_t>(0, indent->as_int()));
    st.item_separator = ",";
  }
  const Value* seps = a.get(2, "separators");
  if (seps && !seps->is_none()) {
    if (!seps->is_sequence() || seps->list->size() != 2)
      fail("ValueError: separators must be a pair");
    st.item_separator = str((*seps->list)[0]);
    st.key_separator = str((*seps->list)[1]);
  }
  st.sort_keys = flag(a, 3, "sort_keys", false);
  std::string out = to_json(v, st);
  if (!ensure_ascii) return Value::string(std::move(out));
  std::string ascii;
  for (char32_t c : py::decode(out)) {
    if (c < 0x80) {
      ascii += char(c);
      continue;
    }
    auto put = [&](unsigned u) {
      char b[16];  // u <= 0xFFFF here; GCC cannot see it
      std::snprintf(b, sizeof b, "\\u%04x", u);
      ascii += b;
    };
    if (c >= 0x10000) {
      put(0xD800 + ((c - 0x10000) >> 10));
      put(0xDC00 + ((c - 0x10000) & 0x3FF));
    } else {
      put(unsigned(c));
    }
  }
  return Value::string(std::move(ascii));
}

Value f_items(const Value& v, const CallArgs&) {
  if (v.is_undefined()) return list_of({});
  if (!v.is_mapping()) fail("TypeError: Can only get item pairs from a mapping.");
  List out;
  for (auto& [k, x] : v.dict->items) out.push_back(Value::make_tuple({k, x}));
  return list_of(std::move(out));
}

Value f_join(const Value& v, const CallArgs& a) {
  std::string sep = a.get(0, "d") ? str(*a.get(0, "d")) : "";
  const Value* attr = a.get(1, "attribute");
  std::string out;
  bool first = true;
  for (const Value& item : iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += str(attr && !attr->is_none() ? lookup_path(item, str(*attr)) : item);
  }
  return Value::string(std::move(out));
}

// Arguments after the filter/test name, for map/select/reject.
CallArgs rest(const CallArgs& a, size_t from) {
  CallArgs r;
  for (size_t i = from; i < a.args.size(); ++i) r.args.push_back(a.args[i]);
  return r;
}

Value f_map(const Value& v, const CallArgs& a) {
  List out;
  const Value* attr = nullptr;
  for (auto& [k, x] : a.kwargs)
    if (k == "attribute") attr = &x;
  if (attr) {
    Value fallback = Value::undefined("");
    bool has_default = false;
    for (auto& [k, x] : a.kwargs)
      if (k == "default") fallback = x, has_default = true;
    for (const Value& item : iterate(v)) {
      Value got = lookup_path(item, str(*attr));
      out.push_back(got.is_undefined() && has_default ? fallback : got);
    }
    return list_of(std::move(out));
  }
  if (a.args.empty()) fail("TypeError: map requires a filter argument");
  std::string filter = str(a.args[0]);
  CallArgs extra = rest(a, 1);
  for (const Value& item : iterate(v)) out.push_back(apply_filter(filter, item, extra));
  return list_of(std::move(out));
}

Value select_impl(const Value& v, const CallArgs& a, bool by_attr, bool keep) {
  List out;
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (a.args.empty()) fail("TypeError: Missing parameter for attribute name");
    attr = str(a.args[next++]);
  }
  std::string test = a.args.size() > next ? str(a.args[next]) : "";
  CallArgs extra = rest(a, next + 1);
  for (const Value& item : iterate(v)) {
    Value subject = by_attr ? lookup_path(item, attr) : item;
    bool ok = test.empty() ? truthy(subject) : apply_test(test, subject, extra);
    if (ok == keep) out.push_back(item);
  }
  return list_of(std::move(out));
}
Value f_select(const Value& v, const CallArgs& a) {
  return select_impl(v, a, false, true);
}
Value f_reject(const Value& v, const CallArgs& a) {
  return select_impl(v, a, false, false);
}
Value f_selectattr(const Value& v, const CallArgs& a) {
  return select_impl(v, a, true, true);
}
Value f_rejectattr(const Value& v, const CallArgs& a) {
  return select_impl(v, a, true, false);
}

Value f_default(const Value& v, const CallArgs& a) {
  Value fallback = a.get_or(0, "default_value", Value::string(""));
  bool boolean = flag(a, 1, "boolean", false);
  if (v.is_undefined() || (boolean && !truthy(v))) return fallback;
  return v;
}

Value f_first(const Value& v, const CallArgs&) {
  List items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value f_last(const Value& v, const CallArgs&) {
  List items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value f_list(const Value& v, const CallArgs&) {
  return list_of(iterate(v));
}
Value f_string(const Value& v, const CallArgs&) {
  return Value::string(str(v));
}
Value f_upper(const Value& v, const CallArgs&) {
  return Value::string(py::upper(str(v)));
}
Value f_lower(const Value& v, const CallArgs&) {
  return Value::string(py::lower(str(v)));
}
Value f_capitalize(const Value& v, const CallArgs&) {
  return Value::string(py::capitalize(str(v)));
}
Value f_safe(const Value& v, const CallArgs&) {
  return v;
}

// Jinja's title: capitalize each piece after runs of [-\s({\[<].
Value f_title(const Value& v, const CallArgs&) {
  std::string out;
  bool start = true;
  for (char32_t c : py::decode(str(v))) {
    bool sep = py::is_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    std::string one;
    py::append_utf8(one, c);
    out += sep ? one : start ? py::upper(one) : py::lower(one);
    start = sep;
  }
  return Value::string(std::move(out));
}

Value f_int(const Value& v, const CallArgs& a) {
  Value fallback = a.get_or(0, "default", Value::integer(0));
  int base = int(a.get_or(1, "base", Value::integer(10)).as_int());
  if (v.is_string()) {
    std::string s = py::strip(v.s, std::nullopt, true, true);
    try {
      size_t used = 0;
      long long x = std::stoll(s, &used, base);
      if (used == s.size()) return Value::integer(x);
      double d = std::stod(s, &used);
      if (used == s.size()) return Value::integer(int64_t(d));
    } catch (...) {
    }
    return fallback;
  }
  if (v.kind == Value::Kind::kFloat) return Value::integer(int64_t(v.f));
  if (v.is_number()) return Value::integer(v.as_int());
  return fallback;
}

Value f_float(const Value& v, const CallArgs& a) {
  Value fallback = a.get_or(0, "default", Value::real(0.0));
  if (v.is_number()) return Value::real(v.as_double());
  if (v.is_string()) {
    try {
      std::string s = py::strip(v.s, std::nullopt, true, true);
      size_t used = 0;
      double d = std::stod(s, &used);
      if (used == s.size()) return Value::real(d);
    } catch (...) {
    }
  }
  return fallback;
}

Value f_replace(const Value& v, const CallArgs& a) {
  const Value* old = a.get(0, "old");
  const Value* with = a.get(1, "new");
  if (!old || !with) fail("TypeError: replace() missing required arguments");
  const Value* count = a.get(2, "count");
  return Value::string(py::replace(str(v), str(*old), str(*with),
                                   count && !count->is_none() ? count->as_int() : -1));
}

Value f_unique(const Value& v, const CallArgs& a) {
  bool case_sensitive = flag(a, 0, "case_sensitive", false);
  const Value* attr = a.get(1, "attribute");
  List out, seen;
  for (const Value& item : iterate(v)) {
    Value key = sort_key(attr ? lookup_path(item, str(*attr)) : item, case_sensitive);
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equal(s, key); }))
      continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return list_of(std::move(out));
}

Value f_abs(const Value& v, const CallArgs&) {
  if (v.kind == Value::Kind::kFloat) return Value::real(std::fabs(v.f));
  if (v.is_number()) return Value::integer(std::llabs(v.as_int()));
  require_defined(v);
  fail("TypeError: bad operand type for abs(): '" + type_name(v) + "'");
}

Value f_round(const Value& v, const CallArgs& a) {
  int64_t precision = a.get_or(0, "precision", Value::integer(0)).as_int();
  std::string method = str(a.get_or(1, "method", Value::string("common")));
  double scale = std::pow(10.0, double(precision));
  double x = v.as_double() * scale;
  double r = method == "ceil"    ? std::ceil(x)
             : method == "floor" ? std::floor(x)
                                 : std::nearbyint(x);
  return Value::real(r / scale);
}

Value f_sort(const Value& v, const CallArgs& a) {
  bool reverse = flag(a, 0, "reverse", false);
  bool case_sensitive = flag(a, 1, "case_sensitive", false);
  const Value* attr = a.get(2, "attribute");
  List items = iterate(v);
  auto key = [&](const Value& x) {
    return sort_key(attr && !attr->is_none() ? lookup_path(x, str(*attr)) : x, case_sensitive);
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return reverse ? less(key(y), key(x)) : less(key(x), key(y));
  });
  return list_of(std::move(items));
}

Value f_reverse(const Value& v, const CallArgs&) {
  if (v.is_string()) {
    auto cps = py::decode(v.s);
    std::reverse(cps.begin(), cps.end());
    return Value::string(py::encode(cps));
  }
  List items = iterate(v);
  std::reverse(items.begin(), items.end());
  return list_of(std::move(items));
}

Value f_dictsort(const Value& v, const CallArgs& a) {
  bool case_sensitive = flag(a, 0, "case_sensitive", false);
  std::string by = str(a.get_or(1, "by", Value::string("key")));
  bool reverse = flag(a, 2, "reverse", false);
  List items = f_items(v, CallArgs{}).list ? *f_items(v, CallArgs{}).list : List{};
  size_t pos = by == "value" ? 1 : 0;
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    Value kx = sort_key((*x.list)[pos], case_sensitive),
          ky = sort_key((*y.list)[pos], case_sensitive);
    return reverse ? less(ky, kx) : less(kx, ky);
  });
  return list_of(std::move(items));
}

Value f_indent(const Value& v, const CallArgs& a) {
  Value width = a.get_or(0, "width", Value::integer(4));
  std::string pad = width.is_string() ? width.s : std::string(size_t(width.as_int()), ' ');
  bool first = flag(a, 1, "first", false), blank = flag(a, 2, "blank", false);
  std::string s = str(v);
  std::vector<std::string> lines = py::split(s, std::string("\n"), -1);
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i) out += "\n";
    bool indent_line =
        (i > 0 || first) && (blank || !py::strip(lines[i], std::nullopt, true, true).empty());
    if (indent_line) out += pad;
    out += lines[i];
  }
  return Value::string(std::move(out));
}

Value f_wordcount(const Value& v, const CallArgs&) {
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : py::decode(str(v))) {
    bool word =
        c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z') || c >= 0x80;
    if (word && !in_word) ++n;
    in_word = word;
  }
  return Value::integer(n);
}

Value f_batch(const Value& v, const CallArgs& a) {
  int64_t size = a.get_or(0, "linecount", Value::integer(1)).as_int();
  const Value* fill = a.get(1, "fill_with");
  List out, cur;
  for (const Value& item : iterate(v)) {
    cur.push_back(item);
    if (int64_t(cur.size()) == size) out.push_back(list_of(std::exchange(cur, {})));
  }
  if (!cur.empty()) {
    if (fill && !fill->is_none())
      while (int64_t(cur.size()) < size) cur.push_back(*fill);
    out.push_back(list_of(std::move(cur)));
  }
  return list_of(std::move(out));
}

Value minmax(const Value& v, const CallArgs& a, bool want_max) {
  bool case_sensitive = flag(a, 0, "case_sensitive", false);
  const Value* attr = a.get(1, "attribute");
  List items = iterate(v);
  if (items.empty())
    return Value::undefined(std::string("No aggregated item, sequence was empty."));
  auto key = [&](const Value& x) {
    return sort_key(attr ? lookup_path(x, str(*attr)) : x, case_sensitive);
  };
  Value best = items[0];
  for (const Value& x : items)
    if (want_max ? less(key(best), key(x)) : less(key(x), key(best))) best = x;
  return best;
}
Value f_max(const Value& v, const CallArgs& a) {
  return minmax(v, a, true);
}
Value f_min(const Value& v, const CallArgs& a) {
  return minmax(v, a, false);
}

Value f_sum(const Value& v, const CallArgs& a) {
  const Value* attr = a.get(0, "attribute");
  Value total = a.get_or(1, "start", Value::integer(0));
  for (const Value& x : iterate(v))
    total = binary_op("+", total, attr && !attr->is_none() ? lookup_path(x, str(*attr)) : x);
  return total;
}

Value f_escape(const Value& v, const CallArgs&) {
  std::string out;
  for (char c : str(v)) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return Value::string(std::move(out));
}

Value f_attr(const Value& v, const CallArgs& a) {
  return get_attribute(v, str(a.get_or(0, "name", Value::string(""))));
}

const std::map<std::string, Filter>& filters() {
  static const std::map<std::string, Filter> table = {
      {"abs", f_abs},
      {"attr", f_attr},
      {"batch", f_batch},
      {"capitalize", f_capitalize},
      {"count", f_length},
      {"d", f_default},
      {"default", f_default},
      {"dictsort", f_dictsort},
      {"e", f_escape},
      {"escape", f_escape},
      {"first", f_first},
      {"float", f_float},
      {"indent", f_indent},
      {"int", f_int},
      {"items", f_items},
      {"join", f_join},
      {"last", f_last},
      {"length", f_length},
      {"list", f_list},
      {"lower", f_lower},
      {"map", f_map},
      {"max", f_max},
      {"min", f_min},
      {"reject", f_reject},
      {"rejectattr", f_rejectattr},
      {"replace", f_replace},
      {"reverse", f_reverse},
      {"round", f_round},
      {"safe", f_safe},
      {"select", f_select},
      {"selectattr", f_selectattr},
      {"sort", f_sort},
      {"string", f_string},
      {"sum", f_sum},
      {"title", f_title},
      {"tojson", f_tojson},
      {"trim", f_trim},
      {"unique", f_unique},
      {"upper", f_upper},
      {"wordcount", f_wordcount},
  };
  return table;
}

}  // namespace

bool has_filter(const std::string& name) {
  return filters().count(name) > 0;
}

Value apply_filter(const std::string& name, const Value& input, const CallArgs& args) {
  auto it = filters().find(name);
  if (it == filters().end()) fail("TemplateRuntimeError: No filter named '" + name + "'.");
  return it->second(input, args);
}

}  // namespace tune::tmpl
