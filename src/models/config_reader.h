// Typed access to config.json keys with messages that name the file and the key.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "tune/core/error.h"

namespace tune::models {

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& json, std::string source)
      : json_(json), source_(std::move(source)) {}

  bool has(const std::string& key) const { return json_.contains(key) && !json_[key].is_null(); }
  int64_t integer(const std::string& key) const;
  int64_t integer(const std::string& key, int64_t fallback) const;
  double number(const std::string& key) const;
  double number(const std::string& key, double fallback) const;
  bool boolean(const std::string& key, bool fallback) const;
  std::string string(const std::string& key) const;
  std::string string(const std::string& key, const std::string& fallback) const;
  const nlohmann::json& json() const { return json_; }
  const std::string& source() const { return source_; }
  // A reader for a nested object, its messages naming "outer.inner".
  ConfigReader object(const std::string& key) const;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const;

 private:
  const nlohmann::json& at(const std::string& key) const;
  nlohmann::json json_;
  std::string source_;
};

}  // namespace tune::models
