// The chunked output head + loss (CausalLM::forward_backward / forward_loss) against the plain
// path (forward -> logits -> causal_lm_loss -> backward): the same loss and gradients, in f64 to
// rounding, for any chunk size, tied and untied heads, full fine-tuning and LoRA on the head.
#include <gtest/gtest.h>

#include <cmath>

#include "tune/models/model.h"
#include "tune/nn/context.h"
#include "tune/nn/loss.h"
#include "tune/train/init.h"

namespace tune {
namespace {

const std::string kGolden = std::string(TUNE_TEST_DATA) + "/golden/";

struct Case {
  std::unique_ptr<models::Model> model;
  Tensor ids, positions, labels;
};

Case make(const std::string& name, models::Training training) {
  models::ModelOptions options;
  options.dtype = DType::f64;
  options.training = training;
  options.lora.r = 4;
  options.lora.targets = {"q_proj", "v_proj", "c_attn", "lm_head"};
  Case c;
  c.model = models::load_model(kGolden + name, options);
  if (training == models::Training::lora) {
    // B = 0 after PEFT's init would hide the head's LoRA path: give every LoRA tensor values.
    nn::ParamStore& p = c.model->params();
    for (int i = 0; i < static_cast<int>(p.infos().size()); ++i) {
      if (p.info(i).role != nn::Role::trainable) continue;
      Tensor w = p.param(i);
      for (int64_t j = 0; j < w.numel(); ++j) w.data<double>()[j] = 0.01 * std::sin(1.0 + i + j);
    }
  }
  const int64_t B = 3, T = 11, V = c.model->config().arch.vocab_size;
  std::vector<int64_t> ids(B * T), labels(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    ids[i] = (i * 13 + 5) % V;
    labels[i] = i % 5 == 2 ? -100 : ids[i];  // some labels ignored
  }
  c.ids = Tensor::from_i64({B, T}, ids);
  c.labels = Tensor::from_i64({B, T}, labels);
  c.positions = nn::default_positions(B, T);
  return c;
}

double max_rel(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    num = std::max(num, std::abs(a.item(i) - b.item(i)));
    den = std::max(den, std::abs(b.item(i)));
  }
  return den > 0 ? num / den : num;
}

TEST(NnFusedHead, SameLossAndGradientsForAnyChunk) {
  for (const char* name : {"llama_gqa", "llama3_rope_tied", "gpt2_tiny"}) {
    for (auto training : {models::Training::full, models::Training::lora}) {
      SCOPED_TRACE(std::string(name) + (training == models::Training::lora ? " lora" : " full"));
      Case c = make(name, training);
      nn::CausalLM& lm = c.model->lm();
      nn::ParamStore& params = c.model->params();

      nn::Context ctx;
      params.zero_grads();
      Tensor logits = lm.forward(ctx, c.ids, c.positions);
      Tensor dlogits = ctx.arena.alloc(logits.shape(), logits.dtype());
      const nn::LossResult ref = nn::causal_lm_loss(dlogits, logits, c.labels, 40.0);
      lm.backward(ctx, dlogits);
      const Tensor ref_grads = params.grads().clone();

      for (int64_t chunk : {1, 7, 13, 33, 0}) {
        SCOPED_TRACE("chunk rows " + std::to_string(chunk));
        nn::Context fctx;
        params.zero_grads();
        const nn::LossResult r =
            lm.forward_backward(fctx, c.ids, c.positions, c.labels, 40.0, chunk);
        EXPECT_EQ(r.count, ref.count);
        EXPECT_NEAR(r.sum, ref.sum, 1e-12 * std::abs(ref.sum));
        EXPECT_LT(max_rel(params.grads(), ref_grads), 1e-12);
        nn::Context ectx;
        ectx.mode = nn::Mode::eval;
        const nn::LossResult e = lm.forward_loss(ectx, c.ids, c.positions, c.labels, chunk);
        EXPECT_NEAR(e.sum, ref.sum, 1e-12 * std::abs(ref.sum));
      }
    }
  }
}

}  // namespace
}  // namespace tune
