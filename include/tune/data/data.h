// The data layer of `tune train`: data files (JSONL, JSON arrays, CSV, plain text) -> records ->
// formatted, tokenized examples with a per-token "counted" mask (response-only training) -> a
// memory-mapped cache keyed by everything that changes the tokens -> packed rows -> a global,
// seeded, resumable order of micro-batches.
//
//   PreparedData data = data::prepare_data(cfg.data, tokenizer, progress);
//   data::Loader loader(data.train, seq_len, pack, micro_batch, seed, /*shuffle=*/true);
//   data::Batch b = loader.next();   // ids/labels/positions [B, T]
//
// The pieces live in src/data/, one job per file: sources (reading records), formats (record ->
// text + spans), masking (spans -> token mask), cache, packing, loader.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tune/core/tensor.h"

namespace tune::tok {
class Tokenizer;
}

namespace tune::data {

enum class Format : uint8_t { text, completion, alpaca, messages };
enum class TrainOn : uint8_t { responses, all };
enum class OnError : uint8_t { fail, skip };
enum class Truncation : uint8_t { right, drop };  // cut an over-long example at seq_len, or drop it
enum class SampleBy : uint8_t {
  line,
  paragraph,
  document
};  // .txt files, as HF load_dataset("text")

// The config keys data.* (the YAML schema maps onto this one to one).
struct DataConfig {
  // Files: .jsonl, .json (an array of objects), .csv (header row, RFC 4180), .txt. A directory
  // stands for the files with those extensions directly in it, in name order.
  std::vector<std::string> paths;
  Format format = Format::messages;
  std::string text_field = "text";
  std::string prompt_field = "prompt", completion_field = "completion";
  std::string instruction_field = "instruction", input_field = "input", output_field = "output";
  std::string messages_field = "messages";                     // "conversations" for ShareGPT
  std::string role_field = "role", content_field = "content";  // "from"/"value" for ShareGPT;
                                                               // human/gpt -> user/assistant
  // "": the tokenizer's default; a name from tokenizer_config's list; or an inline template
  // (anything containing "{{" or "{%").
  std::string chat_template;
  TrainOn train_on = TrainOn::responses;
  int64_t seq_len = 1024;
  bool pack = true;
  Truncation truncation = Truncation::right;
  SampleBy sample_by = SampleBy::line;
  double eval_fraction = 0.0;  // held-out share, chosen per example by Philox(seed): stable
  OnError on_error = OnError::fail;
  std::string cache_dir;  // "": $TUNE_CACHE_DIR, else ~/.cache/tune/datasets
  uint64_t seed = 0;      // the eval split only; the cache does not depend on it
};

// One tokenized example: counted[t] = 1 when token t is a training target. counted[0] is always
// 0 (nothing in the example predicts its first token).
struct Example {
  std::span<const int32_t> ids;
  std::span<const uint8_t> counted;
};

struct CacheData;  // the memory-mapped cache files (src/data/cache.h)

// A set of examples, a view of the memory-mapped cache (cheap to copy: it shares the mapping).
class Dataset {
 public:
  Dataset() = default;
  // `index`: which cache examples, in order; empty with `all` = every example.
  Dataset(std::shared_ptr<const CacheData> cache, std::vector<int64_t> index, int32_t pad_id);

  int64_t size() const { return static_cast<int64_t>(index_.size()); }
  int64_t tokens() const { return tokens_; }
  int64_t counted_tokens() const { return counted_; }
  Example example(int64_t i) const;
  // The padding id batches use: the pad token, else EOS, else 0.
  int32_t pad_id() const { return pad_id_; }
  // Which cache example example(i) is (for the eval split and diagnostics).
  int64_t cache_index(int64_t i) const { return index_.at(static_cast<size_t>(i)); }

 private:
  std::shared_ptr<const CacheData> cache_;
  std::vector<int64_t> index_;
  int64_t tokens_ = 0, counted_ = 0;
  int32_t pad_id_ = 0;
};

struct PreparedData {
  Dataset train, eval;
  std::string cache_path;  // the cache folder the datasets are mapped from
  bool cache_hit = false;
  int64_t skipped_records = 0;  // bad records passed over with on_error: skip
  int64_t truncated = 0;        // examples cut at seq_len (truncation: right)
  int64_t dropped = 0;          // examples over seq_len dropped (truncation: drop, or every
                                // target beyond the cut)
  int64_t no_targets = 0;       // examples without any counted token (e.g. no assistant turn),
                                // left out
};

// Called with bytes of the data files read so far and their total; may be empty.
using Progress = std::function<void(int64_t done, int64_t total)>;

// Reads, formats, tokenizes and caches the data (or maps an existing cache), then splits it into
// train and eval. Errors name the file, line and field and say what to change.
PreparedData prepare_data(const DataConfig& cfg, const tok::Tokenizer& tokenizer,
                          const Progress& progress = {});

// One micro-batch, Hugging Face's alignment: the loss shifts inside (position t predicts
// labels[t + 1]).
struct Batch {
  Tensor ids;           // [B, T] i64, padded with Dataset::pad_id()
  Tensor labels;        // [B, T] i64: ids where counted, else -100 (padding, prompts, the first
                        // token of every packed document)
  Tensor positions;     // [B, T] i64: 0, 1, 2, ... restarting at 0 at each packed document
  int64_t counted = 0;  // labels that count after the shift: sum of labels[:, 1:] != -100
  int64_t tokens = 0;   // non-padding tokens
};

// A global, seeded, resumable order over rows. Rows are built once: with pack, examples are
// packed first-fit (in an order shuffled by `seed` when `shuffle`, else in dataset order) into
// rows of at most seq_len tokens; without pack, one example per row. Each epoch visits every
// row once in the order of a Philox(seed, epoch) permutation (dataset order without shuffle).
// A batch is padded to its longest row.
class Loader {
 public:
  Loader(const Dataset& ds, int64_t seq_len, bool pack, int64_t micro_batch, uint64_t seed,
         bool shuffle);

  int64_t rows_per_epoch() const { return static_cast<int64_t>(row_begin_.size()) - 1; }
  // The last batch of an epoch may be smaller; batches never span epochs.
  int64_t batches_per_epoch() const;
  // The next micro-batch, rolling into the next epoch (a new order) at the end of one.
  Batch next();

  struct State {
    int64_t epoch = 0, position = 0;  // position: rows consumed in this epoch
  };
  State state() const { return state_; }
  void set_state(State s);  // a checkpoint stores it; resuming continues exactly

  // The examples (dataset indices) of row r: for tests and diagnostics.
  std::span<const int64_t> row(int64_t r) const;

 private:
  void make_order();  // order_ for state_.epoch

  Dataset ds_;
  int64_t seq_len_, micro_batch_;
  uint64_t seed_;
  bool shuffle_;
  std::vector<int64_t> row_begin_;  // rows: row_examples_[row_begin_[r] .. row_begin_[r + 1])
  std::vector<int64_t> row_examples_;
  std::vector<int64_t> order_;  // this epoch's row order
  int64_t order_epoch_ = -1;
  State state_;
};

}  // namespace tune::data
