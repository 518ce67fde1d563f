// The trainer: supervised fine-tuning (LoRA or full) and pretraining of a causal LM on the CPU,
// from a TrainConfig to the files in output.dir:
//   adapter_config.json + adapter_model.safetensors (LoRA, PEFT's layout) or config.json +
//   model.safetensors (full, Hugging Face's layout); the tokenizer files; config.yaml (the
//   resolved config); metrics.jsonl (one JSON object per logged step or evaluation);
//   checkpoints/step-<N>/ (the last training.keep_last).
//
// An optimizer step takes gradient_accumulation_steps micro-batches and normalises the loss by
// the number of counted tokens in all of them together, so its update equals that of one batch
// holding them all. A resumed run continues bit for bit: weights, AdamW moments, the data order's
// position and the step (which seeds dropout) come back from the checkpoint, and metrics lines
// written after that checkpoint by the interrupted run are dropped.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>

#include "tune/core/options.h"
#include "tune/train/config.h"

namespace tune::train {

enum class RunMode : uint8_t {
  fresh,      // output.dir must not hold a run yet
  overwrite,  // replace the run in output.dir
  resume,     // continue from output.dir's latest checkpoint (or start when there is none)
};

struct StepReport {
  int64_t step = 0, total_steps = 0;
  double epoch = 0;  // fractional
  double loss = 0, learning_rate = 0, grad_norm = 0;
  int64_t tokens = 0, counted = 0;  // this step's (non-padding, loss-counted)
  double tokens_per_second = 0, elapsed_seconds = 0;
};

struct EvalReport {
  int64_t step = 0;
  double loss = 0, perplexity = 0;
  int64_t counted = 0;
};

struct TrainerEvents {
  std::function<void(const std::string&)> message;                 // one line of news
  std::function<void(int64_t done, int64_t total)> data_progress;  // tokenizing
  std::function<void(const StepReport&)> step;
  std::function<void(const EvalReport&)> eval;
};

struct RunResult {
  int64_t steps_done = 0, total_steps = 0;
  bool interrupted = false;
  std::string output_dir, checkpoint;
  std::optional<EvalReport> last_eval;
};

// Runs a training job. `options` is the resolved option table `config` was made from (written to
// output.dir/config.yaml and compared on resume). `stop`, when set, is polled after every step:
// the run then saves a checkpoint and returns with interrupted = true.
RunResult run_training(const TrainConfig& config, const Options& options, RunMode mode,
                       const TrainerEvents& events, const std::atomic<bool>* stop = nullptr);

}  // namespace tune::train
