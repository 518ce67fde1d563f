// One option table for every command (DESIGN.md decision 7): each command declares its options
// once — key, kind, default, help — and the same table parses the command line, validates YAML
// configs, prints `--help`, and writes the resolved configuration back out. Keys are the names
// users see everywhere: "training.max_steps" in YAML, `training.max_steps=100` or
// `--training.max_steps 100` on the command line, and the same in the docs. On the command line
// a dash may stand for an underscore (`--max-new-tokens` is `max_new_tokens`).
//
// An unknown key is an error that suggests the closest known key; a value of the wrong kind is an
// error that names the key, the value, where it came from (file:line or "command line") and what
// is expected.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

namespace tune {

enum class OptionKind : uint8_t {
  flag,     // true/false; on the command line `--key` alone means true
  integer,  // int64
  number,   // double
  text,     // any string
  choice,   // one of OptionSpec::choices
  list,     // strings; "a,b" or "[a, b]" on the command line, a YAML sequence in a config
};

struct OptionSpec {
  std::string key;
  OptionKind kind = OptionKind::text;
  std::string default_value;  // as it would be typed; "" with kind text/list means empty/unset
  std::string help;
  std::vector<std::string> choices;  // kind choice only
};

class Options {
 public:
  explicit Options(std::vector<OptionSpec> specs);

  // Sets `key` from text as typed on a command line or read from YAML (a YAML sequence arrives
  // as a list). `origin` says where the value came from, for messages ("cfg.yaml:12").
  void set(const std::string& key, const std::string& value, const std::string& origin);
  void set_list(const std::string& key, const std::vector<std::string>& values,
                const std::string& origin);

  // Parses command-line arguments: `--key value`, `--key=value`, `--flag`, and `key.sub=value`
  // overrides. Arguments that are none of these (and do not start with '-') are returned, in
  // order, as positionals. `-h`/`--help` is left to the caller (see wants_help).
  std::vector<std::string> parse_args(std::span<const std::string> args);
  static bool wants_help(std::span<const std::string> args);

  bool known(const std::string& key) const;
  bool is_set(const std::string& key) const;         // given explicitly, not just defaulted
  std::string origin(const std::string& key) const;  // "default" when not set

  bool flag(const std::string& key) const;
  int64_t integer(const std::string& key) const;
  double number(const std::string& key) const;
  std::string text(const std::string& key) const;  // also for choice
  std::vector<std::string> list(const std::string& key) const;

  // Every option, grouped by the part before the first dot, with kind, default and help.
  // `dash_keys`: print keys as `--max-new-tokens` (flat commands) instead of `section.key`.
  std::string help_text(bool dash_keys) const;
  // The resolved configuration as YAML (every key, set or defaulted, nested by dots), and as
  // flat JSON {key: value} for comparisons and machine-readable output.
  std::string to_yaml() const;
  nlohmann::ordered_json to_json() const;

  const std::vector<OptionSpec>& specs() const { return specs_; }

 private:
  const OptionSpec& spec(const std::string& key) const;  // throws with a suggestion
  nlohmann::json parse_value(const OptionSpec& spec, const std::string& value,
                             const std::string& origin) const;

  std::vector<OptionSpec> specs_;
  std::map<std::string, size_t> index_;
  std::map<std::string, nlohmann::json> values_;  // explicitly set values
  std::map<std::string, std::string> origins_;
  std::map<std::string, nlohmann::json> defaults_;
};

// The candidate closest to `word` by edit distance, or "" when none is plausibly meant
// (distance more than a third of the word's length, at least 2).
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

// Loads a YAML config file into `options`: nested maps become dotted keys; each scalar or
// sequence is set with origin "file:line". An unknown key names the file and line and suggests
// the closest key; a malformed file gives the parser's line and column.
void load_yaml_config(Options& options, const std::string& path);

}  // namespace tune
