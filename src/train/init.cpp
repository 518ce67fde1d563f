// Initial weights for scratch models and LoRA adapters.
#include "tune/train/init.h"

#include <cmath>

#include "tune/core/rng.h"

namespace tune::train {

namespace {

// Philox streams: scratch weights and LoRA weights never share one, whatever the seed.
constexpr uint64_t kScratchStream = 1ull << 32;
constexpr uint64_t kLoraStream = 2ull << 32;

void fill(Tensor t, float value) {
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = value;
}

bool is_lora(const std::string& name) {
  return name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight");
}

}  // namespace

void init_scratch_weights(models::Model& model, double std, uint64_t seed) {
  nn::ParamStore& params = model.params();
  TUNE_CHECK(params.dtype() == DType::f32, "init_scratch_weights: parameters must be f32, not ",
             dtype_name(params.dtype()));
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    const std::string& name = params.info(i).name;
    if (is_lora(name)) continue;
    Tensor w = params.param(i);
    if (name.ends_with(".bias")) {
      fill(w, 0.0f);
    } else if (name.find("norm") != std::string::npos || name.find(".ln_") != std::string::npos) {
      fill(w, 1.0f);
    } else {
      // GPT-2 (as transformers initialises it) scales the residual projections by
      // 1 / sqrt(2 * n_layer).
      double scale = std;
      if (model.config().model_type == "gpt2" && name.ends_with("c_proj.weight"))
        scale /= std::sqrt(2.0 * static_cast<double>(model.config().arch.num_layers));
      float* p = w.data<float>();
      for (int64_t j = 0; j < w.numel(); ++j) {
        p[j] = static_cast<float>(scale) * normal01(seed, kScratchStream + i, j);
      }
    }
  }
}

void init_lora_weights(models::Model& model, uint64_t seed) {
  nn::ParamStore& params = model.params();
  TUNE_CHECK(params.dtype() == DType::f32, "init_lora_weights: parameters must be f32, not ",
             dtype_name(params.dtype()));
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    const std::string& name = params.info(i).name;
    Tensor w = params.param(i);
    if (name.ends_with(".lora_B.weight")) {
      fill(w, 0.0f);
    } else if (name.ends_with(".lora_A.weight")) {
      const float bound = 1.0f / std::sqrt(static_cast<float>(w.size(1)));  // A is [r, in]
      float* p = w.data<float>();
      for (int64_t j = 0; j < w.numel(); ++j) {
        p[j] = bound * (2.0f * uniform01(seed, kLoraStream + i, j) - 1.0f);
      }
    }
  }
}

}  // namespace tune::train
