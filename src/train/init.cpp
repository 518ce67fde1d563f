// Initial weights for scratch models and LoRA adapters.
#include "tune/train/init.h"

#include <algorithm>
#include <cmath>

#include "tune/core/rng.h"

namespace tune::train {

namespace {

// Philox streams: scratch weights and LoRA weights never share one, whatever the seed.
constexpr uint64_t kScratchStream = 1ull << 32;
constexpr uint64_t kLoraStream = 2ull << 32;

// Values are drawn in f32 on the host, then converted to the parameters' dtype and copied to
// their device: the same seed gives the same weights (up to rounding) whatever the placement.
// Large tensors go in slices, so a host copy of the whole model never exists.
constexpr int64_t kSliceElements = int64_t{1} << 24;

template <typename Draw>
void set_values(Tensor w, Draw draw) {
  const Tensor flat = w.view({w.numel()});
  for (int64_t begin = 0; begin < flat.numel(); begin += kSliceElements) {
    const int64_t n = std::min(kSliceElements, flat.numel() - begin);
    Tensor host = Tensor::empty({n}, DType::f32);
    float* p = host.data<float>();
    for (int64_t j = 0; j < n; ++j) p[j] = draw(begin + j);
    Tensor dst = flat.narrow(begin, n);
    dst.copy_from(host);
  }
}

void fill(Tensor t, float value) {
  set_values(t, [value](int64_t) { return value; });
}

bool is_lora(const std::string& name) {
  return name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight");
}

}  // namespace

void init_scratch_weights(models::Model& model, double std, uint64_t seed) {
  nn::ParamStore& params = model.params();
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
      const float s = static_cast<float>(scale);
      const uint64_t stream = kScratchStream + static_cast<uint64_t>(i);
      set_values(w,
                 [&](int64_t j) { return s * normal01(seed, stream, static_cast<uint64_t>(j)); });
    }
  }
}

void init_lora_weights(models::Model& model, uint64_t seed) {
  nn::ParamStore& params = model.params();
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    const std::string& name = params.info(i).name;
    Tensor w = params.param(i);
    if (name.ends_with(".lora_B.weight")) {
      fill(w, 0.0f);
    } else if (name.ends_with(".lora_A.weight")) {
      const float bound = 1.0f / std::sqrt(static_cast<float>(w.size(1)));  // A is [r, in]
      const uint64_t stream = kLoraStream + static_cast<uint64_t>(i);
      set_values(w, [&](int64_t j) {
        return bound * (2.0f * uniform01(seed, stream, static_cast<uint64_t>(j)) - 1.0f);
      });
    }
  }
}

}  // namespace tune::train
