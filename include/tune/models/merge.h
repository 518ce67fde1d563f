// A model directory's weights with a PEFT LoRA adapter folded in, one tensor at a time: what the
// `hf` export writes, and what any other exporter (GGUF) can read instead of the raw checkpoint.
//
// Nothing is loaded up front: the checkpoint and the adapter are mapped and checked (every tensor
// the model needs is there with its shape; every adapter tensor has a place and the shape
// adapter_config.json's r implies; every listed target module exists), so an export fails before
// it writes anything. tensor() then merges on demand, W' = W + scale·B·A computed in f32 from the
// stored W (any float dtype), A [r, in] and B [out, r]; GPT-2's Conv1D weights are stored
// [in, out] and get (B·A)^T, as PEFT's fan_in_fan_out does. Peak memory is one tensor, not the
// model, so a 70B bf16 model exports on a machine that cannot hold it in f32.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tune/io/checkpoint.h"
#include "tune/models/export.h"
#include "tune/models/model.h"

namespace tune::models {

// Whether the weights will be merged, or the model only checks an adapter that is exported on
// its own: an adapter on an output head tied to the embeddings cannot be merged (the merge would
// change the embeddings too), but is a valid PEFT adapter.
enum class Merge : uint8_t { yes, check_only };

class MergedWeights {
 public:
  // adapter_dir may be empty (the base weights as stored). Errors name the file, tensor or key
  // and say what to do.
  MergedWeights(const std::string& model_dir, const std::string& adapter_dir,
                Merge merge = Merge::yes);

  const ModelConfig& config() const { return config_; }
  // The checkpoint's tensors, shard by shard, as stored (tensors tune.cpp does not use included).
  const std::vector<std::string>& names() const { return names_; }
  const io::TensorInfo& info(const std::string& name) const { return reader_.info(name); }
  // True for the base weights the adapter changes.
  bool merged(const std::string& name) const { return adapted_.count(name) != 0; }
  // The merged weight in f32 when merged(name), else the stored tensor (a read-only view).
  Tensor tensor(const std::string& name) const;

  bool has_adapter() const { return adapter_.has_value(); }
  const nn::LoraConfig& adapter() const { return *adapter_; }
  // The adapter's tensors under PEFT's current names ("...lora_A.weight", any ".default" of
  // older PEFT versions dropped), in model order, as stored.
  std::vector<std::pair<std::string, Tensor>> adapter_tensors() const;

 private:
  struct Adapted {
    std::string a, b;     // names in the adapter file
    bool in_out = false;  // Conv1D weight [in, out]
  };
  ModelConfig config_;
  io::CheckpointReader reader_;
  std::vector<std::string> names_;
  std::optional<nn::LoraConfig> adapter_;
  io::SafetensorsFile adapter_file_;
  std::vector<std::pair<std::string, std::string>> adapter_names_;  // PEFT name, name in file
  std::map<std::string, Adapted> adapted_;                          // by checkpoint tensor name
};

inline constexpr uint64_t kDefaultMaxShardBytes = 5'000'000'000ull;  // transformers' "5GB"

// export_hf with transformers' max_shard_size: model.safetensors when the weights fit in one
// shard, else model-0000i-of-0000N.safetensors + model.safetensors.index.json.
void export_hf(const ExportOptions& options, uint64_t max_shard_bytes);

// "5GB", "200MB", "1.5GiB", "4096" (bytes) -> bytes; units as transformers reads them (KB, MB,
// GB decimal; KiB, MiB, GiB binary). Throws naming `what` for anything else.
uint64_t parse_byte_size(const std::string& text, const std::string& what);

}  // namespace tune::models
