// Training on CUDA, beyond the golden cases (ctest gpu.golden_*): activation checkpointing per
// block, with and without offloading the block inputs to pinned host memory, must give the very
// same loss and gradients as keeping every activation (the kernels are deterministic and dropout
// masks are a function of the step), with less device memory, and `blocks` must rerun each block
// with the attention output it kept rather than the attention forward; and the mixed-precision
// optimizer's f32 masters must carry updates that bf16 parameters alone would round away; and a
// vocabulary that is not a multiple of 64 (the head's products over a padded copy of its weight)
// must give the loss and gradients of the plain head.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tune/models/model.h"
#include "tune/nn/context.h"
#include "tune/nn/loss.h"
#include "tune/ops/ops.h"
#include "tune/train/init.h"
#include "tune/train/optim.h"

namespace tune {
namespace {

const std::string kGolden = std::string(TUNE_TEST_DATA) + "/golden/";

enum class Checkpointing { none, blocks, offload };

struct Pass {
  std::vector<float> grads;
  double loss = 0;
  size_t arena = 0;
};

Pass run(const std::string& name, models::Training training, DType dtype, Checkpointing ckpt) {
  models::ModelOptions options;
  options.training = training;
  options.dtype = dtype;
  options.device = Device::cuda;
  options.lora.r = 4;
  options.lora.dropout = 0.2;  // the recomputed forward must draw the same masks
  auto model = models::load_model(kGolden + name, options);
  if (training == models::Training::lora) train::init_lora_weights(*model, 3);
  // Packed rows (two documents in the first row) of a length no tile divides.
  const int64_t B = 2, T = 37;
  std::vector<int64_t> ids(B * T), pos(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    ids[i] = (i * 7 + 3) % model->config().arch.vocab_size;
    pos[i] = i < T ? (i < 20 ? i : i - 20) : i - T;
  }
  const Tensor t_ids = Tensor::from_i64({B, T}, ids), t_pos = Tensor::from_i64({B, T}, pos);
  nn::Context ctx(Device::cuda);
  ctx.step = 5;
  ctx.recompute_blocks = ckpt != Checkpointing::none;
  ctx.offload_blocks = ckpt == Checkpointing::offload;
  model->params().zero_grads();
  Pass p;
  p.loss = model->lm().forward_backward(ctx, t_ids, t_pos, t_ids, 0).mean();
  p.grads = model->params().grads().to(Device::cpu).to(DType::f32).to_f32_vector();
  p.arena = ctx.arena.peak_bytes();
  return p;
}

TEST(CudaTrain, CheckpointingAndOffloadGiveTheSameGradients) {
  for (const char* name : {"llama_gqa", "qwen3_qknorm", "mistral_swa", "gpt2_tiny"}) {
    for (auto training : {models::Training::full, models::Training::lora}) {
      for (DType dtype : {DType::f32, DType::bf16}) {
        SCOPED_TRACE(
            str(name, training == models::Training::lora ? " lora " : " full ", dtype_name(dtype)));
        const Pass plain = run(name, training, dtype, Checkpointing::none);
        for (Checkpointing ckpt : {Checkpointing::blocks, Checkpointing::offload}) {
          SCOPED_TRACE(ckpt == Checkpointing::blocks ? "blocks" : "blocks+offload");
          const Pass again = run(name, training, dtype, ckpt);
          EXPECT_EQ(plain.loss, again.loss);
          ASSERT_EQ(plain.grads.size(), again.grads.size());
          EXPECT_EQ(0, std::memcmp(plain.grads.data(), again.grads.data(),
                                   plain.grads.size() * sizeof(float)));
          EXPECT_LT(again.arena, plain.arena);
        }
      }
    }
  }
}

// In `blocks` mode each block's flash-attention output and lse are kept from the first forward,
// and the recomputation in backward reads them instead of running the attention forward again:
// zeroing one layer's kept output between forward and backward must change the gradients (with
// the same step otherwise bit-identical), and offloading keeps nothing.
TEST(CudaTrain, BlocksCheckpointingReusesTheKeptAttention) {
  models::ModelOptions options;
  options.training = models::Training::full;
  options.dtype = DType::bf16;
  options.device = Device::cuda;
  auto model = models::load_model(kGolden + "llama_gqa", options);
  const auto& arch = model->config().arch;
  const int64_t B = 2, T = 37;
  std::vector<int64_t> ids(B * T), pos(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    ids[i] = (i * 7 + 3) % arch.vocab_size;
    pos[i] = i % T;
  }
  const Tensor t_ids = Tensor::from_i64({B, T}, ids), t_pos = Tensor::from_i64({B, T}, pos);
  enum class Poison { none, kept_out };
  auto grads = [&](bool offload, Poison poison) {
    nn::Context ctx(Device::cuda);
    ctx.step = 5;
    ctx.recompute_blocks = true;
    ctx.offload_blocks = offload;
    model->params().zero_grads();
    Tensor logits = model->lm().forward(ctx, t_ids, t_pos);
    const std::vector<nn::KeptAttention>& kept = model->lm().kept_attention();
    if (offload) {
      EXPECT_TRUE(kept.empty());
    } else {
      EXPECT_EQ(kept.size(), static_cast<size_t>(arch.num_layers));
      for (const nn::KeptAttention& k : kept) {
        EXPECT_EQ(k.out.shape(), Shape({B, T, arch.num_heads, arch.head_dim}));
        EXPECT_EQ(k.lse.shape(), Shape({B, arch.num_heads, T}));
      }
    }
    if (poison == Poison::kept_out) {
      Tensor out = kept.at(0).out;
      ops::fill(out, 0.0);
    }
    Tensor dlogits = ctx.arena.alloc(logits.shape(), logits.dtype());
    nn::causal_lm_loss(dlogits, logits, t_ids);
    model->lm().backward(ctx, dlogits);
    return model->params().grads().to(Device::cpu).to(DType::f32).to_f32_vector();
  };
  const std::vector<float> kept = grads(false, Poison::none);
  const std::vector<float> offloaded = grads(true, Poison::none);
  ASSERT_EQ(kept.size(), offloaded.size());
  EXPECT_EQ(0, std::memcmp(kept.data(), offloaded.data(), kept.size() * sizeof(float)));
  const std::vector<float> poisoned = grads(false, Poison::kept_out);
  EXPECT_NE(0, std::memcmp(kept.data(), poisoned.data(), kept.size() * sizeof(float)))
      << "the recomputation did not read the kept attention output";
}

// An update of 1e-4 on weights near 1 is far below bf16's resolution (2^-8 to 2^-7 there): a bf16
// weight updated in place would never move, but the f32 master accumulates the steps and the bf16
// copy follows once they add up.
TEST(CudaTrain, MixedPrecisionMastersKeepSmallUpdates) {
  models::ModelOptions options;
  options.training = models::Training::full;
  options.dtype = DType::bf16;
  options.device = Device::cuda;
  auto model = models::load_model(kGolden + "llama_gqa", options);
  nn::ParamStore& params = model->params();
  const int norm = params.index("model.norm.weight");
  ASSERT_GE(norm, 0);
  const float before = static_cast<float>(params.param(norm).to(Device::cpu).item(0));
  train::AdamWConfig cfg;
  cfg.lr = 1e-4;
  cfg.weight_decay = 0;
  train::AdamW opt(params, cfg);
  ASSERT_TRUE(opt.mixed_precision());
  // A constant gradient of 1 everywhere: Adam moves every weight by lr each step.
  Tensor ones = test::full({params.trainable_numel()}, DType::f32, 1.0);
  params.grads().copy_from(ones);
  for (int s = 0; s < 80; ++s) opt.step(cfg.lr);
  const Tensor master = opt.weights().narrow(params.info(norm).offset, 1).to(Device::cpu);
  EXPECT_NEAR(master.item(0), before - 80 * 1e-4, 1e-5);
  const double after = params.param(norm).to(Device::cpu).item(0);
  EXPECT_NE(after, before);  // 80 steps of 1e-4 = 8e-3: at least one bf16 step below 2.0
  EXPECT_NEAR(after, before - 80 * 1e-4, 8e-3);
}

// GPT-2's 50257 words leave the logits' rows misaligned for cuBLASLt's fast kernels, so the
// training loss (CausalLM::head_loss) multiplies by a copy of the head padded to a multiple of 64
// words, with -inf logits on the padding. Against the plain head (CausalLM::forward, then the loss
// and backward): the same loss and gradients, and a target among the padding words is an error.
TEST(CudaTrain, PaddedVocabularyHeadMatchesThePlainHead) {
  std::ifstream file(kGolden + "gpt2_tiny/config.json");
  nlohmann::json json = nlohmann::json::parse(file);
  const int64_t B = 2, T = 37, V = 500;
  json["vocab_size"] = V;  // padded to 512
  const models::ModelConfig config = models::parse_model_config(json, "gpt2_tiny, 500 words");
  std::vector<int64_t> ids(B * T), pos(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    ids[i] = (i * 7 + 3) % V;
    pos[i] = i % T;
  }
  ids[5] = V - 1;  // the last word, next to the padding
  const Tensor t_ids = Tensor::from_i64({B, T}, ids), t_pos = Tensor::from_i64({B, T}, pos);
  struct Result {
    double loss;
    Tensor grads;  // f64 on the host
  };
  // plain: CausalLM::forward (the head's Linear, logits of V columns), then the loss and backward.
  auto run = [&](DType dtype, bool plain, const Tensor& labels) {
    models::ModelOptions options;
    options.dtype = dtype;
    options.device = Device::cuda;
    models::Model model(config, options);
    nn::ParamStore& params = model.params();
    params.trainable().copy_from(
        test::randn({params.trainable_numel()}, DType::f32, 11, 0.1).to(dtype));
    nn::Context ctx(Device::cuda);
    params.zero_grads();
    Result r;
    if (plain) {
      Tensor logits = model.lm().forward(ctx, t_ids, t_pos);
      EXPECT_EQ(logits.size(1), V);
      Tensor dlogits = ctx.arena.alloc(logits.shape(), logits.dtype());
      r.loss = nn::causal_lm_loss(dlogits, logits, labels).mean();
      model.lm().backward(ctx, dlogits);
    } else {
      r.loss = model.lm().forward_backward(ctx, t_ids, t_pos, labels, 0).mean();
    }
    r.grads = params.grads().to(Device::cpu).to(DType::f64);
    return r;
  };
  const Result plain = run(DType::f32, true, t_ids);
  const Result padded = run(DType::f32, false, t_ids);
  EXPECT_NEAR(padded.loss, plain.loss, 1e-5 * plain.loss);
  EXPECT_LE(test::rel_error(padded.grads, plain.grads), 1e-5);
  // bf16 weights and activations (f32 logits) against the f32 head, as the golden cases compare.
  const Result low = run(DType::bf16, false, t_ids);
  EXPECT_NEAR(low.loss, plain.loss, 2e-2 * plain.loss);
  EXPECT_LE(test::rel_error(low.grads, plain.grads), 2e-2);

  std::vector<int64_t> bad = ids;
  bad[40] = V + 3;  // a padding word
  EXPECT_THROW(run(DType::f32, false, Tensor::from_i64({B, T}, bad)), Error);
}

}  // namespace
}  // namespace tune
