// CausalLM::decode_step — the graph-capturable decode step the CUDA paths replay — against
// forward_cached on the CPU, on every golden model: one sequence (its cache one page; q|k|v and
// gate|up multiplied as stacked weights), and several sequences in one pool with a block table.
// Also Linear::stacked_weight's conditions.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "test_util.h"
#include "tune/models/model.h"
#include "tune/models/peft.h"

namespace tune {
namespace {

namespace fs = std::filesystem;

const std::string kGolden = std::string(TUNE_TEST_DATA) + "/golden";

std::vector<std::string> golden_cases() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(kGolden))
    if (fs::exists(e.path() / "config.json")) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::unique_ptr<models::Model> load(const std::string& name) {
  models::ModelOptions options;
  options.training = models::Training::none;
  return models::load_model(kGolden + "/" + name, options);
}

std::vector<int64_t> prompt_of(int64_t length, int64_t vocab, int64_t salt) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < length; ++i) p.push_back((i * 37 + salt * 101 + 3) % vocab);
  return p;
}

TEST(DecodeStep, OneSequenceEqualsForwardCached) {
  for (const std::string& name : golden_cases()) {
    SCOPED_TRACE(name);
    auto model = load(name);
    nn::CausalLM& lm = model->lm();
    const int64_t vocab = lm.config().vocab_size, capacity = 40;
    const std::vector<int64_t> prompt = prompt_of(13, vocab, 1);
    nn::Context ctx;
    nn::KvCache ref = lm.make_cache(capacity), cache = lm.make_cache(capacity);
    const Tensor ids = Tensor::from_i64({13}, prompt);
    lm.forward_cached(ctx, ids, ref);
    lm.forward_cached(ctx, ids, cache);
    nn::DecodeInputs in(Device::cpu, 1, 1, capacity);
    for (int64_t s = 0; s < 9; ++s) {
      const int64_t token = (s * 53 + 7) % vocab;
      ctx.arena.reset();
      const Tensor want = lm.forward_cached(ctx, Tensor::from_i64({1}, {token}), ref).clone();
      in.set(token, cache.length());
      const Tensor got = lm.decode_step(ctx, in, cache);
      cache.advance(1);
      EXPECT_LE(test::rel_error(got.to(DType::f64), want.to(DType::f64)), 1e-5) << "step " << s;
    }
  }
}

TEST(DecodeStep, SequencesInOnePoolEqualForwardCached) {
  auto model = load("llama_gqa");
  nn::CausalLM& lm = model->lm();
  const int64_t vocab = lm.config().vocab_size, page = 8, pages_per_seq = 4, seqs = 3;
  nn::KvCache pool = lm.make_cache(seqs * pages_per_seq * page);
  // Sequence s owns pages s, s + 3, s + 6, s + 9: interleaved, so the block table matters.
  std::vector<nn::KvCache> refs;
  std::vector<int64_t> lengths;
  nn::Context ctx;
  for (int64_t s = 0; s < seqs; ++s) {
    refs.push_back(lm.make_cache(pages_per_seq * page));
    const std::vector<int64_t> prompt = prompt_of(5 + 3 * s, vocab, s);
    lm.forward_cached(ctx, Tensor::from_i64({static_cast<int64_t>(prompt.size())}, prompt),
                      refs.back());
    // The same keys and values into the pool, through one-token decode steps of this sequence.
    lengths.push_back(0);
  }
  std::vector<int32_t> table;
  for (int64_t s = 0; s < seqs; ++s)
    for (int64_t p = 0; p < pages_per_seq; ++p) table.push_back(static_cast<int32_t>(p * seqs + s));
  auto slot_of = [&](int64_t s, int64_t position) {
    return static_cast<int32_t>(
        table[static_cast<size_t>(s * pages_per_seq + position / page)] * page + position % page);
  };
  // Prefill the pool token by token with single-row steps, then decode all three together.
  nn::DecodeInputs one(Device::cpu, 1, pages_per_seq, page);
  for (int64_t s = 0; s < seqs; ++s) {
    const std::vector<int64_t> prompt = prompt_of(5 + 3 * s, vocab, s);
    for (int64_t t = 0; t < static_cast<int64_t>(prompt.size()); ++t) {
      ctx.arena.reset();
      std::vector<int32_t> row(table.begin() + s * pages_per_seq,
                               table.begin() + (s + 1) * pages_per_seq);
      one.set({prompt[static_cast<size_t>(t)]}, {t}, {slot_of(s, t)}, {static_cast<int32_t>(t + 1)},
              row);
      lm.decode_step(ctx, one, pool);
    }
    lengths[static_cast<size_t>(s)] = static_cast<int64_t>(prompt.size());
  }
  nn::DecodeInputs all(Device::cpu, seqs, pages_per_seq, page);
  for (int64_t step = 0; step < 6; ++step) {
    ctx.arena.reset();
    std::vector<int64_t> tokens, positions;
    std::vector<int32_t> slots, visible;
    std::vector<Tensor> want;
    for (int64_t s = 0; s < seqs; ++s) {
      const int64_t token = (step * 31 + s * 7 + 1) % vocab, pos = lengths[static_cast<size_t>(s)];
      tokens.push_back(token);
      positions.push_back(pos);
      slots.push_back(slot_of(s, pos));
      visible.push_back(static_cast<int32_t>(pos + 1));
      want.push_back(
          lm.forward_cached(ctx, Tensor::from_i64({1}, {token}), refs[static_cast<size_t>(s)])
              .clone());
    }
    all.set(tokens, positions, slots, visible, table);
    const Tensor got = lm.decode_step(ctx, all, pool);
    for (int64_t s = 0; s < seqs; ++s) {
      EXPECT_LE(test::rel_error(got.narrow(s, 1).to(DType::f64),
                                want[static_cast<size_t>(s)].to(DType::f64)),
                1e-5)
          << "step " << step << " sequence " << s;
      ++lengths[static_cast<size_t>(s)];
    }
  }
}

TEST(DecodeStep, StackedWeightsOnlyWhenAdjacentAndPlain) {
  auto model = load("llama_gqa");
  nn::ParamStore& params = model->params();
  const std::string prefix = "model.layers.0.self_attn.";
  const Tensor q = params.param(prefix + "q_proj.weight"),
               k = params.param(prefix + "k_proj.weight");
  // The attention's own Linears, through the model's list: q, k, v, o of layer 0 first.
  std::vector<nn::Linear*> linears = model->lm().linears();
  const Tensor qkv = nn::Linear::stacked_weight({linears[0], linears[1], linears[2]});
  ASSERT_TRUE(qkv.defined());
  EXPECT_EQ(qkv.size(0), q.size(0) + 2 * k.size(0));
  EXPECT_EQ(qkv.raw(), q.raw());
  EXPECT_EQ(test::rel_error(qkv.narrow(q.size(0), k.size(0)).to(DType::f64), k.to(DType::f64)), 0);
  // Out of order (v before k) is not one view.
  EXPECT_FALSE(nn::Linear::stacked_weight({linears[0], linears[2], linears[1]}).defined());

  // With LoRA the products carry adapters: no stacking.
  models::ModelOptions lora;
  lora.training = models::Training::lora;
  lora.lora = models::read_adapter_config(kGolden + "/llama_gqa/adapter");
  auto adapted = models::load_model(kGolden + "/llama_gqa", lora);
  std::vector<nn::Linear*> al = adapted->lm().linears();
  EXPECT_FALSE(nn::Linear::stacked_weight({al[0], al[1], al[2]}).defined());
}

}  // namespace
}  // namespace tune
