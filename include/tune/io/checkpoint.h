// A model's weights as Hugging Face stores them in a model directory: either one
// `model.safetensors`, or shards `model-00001-of-0000N.safetensors` listed in
// `model.safetensors.index.json` ({"metadata": {"total_size": bytes}, "weight_map": {tensor name:
// shard file}}). When both are present the single file wins, as in transformers.
//
// CheckpointReader opens and validates every file up front (mapping is cheap; reading happens on
// first touch), so a missing shard or an index that disagrees with its shards is reported at
// open time, not halfway through loading a model. Tensors are zero-copy views, as in
// SafetensorsFile.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tune/core/tensor.h"
#include "tune/io/safetensors.h"

namespace tune::io {

inline constexpr const char* kSafetensorsSingleName = "model.safetensors";
inline constexpr const char* kSafetensorsIndexName = "model.safetensors.index.json";

class CheckpointReader {
 public:
  CheckpointReader();  // empty: no tensors, to be assigned from open_dir / open_file

  // A HF model directory. Throws, listing the files it looked for, when it holds neither.
  static CheckpointReader open_dir(const std::string& dir);
  // One .safetensors file on its own.
  static CheckpointReader open_file(const std::string& path);

  // The directory, or for open_file the file's path: what messages call the checkpoint.
  const std::string& location() const;
  // Every tensor: shard by shard in file-name order, within a shard in data order.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  // Throws "tensor X not found in <dir> (files: ...)", suggesting a close name when there is one.
  const TensorInfo& info(const std::string& name) const;
  Tensor tensor(const std::string& name) const;
  // Path of the file holding the tensor (dir/shard); throws like tensor() when absent.
  std::string file_of(const std::string& name) const;
  const std::vector<SafetensorsFile>& files() const;

 private:
  struct State;
  explicit CheckpointReader(std::shared_ptr<const State> state);
  const SafetensorsFile& file_for(const std::string& name) const;
  std::shared_ptr<const State> state_;
};

// Writes tensors into `dir` (created if missing) the way transformers' save_pretrained does:
// one model.safetensors when the total is at most max_shard_bytes, otherwise shards filled in
// the given order (a tensor larger than the limit gets a shard of its own) plus the index with
// metadata.total_size. Every file carries the metadata {"format": "pt"} that transformers checks.
// Each file is written atomically and the index last. A reader never silently gets a mix of old
// and new weights: an old index is removed before shards of the same names are overwritten (a
// reader then finds no checkpoint and says so), and stale files of the other layout (an old
// model.safetensors, index, or model-*-of-*.safetensors shards not written now) are removed once
// the new checkpoint is complete.
void write_checkpoint_dir(const std::string& dir,
                          const std::vector<std::pair<std::string, Tensor>>& tensors,
                          uint64_t max_shard_bytes = 5'000'000'000ull);

}  // namespace tune::io
