// Training checkpoints: everything an interrupted run needs to continue exactly where it stopped
// — trainable weights, AdamW moments, the step, the data order's position and the resolved
// config — in output.dir/checkpoints/step-<N>/. A checkpoint is assembled in a hidden temporary
// folder and renamed into place only when complete, so a crash, SIGKILL or full disk while
// saving leaves the previous checkpoints as they were.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tune/data/data.h"
#include "tune/nn/params.h"
#include "tune/train/optim.h"

namespace tune::train {

struct TrainerState {
  int64_t step = 0;  // optimizer steps completed
  data::Loader::State loader;
  int64_t tokens_seen = 0;
  double elapsed_seconds = 0;
  nlohmann::ordered_json config;  // the resolved config, flat {key: value}
  // f16 training's LossScaler (scale 0: none).
  double loss_scale = 0;
  int64_t loss_scale_finite_steps = 0;
};

// Writes run_dir/checkpoints/step-<state.step> and then removes all but the newest `keep_last`.
// Returns the checkpoint's path.
std::string save_checkpoint(const std::string& run_dir, const TrainerState& state,
                            const nn::ParamStore& params, AdamW& optimizer, int64_t keep_last);

// The newest complete checkpoint in run_dir/checkpoints, if any.
std::optional<std::string> latest_checkpoint(const std::string& run_dir);

// Reads a checkpoint's state (without touching any weights): for comparing configs first.
TrainerState read_checkpoint_state(const std::string& checkpoint_dir);

// Restores trainable weights and optimizer state. Every trainable parameter must be present with
// its shape; errors name the tensor and the checkpoint.
void load_checkpoint_weights(const std::string& checkpoint_dir, nn::ParamStore& params,
                             AdamW& optimizer, int64_t step);

// Removes half-written checkpoint folders a killed run left behind.
void remove_stale_checkpoint_temps(const std::string& run_dir);

}  // namespace tune::train
