// The tokenized-data cache. One folder per key under the cache root:
//   <root>/<key>/ids.bin      int32 [tokens]      every example's ids, back to back
//                counted.bin  uint8 [tokens]      1: a training target
//                offsets.bin  int64 [examples + 1] example i is [offsets[i], offsets[i + 1])
//                manifest.json                     counts and what the cache was made from
// The key hashes everything that changes the tokens: the data files' bytes, the tokenizer
// (vocabulary, config, and the encoding of a probe text), the chat template, and the data.*
// settings that shape examples. The seed and eval_fraction are not in it: the split is made after
// the cache. A cache is written into "<key>.tmp.<pid>" and renamed into place when complete, so a
// killed run never leaves a half cache; readers map the files read-only.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "masking.h"
#include "tune/data/data.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::data {

struct CacheData {
  const int32_t* ids = nullptr;
  const uint8_t* counted = nullptr;
  const int64_t* offsets = nullptr;  // [examples + 1]
  int64_t examples = 0, tokens = 0;
  nlohmann::json manifest;
  std::vector<std::shared_ptr<void>> mappings;  // keep the mmaps alive
};

// data.cache_dir, else $TUNE_CACHE_DIR, else ~/.cache/tune/datasets.
std::string cache_root(const DataConfig& cfg);

// 32 hex digits.
std::string cache_key(const DataConfig& cfg, const std::vector<std::string>& files,
                      const tok::Tokenizer& tokenizer, const std::string& template_source);

// The cache in `dir`, mapped; nullptr when it is not there or incomplete.
std::shared_ptr<const CacheData> open_cache(const std::string& dir);

// Streams examples into a temporary folder next to `dir`; commit() renames it to `dir`.
// Destroying an uncommitted writer removes the temporary folder.
class CacheWriter {
 public:
  explicit CacheWriter(std::string dir);
  ~CacheWriter();
  CacheWriter(const CacheWriter&) = delete;
  CacheWriter& operator=(const CacheWriter&) = delete;

  void add(const Tokenized& example);
  int64_t examples() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  int64_t tokens() const { return offsets_.back(); }
  int64_t counted() const { return counted_; }
  // Writes the manifest (with the counts added), syncs and publishes the folder.
  void commit(nlohmann::json manifest);

 private:
  std::string dir_, temp_;
  std::FILE* ids_ = nullptr;
  std::FILE* counted_file_ = nullptr;
  std::vector<int64_t> offsets_{0};
  int64_t counted_ = 0;
  bool committed_ = false;
};

}  // namespace tune::data
