// YAML config files into the option table: nested maps become dotted keys, and every value keeps
// its file:line so that a wrong value or an unknown key can be pointed at.
#include <yaml-cpp/yaml.h>

#include "tune/core/error.h"
#include "tune/core/options.h"

namespace tune {

namespace {

std::string where(const std::string& path, const YAML::Node& node) {
  return str(path, ":", node.Mark().line + 1);
}

void load_node(Options& options, const std::string& path, const YAML::Node& node,
               const std::string& prefix) {
  for (const auto& kv : node) {
    const std::string name = kv.first.as<std::string>();
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    const YAML::Node& value = kv.second;
    const std::string origin = where(path, kv.first);
    if (value.IsMap() && !options.known(key)) {
      load_node(options, path, value, key);
      continue;
    }
    if (!options.known(key)) {
      try {
        options.set(key, "", origin);  // throws the unknown-key error with its suggestion
      } catch (const Error& e) {
        throw Error(str(origin, ": ", e.what()));
      }
    }
    if (value.IsSequence()) {
      std::vector<std::string> items;
      for (const YAML::Node& item : value) {
        if (!item.IsScalar()) {
          throw Error(str(where(path, item), ": ", key, " must be a list of plain values"));
        }
        items.push_back(item.as<std::string>());
      }
      options.set_list(key, items, origin);
    } else if (value.IsScalar()) {
      options.set(key, value.as<std::string>(), origin);
    } else if (value.IsNull()) {
      options.set(key, "", origin);
    } else {
      throw Error(str(origin, ": ", key, " takes a single value, not a map"));
    }
  }
}

}  // namespace

void load_yaml_config(Options& options, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw Error(str("cannot read config ", path, ": no such file, or it is not readable"));
  } catch (const YAML::Exception& e) {
    throw Error(str(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": invalid YAML: ", e.msg,
                    ". Fix the file and run again."));
  }
  if (root.IsNull()) return;  // an empty file: every default
  if (!root.IsMap()) {
    throw Error(str(path, ": a config must be a map of sections (model:, data:, training:, ...)"));
  }
  load_node(options, path, root, "");
}

}  // namespace tune
