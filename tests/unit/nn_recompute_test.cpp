// Activation checkpointing per block: recomputing each block in backward must give the very same
// gradients (CPU kernels are deterministic, and dropout masks are a function of the step), with
// less activation memory.
#include <gtest/gtest.h>

#include <cstring>

#include "tune/models/model.h"
#include "tune/nn/context.h"
#include "tune/nn/loss.h"
#include "tune/train/init.h"

namespace tune {
namespace {

const std::string kGolden = std::string(TUNE_TEST_DATA) + "/golden/";

struct Pass {
  std::vector<float> grads;
  double loss = 0;
  size_t peak = 0;
};

Pass run(const std::string& name, models::Training training, bool recompute) {
  models::ModelOptions options;
  options.training = training;
  options.lora.r = 4;
  options.lora.dropout = 0.2;  // the recomputed forward must draw the same masks
  auto model = models::load_model(kGolden + name, options);
  if (training == models::Training::lora) train::init_lora_weights(*model, 3);
  // Packed rows: two documents in the first row (positions restart), as the trainer feeds them.
  const int64_t B = 2, T = 16;
  std::vector<int64_t> ids(B * T), pos(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    ids[i] = (i * 7 + 3) % model->config().arch.vocab_size;
    pos[i] = i < T ? (i < 9 ? i : i - 9) : i - T;
  }
  const Tensor t_ids = Tensor::from_i64({B, T}, ids), t_pos = Tensor::from_i64({B, T}, pos);
  nn::Context ctx;
  ctx.step = 5;
  ctx.recompute_blocks = recompute;
  model->params().zero_grads();
  Tensor logits = model->lm().forward(ctx, t_ids, t_pos);
  // The CPU's attention backward reads the probabilities (O(T^2) a layer), so its recomputation
  // keeps no attention and reruns it; CUDA keeps out and lse (tests/gpu/train_test.cpp).
  EXPECT_TRUE(model->lm().kept_attention().empty());
  Tensor dlogits = ctx.arena.alloc(logits.shape(), logits.dtype());
  Pass p;
  p.loss = nn::causal_lm_loss(dlogits, logits, t_ids).mean();
  model->lm().backward(ctx, dlogits);
  p.grads = model->params().grads().to_f32_vector();
  p.peak = ctx.arena.peak_bytes();
  return p;
}

TEST(NnRecompute, SameGradientsLessMemory) {
  for (const char* name : {"llama_gqa", "qwen3_qknorm", "mistral_swa"}) {
    for (auto training : {models::Training::full, models::Training::lora}) {
      SCOPED_TRACE(std::string(name) + (training == models::Training::lora ? " lora" : " full"));
      const Pass plain = run(name, training, false);
      const Pass again = run(name, training, true);
      EXPECT_EQ(plain.loss, again.loss);
      ASSERT_EQ(plain.grads.size(), again.grads.size());
      EXPECT_EQ(0, std::memcmp(plain.grads.data(), again.grads.data(),
                               plain.grads.size() * sizeof(float)))
          << "recomputed gradients differ";
      EXPECT_LT(again.peak, plain.peak) << "recomputation should need less activation memory";
    }
  }
}

TEST(NnRecompute, ArenaReleaseIsStackLike) {
  nn::Arena arena;
  Tensor a = arena.alloc({1000}, DType::f32);
  const nn::Arena::Mark m = arena.mark();
  arena.alloc({5000}, DType::f32);
  Tensor big = arena.alloc({300000}, DType::f32);  // spills into a second block
  arena.release(m);
  Tensor b = arena.alloc({10}, DType::f32);
  EXPECT_EQ(static_cast<char*>(b.raw()), static_cast<char*>(a.raw()) + 4032)
      << "after release, allocation continues right after the mark";
  arena.reset();
  EXPECT_GE(arena.capacity_bytes(), arena.peak_bytes());
}

}  // namespace
}  // namespace tune
