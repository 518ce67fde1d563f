// `tune train`'s configuration: the schema (every key, its kind, default and meaning — the one
// table that YAML files, `key.sub=value` overrides, `--help` and `--print-config` all use) and
// the typed view the trainer reads.
#pragma once

#include <string>
#include <vector>

#include "tune/core/options.h"
#include "tune/data/data.h"
#include "tune/nn/lora.h"

namespace tune::train {

// Every key of a training config, grouped in the sections model, data, adapter, training, output.
std::vector<OptionSpec> train_option_specs();

enum class Init : uint8_t { pretrained, scratch };
enum class Schedule : uint8_t { constant, linear, cosine };

struct ModelSection {
  std::string path;  // a resolved directory (pretrained), or "" (scratch)
  Init init = Init::pretrained;
  std::string config;     // scratch: the directory holding config.json
  std::string tokenizer;  // directory with tokenizer.json (+ tokenizer_config.json)
};

struct AdapterSection {
  bool lora = true;  // adapter.type: lora | none (full fine-tuning)
  nn::LoraConfig config;
};

struct TrainingSection {
  int64_t epochs = 1;
  int64_t max_steps = 0;  // 0: epochs decide
  int64_t micro_batch_size = 4;
  int64_t gradient_accumulation_steps = 1;
  double learning_rate = 2e-4;
  Schedule scheduler = Schedule::linear;
  int64_t warmup_steps = 0;
  double warmup_ratio = 0;
  double weight_decay = 0;
  double max_grad_norm = 1.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
  uint64_t seed = 42;
  int64_t eval_every = 0;
  int64_t save_every = 0;
  int64_t keep_last = 2;
  int64_t log_every = 1;
  int threads = 0;
  bool recompute_blocks = false;  // training.activation_checkpointing: blocks (or +offload)
  bool offload_blocks = false;    // training.activation_checkpointing: blocks+offload
  Device device = Device::cpu;    // training.device
  DType dtype = DType::f32;       // training.precision (auto resolved by device)
};

struct OutputSection {
  std::string dir = "output";
  std::string dtype;  // "": the input model's
};

struct TrainConfig {
  ModelSection model;
  data::DataConfig data;
  AdapterSection adapter;
  TrainingSection training;
  OutputSection output;
};

// Checks the values together (ranges, a scratch model has a config, ...) and returns the typed
// config. Errors name the key and where its value came from.
TrainConfig make_train_config(const Options& options);

// A model path as users write it: an existing directory, or a Hub id ("org/name") looked up
// read-only in the local Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or
// ~/.cache/huggingface/hub: models--org--name/snapshots/<revision>, the one refs/main names or
// else the newest). The error lists where it looked.
std::string resolve_model_path(const std::string& path);

// The learning rate of optimizer step `step` (0-based) of `total`: linear warm-up from 0 over
// `warmup` steps, then constant, linear decay to 0, or cosine decay to 0 — Hugging Face's
// get_{constant,linear,cosine}_schedule_with_warmup.
double learning_rate_at(Schedule schedule, double base_lr, int64_t step, int64_t warmup,
                        int64_t total);

}  // namespace tune::train
