#include "models/config_reader.h"

namespace tune::models {

void ConfigReader::fail(const std::string& key, const std::string& what) const {
  throw Error(str(source_, ": key \"", key, "\" ", what));
}

const nlohmann::json& ConfigReader::at(const std::string& key) const {
  if (!has(key)) fail(key, "is required but missing; add it (see the model's Hugging Face config)");
  return json_[key];
}

int64_t ConfigReader::integer(const std::string& key) const {
  const auto& v = at(key);
  if (!v.is_number_integer()) fail(key, str("must be an integer, got ", v.dump()));
  return v.get<int64_t>();
}

int64_t ConfigReader::integer(const std::string& key, int64_t fallback) const {
  return has(key) ? integer(key) : fallback;
}

double ConfigReader::number(const std::string& key) const {
  const auto& v = at(key);
  if (!v.is_number()) fail(key, str("must be a number, got ", v.dump()));
  return v.get<double>();
}

double ConfigReader::number(const std::string& key, double fallback) const {
  return has(key) ? number(key) : fallback;
}

bool ConfigReader::boolean(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const auto& v = json_[key];
  if (!v.is_boolean()) fail(key, str("must be true or false, got ", v.dump()));
  return v.get<bool>();
}

std::string ConfigReader::string(const std::string& key) const {
  const auto& v = at(key);
  if (!v.is_string()) fail(key, str("must be a string, got ", v.dump()));
  return v.get<std::string>();
}

std::string ConfigReader::string(const std::string& key, const std::string& fallback) const {
  return has(key) ? string(key) : fallback;
}

ConfigReader ConfigReader::object(const std::string& key) const {
  const auto& v = at(key);
  if (!v.is_object()) fail(key, str("must be an object, got ", v.dump()));
  return ConfigReader(v, source_ + " (in \"" + key + "\")");
}

}  // namespace tune::models
