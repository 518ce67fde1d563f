// CausalLM::forward_batch (src/nn/batched_decode.cpp) on the golden models: a sequence gives the
// same logits to the bit whatever else is in the batch (RowMatmul::independent), matches the
// one-sequence KV-cache path (forward_cached) and, with an adapter from the AdapterBank, the
// model built with that adapter; RowMatmul::batched agrees within float rounding.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tune/infer/batch_engine.h"
#include "tune/models/model.h"
#include "tune/models/peft.h"
#include "tune/nn/adapter_bank.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

const std::string kGolden = std::string(TUNE_TEST_DATA) + "/golden";

std::unique_ptr<models::Model> load(const std::string& name, bool adapter) {
  const std::string dir = kGolden + "/" + name;
  models::ModelOptions options;
  if (adapter) {
    options.training = models::Training::lora;
    options.lora = models::read_adapter_config(dir + "/adapter");
  }
  auto model = models::load_model(dir, options);
  if (adapter) models::load_adapter(*model, dir + "/adapter");
  return model;
}

std::vector<int64_t> prompt_of(int64_t length, int64_t vocab, int64_t salt) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < length; ++i) p.push_back((i * 37 + salt * 101 + 3) % vocab);
  return p;
}

// Logits of each decode step of one sequence: [steps][V].
using Trace = std::vector<std::vector<float>>;

// Runs sequences together: prefill of all (one step), then `steps` decode steps where sequence s
// feeds token (salt[s] * 7 + step) % vocab. Returns each sequence's logits per step.
std::vector<Trace> run_batch(nn::CausalLM& lm, const nn::AdapterBank& bank,
                             const std::vector<std::vector<int64_t>>& prompts,
                             const std::vector<int>& adapters, int64_t steps, nn::RowMatmul rows,
                             std::vector<int64_t> salt = {}) {
  const size_t S = prompts.size();
  const int64_t vocab = lm.config().vocab_size;
  std::vector<nn::KvCache> caches;
  for (size_t s = 0; s < S; ++s)
    caches.push_back(lm.make_cache(static_cast<int64_t>(prompts[s].size()) + steps));
  std::vector<Trace> out(S);
  std::vector<int64_t> next(S);
  if (salt.empty())
    for (size_t s = 0; s < S; ++s) salt.push_back(static_cast<int64_t>(s));
  for (int64_t step = 0; step <= steps; ++step) {
    std::vector<nn::SequenceStep> batch;
    for (size_t s = 0; s < S; ++s) {
      next[s] = (salt[s] * 7 + step) % vocab;
      nn::SequenceStep st;
      st.ids =
          step == 0 ? std::span<const int64_t>(prompts[s]) : std::span<const int64_t>(&next[s], 1);
      st.cache = &caches[s];
      st.adapter = adapters[s];
      batch.push_back(st);
    }
    nn::Context ctx;
    const Tensor logits = lm.forward_batch(ctx, batch, &bank, rows);
    EXPECT_EQ(logits.size(0), static_cast<int64_t>(S));
    for (size_t s = 0; s < S; ++s) {
      const float* r = logits.data<float>() + static_cast<int64_t>(s) * vocab;
      out[s].emplace_back(r, r + vocab);
    }
  }
  return out;
}

TEST(BatchDecode, SequenceIsBitIdenticalWhateverTheBatchHolds) {
  auto model = load("qwen3_qknorm", false);
  nn::AdapterBank bank;
  infer::load_adapter_into_bank(bank, "a1", kGolden + "/qwen3_qknorm/adapter", *model);
  nn::CausalLM& lm = model->lm();
  const int64_t vocab = lm.config().vocab_size;
  // 64 sequences of different lengths, base and adapter rows interleaved.
  std::vector<std::vector<int64_t>> prompts;
  std::vector<int> adapters;
  for (int s = 0; s < 64; ++s) {
    prompts.push_back(prompt_of(1 + (s * 5) % 23, vocab, s));
    adapters.push_back(s % 3 == 1 ? 1 : 0);
  }
  const auto together = run_batch(lm, bank, prompts, adapters, 6, nn::RowMatmul::independent);
  for (int s : {0, 1, 17, 63}) {
    const auto alone =
        run_batch(lm, bank, {prompts[static_cast<size_t>(s)]}, {adapters[static_cast<size_t>(s)]},
                  6, nn::RowMatmul::independent, {s});
    ASSERT_EQ(alone[0].size(), together[static_cast<size_t>(s)].size());
    for (size_t step = 0; step < alone[0].size(); ++step) {
      const auto& a = alone[0][step];
      const auto& b = together[static_cast<size_t>(s)][step];
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
          << "sequence " << s << " step " << step << " differs from the same sequence alone";
    }
  }
  // The batched GEMMs agree within rounding.
  const auto batched = run_batch(lm, bank, prompts, adapters, 6, nn::RowMatmul::batched);
  for (size_t s = 0; s < prompts.size(); ++s)
    for (size_t step = 0; step < batched[s].size(); ++step)
      for (size_t v = 0; v < batched[s][step].size(); ++v)
        ASSERT_NEAR(batched[s][step][v], together[s][step][v], 1e-4)
            << "sequence " << s << " step " << step << " logit " << v;
}

// forward_batch with one sequence against forward_cached: the base model, and the bank's adapter
// against the model built with the same adapter (Linear's own LoRA).
TEST(BatchDecode, MatchesForwardCachedWithAndWithoutAdapter) {
  for (const std::string name : {"qwen3_qknorm", "gpt2_tiny", "mistral_swa", "llama_gqa"}) {
    SCOPED_TRACE(name);
    const bool has_adapter = std::filesystem::exists(kGolden + "/" + name + "/adapter");
    auto base = load(name, false);
    nn::AdapterBank bank;
    if (has_adapter)
      infer::load_adapter_into_bank(bank, "a", kGolden + "/" + name + "/adapter", *base);
    for (int adapter : {0, 1}) {
      if (adapter == 1 && !has_adapter) continue;
      auto ref = load(name, adapter == 1);
      nn::CausalLM& lm = base->lm();
      const int64_t vocab = lm.config().vocab_size;
      const std::vector<int64_t> prompt = prompt_of(9, vocab, 3);
      const auto got = run_batch(lm, bank, {prompt}, {adapter}, 5, nn::RowMatmul::independent);
      nn::KvCache cache = ref->lm().make_cache(20);
      for (int64_t step = 0; step <= 5; ++step) {
        nn::Context ctx;
        const int64_t tok = step % vocab;
        const Tensor ids = step == 0 ? Tensor::from_i64({9}, prompt) : Tensor::from_i64({1}, {tok});
        const Tensor logits = ref->lm().forward_cached(ctx, ids, cache);
        for (int64_t v = 0; v < vocab; ++v)
          ASSERT_NEAR(got[0][static_cast<size_t>(step)][static_cast<size_t>(v)],
                      logits.data<float>()[v], 2e-5)
              << "adapter " << adapter << " step " << step << " logit " << v;
      }
    }
  }
}

// Two adapters and the base model in one batch: adapter 2 is adapter 1 with B scaled by -1.5, so
// its reference is the LoRA model with its lora_B weights scaled the same way.
TEST(BatchDecode, TwoAdaptersAndTheBaseInOneBatch) {
  const std::string name = "llama_gqa";
  auto base = load(name, false);
  nn::AdapterBank bank;
  infer::load_adapter_into_bank(bank, "a1", kGolden + "/" + name + "/adapter", *base);
  std::unordered_map<std::string, nn::LoraDelta> scaled;
  for (nn::Linear* l : base->lm().linears()) {
    const nn::LoraDelta* d = bank.delta(1, l->module());
    if (!d) continue;
    Tensor b = d->b.clone();
    ops::scale_inplace(b, -1.5);
    scaled[l->module()] = {d->a.clone(), b, d->scale};
  }
  ASSERT_FALSE(scaled.empty());
  ASSERT_EQ(bank.add("a2", std::move(scaled)), 2);
  EXPECT_EQ(bank.find("a2"), 2);

  std::vector<std::unique_ptr<models::Model>> refs;
  refs.push_back(load(name, false));
  refs.push_back(load(name, true));
  refs.push_back(load(name, true));
  nn::ParamStore& p2 = refs[2]->params();
  for (int i = 0; i < static_cast<int>(p2.infos().size()); ++i) {
    if (!p2.info(i).name.ends_with(".lora_B.weight")) continue;
    Tensor b = p2.param(i);
    ops::scale_inplace(b, -1.5);
  }
  const int64_t vocab = base->lm().config().vocab_size;
  const std::vector<std::vector<int64_t>> prompts = {prompt_of(7, vocab, 1), prompt_of(4, vocab, 2),
                                                     prompt_of(9, vocab, 3)};
  const auto got = run_batch(base->lm(), bank, prompts, {0, 1, 2}, 4, nn::RowMatmul::independent);
  for (size_t s = 0; s < 3; ++s) {
    nn::KvCache cache = refs[s]->lm().make_cache(20);
    for (int64_t step = 0; step <= 4; ++step) {
      nn::Context ctx;
      const int64_t tok = (static_cast<int64_t>(s) * 7 + step) % vocab;
      const Tensor ids =
          step == 0 ? Tensor::from_i64({static_cast<int64_t>(prompts[s].size())}, prompts[s])
                    : Tensor::from_i64({1}, {tok});
      const Tensor logits = refs[s]->lm().forward_cached(ctx, ids, cache);
      for (int64_t v = 0; v < vocab; ++v)
        ASSERT_NEAR(got[s][static_cast<size_t>(step)][static_cast<size_t>(v)],
                    logits.data<float>()[v], 2e-5)
            << "sequence " << s << " (adapter " << s << ") step " << step << " logit " << v;
    }
  }
  // The adapters really differ from each other and from the base model.
  EXPECT_GT(std::abs(got[1][0][0] - got[2][0][0]) + std::abs(got[1][1][3] - got[2][1][3]), 0.0f);
}

TEST(BatchDecode, AdapterBankRejectsMismatchedAdapter) {
  auto model = load("llama_gqa", false);
  nn::AdapterBank bank;
  // qwen3_qknorm's adapter does not fit llama_gqa's shapes (or modules).
  EXPECT_THROW(infer::load_adapter_into_bank(bank, "x", kGolden + "/qwen3_qknorm/adapter", *model),
               Error);
  EXPECT_EQ(bank.size(), 0);
  EXPECT_EQ(bank.find("x"), -1);
}

}  // namespace
}  // namespace tune
