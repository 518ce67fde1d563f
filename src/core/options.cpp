// The option table: parsing, validation and printing of every command's options.
#include "tune/core/options.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "tune/core/error.h"

namespace tune {

namespace {

std::string kind_name(const OptionSpec& s) {
  switch (s.kind) {
    case OptionKind::flag:
      return "true|false";
    case OptionKind::integer:
      return "integer";
    case OptionKind::number:
      return "number";
    case OptionKind::text:
      return "text";
    case OptionKind::list:
      return "list";
    case OptionKind::choice: {
      std::string out;
      for (const std::string& c : s.choices) out += (out.empty() ? "" : "|") + c;
      return out;
    }
  }
  return "?";
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// "a,b" or "[a, b]" -> {"a", "b"}; "" and "[]" -> {}.
std::vector<std::string> split_list(std::string value) {
  value = trim(value);
  if (value.size() >= 2 && value.front() == '[' && value.back() == ']') {
    value = value.substr(1, value.size() - 2);
  }
  std::vector<std::string> out;
  std::stringstream ss(value);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    if (item.size() >= 2 && (item.front() == '"' || item.front() == '\'') &&
        item.back() == item.front()) {
      item = item.substr(1, item.size() - 2);
    }
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// `--max-new-tokens` and `--max_new_tokens` both name max_new_tokens.
std::string key_from_flag(std::string flag) {
  std::replace(flag.begin(), flag.end(), '-', '_');
  return flag;
}

std::string flag_from_key(std::string key) {
  std::replace(key.begin(), key.end(), '_', '-');
  return key;
}

std::string value_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + value_text(v[i]);
    return out + "]";
  }
  if (v.is_number_float()) {
    std::ostringstream ss;
    ss << v.get<double>();
    return ss.str();
  }
  return v.dump();
}

}  // namespace

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const std::string& c : candidates) {
    size_t d = edit_distance(word, c);
    // A key given without its section ("max_steps") is meant as "training.max_steps".
    const size_t dot = c.rfind('.');
    if (dot != std::string::npos) d = std::min(d, edit_distance(word, c.substr(dot + 1)));
    if (d < best_d) best_d = d, best = c;
  }
  const size_t limit = std::max<size_t>(2, word.size() / 3);
  return best_d <= limit ? best : "";
}

Options::Options(std::vector<OptionSpec> specs) : specs_(std::move(specs)) {
  for (size_t i = 0; i < specs_.size(); ++i) {
    const OptionSpec& s = specs_[i];
    TUNE_ASSERT(index_.emplace(s.key, i).second, "duplicate option ", s.key);
    if (s.kind == OptionKind::list) {
      defaults_[s.key] = split_list(s.default_value);
    } else if (!s.default_value.empty() || s.kind == OptionKind::text) {
      defaults_[s.key] = parse_value(s, s.default_value, "default");
    }
  }
}

const OptionSpec& Options::spec(const std::string& key) const {
  auto it = index_.find(key);
  if (it != index_.end()) return specs_[it->second];
  std::vector<std::string> keys;
  for (const OptionSpec& s : specs_) keys.push_back(s.key);
  const std::string near = closest_match(key, keys);
  throw Error(str("unknown option \"", key, "\"",
                  near.empty() ? ". Run with --help to list the options."
                               : str(". Did you mean \"", near, "\"?")));
}

bool Options::known(const std::string& key) const {
  return index_.count(key) != 0;
}

nlohmann::json Options::parse_value(const OptionSpec& s, const std::string& raw,
                                    const std::string& origin) const {
  const std::string value = trim(raw);
  auto bad = [&](const std::string& expected) -> Error {
    return Error(str(origin, ": ", s.key, " = \"", raw, "\" is not ", expected, "."));
  };
  switch (s.kind) {
    case OptionKind::flag:
      if (value == "true" || value == "True" || value == "yes" || value == "1" || value == "on")
        return true;
      if (value == "false" || value == "False" || value == "no" || value == "0" || value == "off")
        return false;
      throw bad("true or false");
    case OptionKind::integer: {
      errno = 0;
      char* end = nullptr;
      const long long v = std::strtoll(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || errno) throw bad("an integer");
      return static_cast<int64_t>(v);
    }
    case OptionKind::number: {
      errno = 0;
      char* end = nullptr;
      const double v = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || errno) throw bad("a number");
      return v;
    }
    case OptionKind::choice:
      if (std::find(s.choices.begin(), s.choices.end(), value) == s.choices.end()) {
        throw bad("one of " + kind_name(s));
      }
      return value;
    case OptionKind::text:
      return raw;
    case OptionKind::list:
      return split_list(raw);
  }
  return nullptr;
}

void Options::set(const std::string& key, const std::string& value, const std::string& origin) {
  const OptionSpec& s = spec(key);
  values_[key] = parse_value(s, value, origin);
  origins_[key] = origin;
}

void Options::set_list(const std::string& key, const std::vector<std::string>& values,
                       const std::string& origin) {
  const OptionSpec& s = spec(key);
  if (s.kind != OptionKind::list) {
    throw Error(str(origin, ": ", key, " takes a single ", kind_name(s), ", not a list."));
  }
  values_[key] = values;
  origins_[key] = origin;
}

bool Options::wants_help(std::span<const std::string> args) {
  for (const std::string& a : args) {
    if (a == "-h" || a == "--help") return true;
  }
  return false;
}

std::vector<std::string> Options::parse_args(std::span<const std::string> args) {
  std::vector<std::string> positionals;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) == 0 && a.size() > 2) {
      std::string name = a.substr(2), value;
      const size_t eq = name.find('=');
      const bool inline_value = eq != std::string::npos;
      if (inline_value) value = name.substr(eq + 1), name = name.substr(0, eq);
      const std::string key = known(name) ? name : key_from_flag(name);
      const OptionSpec& s = spec(key);
      if (!inline_value) {
        const bool next_is_value = i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0;
        if (s.kind == OptionKind::flag &&
            !(next_is_value && (args[i + 1] == "true" || args[i + 1] == "false"))) {
          value = "true";
        } else if (!next_is_value) {
          throw Error(str("option --", flag_from_key(key), " needs a value (", kind_name(s), ")"));
        } else {
          value = args[++i];
        }
      }
      set(key, value, "command line");
    } else if (a.find('=') != std::string::npos && a[0] != '-' &&
               a.find('/') > a.find('=')) {  // key.sub=value (a path never is one)
      const size_t eq = a.find('=');
      set(a.substr(0, eq), a.substr(eq + 1), "command line");
    } else if (a[0] == '-' && a.size() > 1) {
      throw Error(str("unknown option \"", a, "\". Run with --help to list the options."));
    } else {
      positionals.push_back(a);
    }
  }
  return positionals;
}

bool Options::is_set(const std::string& key) const {
  spec(key);
  return values_.count(key) != 0;
}

std::string Options::origin(const std::string& key) const {
  auto it = origins_.find(key);
  return it == origins_.end() ? "default" : it->second;
}

namespace {

const nlohmann::json& lookup(const std::map<std::string, nlohmann::json>& values,
                             const std::map<std::string, nlohmann::json>& defaults,
                             const std::string& key) {
  auto it = values.find(key);
  if (it != values.end()) return it->second;
  auto d = defaults.find(key);
  if (d != defaults.end()) return d->second;
  static const nlohmann::json null;
  return null;
}

}  // namespace

bool Options::flag(const std::string& key) const {
  TUNE_ASSERT(spec(key).kind == OptionKind::flag, key, " is not a flag");
  const nlohmann::json& v = lookup(values_, defaults_, key);
  return v.is_boolean() && v.get<bool>();
}

int64_t Options::integer(const std::string& key) const {
  TUNE_ASSERT(spec(key).kind == OptionKind::integer, key, " is not an integer option");
  const nlohmann::json& v = lookup(values_, defaults_, key);
  return v.is_number() ? v.get<int64_t>() : 0;
}

double Options::number(const std::string& key) const {
  TUNE_ASSERT(spec(key).kind == OptionKind::number, key, " is not a number option");
  const nlohmann::json& v = lookup(values_, defaults_, key);
  return v.is_number() ? v.get<double>() : 0.0;
}

std::string Options::text(const std::string& key) const {
  const OptionKind k = spec(key).kind;
  TUNE_ASSERT(k == OptionKind::text || k == OptionKind::choice, key, " is not a text option");
  const nlohmann::json& v = lookup(values_, defaults_, key);
  return v.is_string() ? v.get<std::string>() : "";
}

std::vector<std::string> Options::list(const std::string& key) const {
  TUNE_ASSERT(spec(key).kind == OptionKind::list, key, " is not a list option");
  const nlohmann::json& v = lookup(values_, defaults_, key);
  return v.is_array() ? v.get<std::vector<std::string>>() : std::vector<std::string>{};
}

std::string Options::help_text(bool dash_keys) const {
  std::ostringstream out;
  std::string section = "\x01";
  for (const OptionSpec& s : specs_) {
    const size_t dot = s.key.find('.');
    const std::string sec = dash_keys || dot == std::string::npos ? "" : s.key.substr(0, dot);
    if (sec != section) {
      section = sec;
      if (!sec.empty()) out << "\n" << sec << ":\n";
    }
    std::string name = dash_keys ? "--" + flag_from_key(s.key) : s.key;
    if (s.kind != OptionKind::flag)
      name +=
          " " + std::string(s.kind == OptionKind::choice ? kind_name(s) : "<" + kind_name(s) + ">");
    out << "  " << name;
    const size_t width = 36;
    if (name.size() + 2 < width) {
      out << std::string(width - name.size() - 2, ' ');
    } else {
      out << "\n" << std::string(width, ' ');
    }
    out << s.help;
    if (!s.default_value.empty()) out << " (default: " << s.default_value << ")";
    out << "\n";
  }
  return out.str();
}

nlohmann::ordered_json Options::to_json() const {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const OptionSpec& s : specs_) out[s.key] = lookup(values_, defaults_, s.key);
  return out;
}

namespace {

// A YAML scalar that reads back as the same string (quoted when YAML would read it otherwise).
std::string yaml_scalar(const nlohmann::json& v) {
  if (v.is_null()) return "null";
  if (!v.is_string()) return value_text(v);
  const std::string s = v.get<std::string>();
  const bool plain = !s.empty() && s.find_first_of(":#{}[],&*!|>'\"%@`\n") == std::string::npos &&
                     s.front() != ' ' && s.back() != ' ' && s != "true" && s != "false" &&
                     s != "null" && s != "yes" && s != "no" &&
                     s.find_first_not_of("0123456789.eE+-") != std::string::npos &&
                     s.front() != '-' && s.front() != '?';
  return plain ? s : nlohmann::json(s).dump();  // JSON strings are valid YAML
}

}  // namespace

std::string Options::to_yaml() const {
  std::ostringstream out;
  std::vector<std::string> open;  // the current section path
  for (const OptionSpec& s : specs_) {
    std::vector<std::string> parts;
    std::stringstream ss(s.key);
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() && open[common] == parts[common]) {
      ++common;
    }
    open.resize(common);
    for (size_t d = common; d + 1 < parts.size(); ++d) {
      out << std::string(2 * d, ' ') << parts[d] << ":\n";
      open.push_back(parts[d]);
    }
    const nlohmann::json& v = lookup(values_, defaults_, s.key);
    out << std::string(2 * (parts.size() - 1), ' ') << parts.back() << ":";
    if (v.is_array()) {
      out << " [";
      for (size_t i = 0; i < v.size(); ++i) out << (i ? ", " : "") << yaml_scalar(v[i]);
      out << "]\n";
    } else {
      out << " " << yaml_scalar(v.is_null() ? nlohmann::json("") : v) << "\n";
    }
  }
  return out.str();
}

}  // namespace tune
