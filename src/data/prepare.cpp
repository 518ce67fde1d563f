// prepare_data: files -> records -> examples -> cache, then the train/eval split; and Dataset, the
// view of the mapped cache. Records are formatted in chunks on all cores (OpenMP) and written in
// file order, so the cache is the same at any thread count.

#include <algorithm>
#include <filesystem>

#include "cache.h"
#include "formats.h"
#include "sources.h"
#include "tune/core/error.h"
#include "tune/core/rng.h"
#include "tune/data/data.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::data {

namespace {

namespace fs = std::filesystem;

constexpr size_t kChunk = 512;                // records formatted together
constexpr uint64_t kEvalStream = 0x6576616c;  // Philox stream of the eval split ("eval")

std::string joined(const std::vector<std::string>& files) {
  std::string out;
  for (const auto& f : files) out += (out.empty() ? "" : ", ") + f;
  return out;
}

int32_t pad_id_of(const tok::Tokenizer& tokenizer) {
  const auto& c = tokenizer.config();
  for (const auto& name : {c.pad_token, c.eos_token}) {
    if (name) {
      if (const auto id = tokenizer.token_to_id(*name)) return *id;
    }
  }
  return 0;
}

struct Counts {
  int64_t records = 0, skipped = 0, truncated = 0, dropped = 0, no_targets = 0;
};

// Cuts or drops an over-long example; false when it is left out.
bool fit(Tokenized& t, const DataConfig& cfg, Counts& counts) {
  if (static_cast<int64_t>(t.ids.size()) > cfg.seq_len) {
    if (cfg.truncation == Truncation::drop) {
      ++counts.dropped;
      return false;
    }
    t.ids.resize(static_cast<size_t>(cfg.seq_len));
    t.counted.resize(static_cast<size_t>(cfg.seq_len));
    if (std::find(t.counted.begin(), t.counted.end(), 1) == t.counted.end()) {
      ++counts.dropped;  // every target was beyond the cut
      return false;
    }
    ++counts.truncated;
    return true;
  }
  if (std::find(t.counted.begin(), t.counted.end(), 1) == t.counted.end()) {
    ++counts.no_targets;
    return false;
  }
  return true;
}

void build_cache(const DataConfig& cfg, const std::vector<std::string>& files,
                 const Formatter& formatter, const std::string& dir, const Progress& progress) {
  int64_t total_bytes = 0;
  for (const auto& f : files) total_bytes += static_cast<int64_t>(fs::file_size(f));
  CacheWriter writer(dir);
  Counts counts;
  std::vector<Record> chunk;
  auto flush = [&] {
    const int64_t n = static_cast<int64_t>(chunk.size());
    std::vector<Tokenized> results(chunk.size());
    std::vector<std::string> errors(chunk.size());
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t i = 0; i < n; ++i) {
      try {
        results[i] = formatter.format(chunk[i]);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!errors[i].empty()) {
        TUNE_CHECK(cfg.on_error == OnError::skip, errors[i],
                   " (data.on_error: skip passes over bad records)");
        ++counts.skipped;
        continue;
      }
      if (fit(results[i], cfg, counts)) writer.add(results[i]);
    }
    chunk.clear();
  };
  int64_t bytes_before = 0;
  for (const auto& f : files) {
    read_records(
        f, cfg,
        [&](Record&& r) {
          ++counts.records;
          chunk.push_back(std::move(r));
          if (chunk.size() == kChunk) flush();
        },
        counts.skipped,
        [&](int64_t bytes) {
          if (progress) progress(bytes_before + bytes, total_bytes);
        });
    bytes_before += static_cast<int64_t>(fs::file_size(f));
  }
  flush();

  const std::string where = joined(files);
  TUNE_CHECK(counts.records + counts.skipped > 0, "the dataset is empty: no records in ", where);
  TUNE_CHECK(counts.records > 0 || counts.skipped == 0, "every record of ", where,
             " was malformed and skipped (", counts.skipped,
             "); set data.on_error: fail to see the first error");
  if (writer.examples() == 0) {
    TUNE_CHECK(counts.no_targets == 0, "every example of ", where,
               " has all its labels masked, so there is nothing to train on. Check "
               "data.train_on (responses counts only assistant turns), the chat template, and that "
               "the assistant role is named \"assistant\" (or \"gpt\" in ShareGPT data; "
               "data.fields.role names the field)");
    TUNE_CHECK(counts.dropped == 0, "every example of ", where, " was dropped: ", counts.dropped,
               " are longer than data.seq_len (", cfg.seq_len,
               ") or have all their targets beyond it. Raise data.seq_len, or set "
               "data.truncation: right");
    throw Error(str("no examples in ", where, ": all ", counts.skipped,
                    " records were skipped as malformed"));
  }
  nlohmann::json manifest;
  manifest["files"] = files;
  manifest["records"] = counts.records;
  manifest["skipped_records"] = counts.skipped;
  manifest["truncated"] = counts.truncated;
  manifest["dropped"] = counts.dropped;
  manifest["no_targets"] = counts.no_targets;
  manifest["seq_len"] = cfg.seq_len;
  manifest["template"] = formatter.template_source();
  writer.commit(std::move(manifest));
}

}  // namespace

Dataset::Dataset(std::shared_ptr<const CacheData> cache, std::vector<int64_t> index, int32_t pad_id)
    : cache_(std::move(cache)), index_(std::move(index)), pad_id_(pad_id) {
  for (const int64_t i : index_) {
    TUNE_ASSERT(i >= 0 && i < cache_->examples, "example ", i, " outside the cache");
    const int64_t begin = cache_->offsets[i], end = cache_->offsets[i + 1];
    tokens_ += end - begin;
    for (int64_t t = begin; t < end; ++t) counted_ += cache_->counted[t];
  }
}

Example Dataset::example(int64_t i) const {
  TUNE_ASSERT(i >= 0 && i < size(), "example ", i, " of a dataset of ", size());
  const int64_t e = index_[static_cast<size_t>(i)];
  const int64_t begin = cache_->offsets[e], end = cache_->offsets[e + 1];
  const auto n = static_cast<size_t>(end - begin);
  return {{cache_->ids + begin, n}, {cache_->counted + begin, n}};
}

PreparedData prepare_data(const DataConfig& cfg, const tok::Tokenizer& tokenizer,
                          const Progress& progress) {
  TUNE_CHECK(cfg.seq_len > 0, "data.seq_len must be positive, got ", cfg.seq_len);
  TUNE_CHECK(cfg.eval_fraction >= 0 && cfg.eval_fraction < 1,
             "data.eval_fraction must be in [0, 1), got ", cfg.eval_fraction);
  const auto files = resolve_paths(cfg.paths);
  const Formatter formatter(cfg, tokenizer);  // checks the template before any data is read
  PreparedData out;
  out.cache_path =
      (fs::path(cache_root(cfg)) / cache_key(cfg, files, tokenizer, formatter.template_source()))
          .string();
  auto cache = open_cache(out.cache_path);
  out.cache_hit = cache != nullptr;
  if (!cache) {
    build_cache(cfg, files, formatter, out.cache_path, progress);
    cache = open_cache(out.cache_path);
    TUNE_CHECK(cache, "the data cache ", out.cache_path, " cannot be read back after writing it");
  }
  const auto& m = cache->manifest;
  out.skipped_records = m.value("skipped_records", int64_t{0});
  out.truncated = m.value("truncated", int64_t{0});
  out.dropped = m.value("dropped", int64_t{0});
  out.no_targets = m.value("no_targets", int64_t{0});

  // The split: example i is held out when its Philox draw falls under eval_fraction.
  std::vector<int64_t> train, eval;
  int64_t lowest = -1;
  float lowest_u = 2;
  for (int64_t i = 0; i < cache->examples; ++i) {
    const float u = cfg.eval_fraction > 0 ? uniform01(cfg.seed, kEvalStream, i) : 1.0f;
    (u < cfg.eval_fraction ? eval : train).push_back(i);
    if (u < lowest_u) lowest_u = u, lowest = i;
  }
  if (cfg.eval_fraction > 0 && eval.empty() && train.size() >= 2) {  // at least one
    eval.push_back(lowest);
    train.erase(std::find(train.begin(), train.end(), lowest));
  }
  TUNE_CHECK(!train.empty(), "data.eval_fraction ", cfg.eval_fraction,
             " leaves no training "
             "examples out of ",
             cache->examples, "; lower it");
  const int32_t pad = pad_id_of(tokenizer);
  out.train = Dataset(cache, std::move(train), pad);
  out.eval = Dataset(cache, std::move(eval), pad);
  return out;
}

}  // namespace tune::data
