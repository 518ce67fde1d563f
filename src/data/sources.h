// Reading data files into records: JSON Lines (simdjson, one object per line), JSON arrays of
// objects, CSV (RFC 4180, header row) and plain text (one record per line, paragraph or file,
// as Hugging Face's load_dataset("text") does). A record is a JSON object plus where it came
// from, so every later error can name the file and line.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tune/data/data.h"

namespace tune::data {

struct Record {
  nlohmann::ordered_json value;  // an object; CSV and text records hold strings
  std::string where;             // "data/train.jsonl:17", "data/train.json: record 3"
};

// The files data.paths names: directories expand to their data files in name order. Errors name
// a path that does not exist or has an extension no reader knows.
std::vector<std::string> resolve_paths(const std::vector<std::string>& paths);

// Calls `sink` with every record of `path`, in file order. A malformed record throws tune::Error
// naming file:line and what is wrong, or with on_error: skip is counted in `skipped`.
// `progress(bytes)` reports bytes of the file consumed so far.
void read_records(const std::string& path, const DataConfig& cfg,
                  const std::function<void(Record&&)>& sink, int64_t& skipped,
                  const std::function<void(int64_t)>& progress);

}  // namespace tune::data
