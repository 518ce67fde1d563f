// Training checkpoints: written whole or not at all, read back exactly.
#include "tune/train/checkpoints.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "tune/core/error.h"
#include "tune/io/files.h"
#include "tune/io/safetensors.h"

namespace tune::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kTensorsFile = "state.safetensors";

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

// Complete checkpoints, oldest first.
std::vector<fs::path> checkpoints(const std::string& run_dir) {
  std::vector<fs::path> out;
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("step-", 0) == 0 &&
        fs::is_regular_file(e.path() / kStateFile)) {
      out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void fsync_dir(const fs::path& dir) {
  if (FILE* f = std::fopen(dir.c_str(), "r")) {
    fsync(fileno(f));
    std::fclose(f);
  }
}

}  // namespace

void remove_stale_checkpoint_temps(const std::string& run_dir) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  if (!fs::is_directory(dir)) return;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind(".step-", 0) == 0) fs::remove_all(e.path());
  }
}

std::string save_checkpoint(const std::string& run_dir, const TrainerState& state,
                            const nn::ParamStore& params, AdamW& optimizer, int64_t keep_last) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  fs::create_directories(dir);
  const std::string name = step_name(state.step);
  const fs::path temp = dir / ("." + name + ".tmp-" + std::to_string(getpid()));
  const fs::path final_path = dir / name;
  fs::remove_all(temp);
  fs::create_directories(temp);
  try {
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
      const nn::ParamInfo& p = params.info(i);
      if (p.role != nn::Role::trainable) continue;
      const int64_t n = numel_of(p.shape);
      // The optimizer's weights: under mixed precision its f32 masters, not their rounding.
      auto host = [&](Tensor& buffer) {
        return buffer.narrow(p.offset, n).view(p.shape).to(Device::cpu);
      };
      tensors.emplace_back("param/" + p.name, host(optimizer.weights()));
      tensors.emplace_back("exp_avg/" + p.name, host(optimizer.exp_avg()));
      tensors.emplace_back("exp_avg_sq/" + p.name, host(optimizer.exp_avg_sq()));
    }
    io::write_safetensors((temp / kTensorsFile).string(), tensors, {{"format", "tune"}});
    nlohmann::ordered_json j = {
        {"step", state.step},
        {"optimizer_steps", optimizer.steps_taken()},
        {"epoch", state.loader.epoch},
        {"epoch_position", state.loader.position},
        {"tokens_seen", state.tokens_seen},
        {"elapsed_seconds", state.elapsed_seconds},
        {"config", state.config},
    };
    if (state.loss_scale > 0) {
      j["loss_scale"] = state.loss_scale;
      j["loss_scale_finite_steps"] = state.loss_scale_finite_steps;
    }
    io::write_file_atomic((temp / kStateFile).string(), j.dump(2) + "\n");
    // Publish: an existing folder of the same step (saved again after a resume) is replaced.
    if (fs::exists(final_path)) fs::remove_all(final_path);
    fs::rename(temp, final_path);
    fsync_dir(dir);
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove_all(temp, ignored);
    const auto kept = checkpoints(run_dir);
    throw Error(str("could not write checkpoint ", final_path.string(), ": ", e.what(),
                    kept.empty() ? std::string("")
                                 : str(". The previous checkpoint ", kept.back().string(),
                                       " is intact; free space and resume with --resume")));
  }
  auto all = checkpoints(run_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i) fs::remove_all(all[i]);
  return final_path.string();
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  auto all = checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  return all.back().string();
}

TrainerState read_checkpoint_state(const std::string& checkpoint_dir) {
  const nlohmann::json j = io::read_json_file(checkpoint_dir + "/" + kStateFile);
  TrainerState s;
  try {
    s.step = j.at("step").get<int64_t>();
    s.loader.epoch = j.at("epoch").get<int64_t>();
    s.loader.position = j.at("epoch_position").get<int64_t>();
    s.tokens_seen = j.at("tokens_seen").get<int64_t>();
    s.elapsed_seconds = j.at("elapsed_seconds").get<double>();
    s.config = j.at("config");
    s.loss_scale = j.value("loss_scale", 0.0);
    s.loss_scale_finite_steps = j.value("loss_scale_finite_steps", int64_t{0});
  } catch (const nlohmann::json::exception& e) {
    throw Error(str(checkpoint_dir, "/", kStateFile, ": ", e.what(),
                    ". The checkpoint is damaged; resume from an older one or start over."));
  }
  return s;
}

void load_checkpoint_weights(const std::string& checkpoint_dir, nn::ParamStore& params,
                             AdamW& optimizer, int64_t step) {
  const std::string path = checkpoint_dir + "/" + kTensorsFile;
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    const nn::ParamInfo& p = params.info(i);
    if (p.role != nn::Role::trainable) continue;
    const int64_t n = numel_of(p.shape);
    Tensor m = optimizer.exp_avg().narrow(p.offset, n).view(p.shape);
    Tensor v = optimizer.exp_avg_sq().narrow(p.offset, n).view(p.shape);
    Tensor w = optimizer.weights().narrow(p.offset, n).view(p.shape);
    for (auto& [prefix, dst] :
         {std::pair<std::string, Tensor*>{"param/", &w}, {"exp_avg/", &m}, {"exp_avg_sq/", &v}}) {
      const std::string name = prefix + p.name;
      TUNE_CHECK(file.contains(name), path, ": tensor \"", name,
                 "\" is missing: this checkpoint was made for another model or adapter. Start "
                 "over with --overwrite, or use the config the checkpoint was made with.");
      const Tensor src = file.tensor(name);
      TUNE_CHECK(src.shape() == p.shape, path, ": tensor \"", name, "\" has shape ",
                 shape_str(src.shape()), " but the model's is ", shape_str(p.shape));
      dst->copy_from(src);
    }
  }
  optimizer.weights_changed();
  optimizer.set_steps_taken(step);
}

}  // namespace tune::train
