// Generation on the golden models (tests/golden/*: tiny random Hugging Face models): the KV-cache
// path against recomputing the whole sequence every step (same tokens, logits within 1e-5), cache
// reuse across calls, LoRA adapters, and — when tests/golden/<case>/generate.json exists (written
// by tests/reference/make_generate_reference.py with transformers) — greedy tokens equal to
// Hugging Face's.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "test_util.h"
#include "tune/infer/generation_config.h"
#include "tune/infer/generator.h"
#include "tune/io/files.h"
#include "tune/models/model.h"
#include "tune/models/peft.h"
#include "tune/ops/ops.h"

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

std::unique_ptr<models::Model> load(const std::string& name, bool adapter = false) {
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

// Ids spread over the vocabulary, deterministic.
std::vector<int64_t> prompt_of(int64_t length, int64_t vocab, int64_t salt) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < length; ++i) p.push_back((i * 37 + salt * 101 + 3) % vocab);
  return p;
}

struct Trace {
  std::vector<int64_t> tokens;
  std::vector<Tensor> logits;  // [V] per step
};

// Greedy by recomputing the whole sequence with CausalLM::forward (the training path).
Trace greedy_recompute(nn::CausalLM& lm, std::vector<int64_t> ids, int64_t steps) {
  Trace t;
  nn::Context ctx;
  ctx.mode = nn::Mode::eval;
  const int64_t vocab = lm.config().vocab_size;
  for (int64_t s = 0; s < steps; ++s) {
    ctx.arena.reset();
    const auto n = static_cast<int64_t>(ids.size());
    const Tensor logits =
        lm.forward(ctx, Tensor::from_i64({1, n}, ids), nn::default_positions(1, n));
    Tensor last = logits.narrow(n - 1, 1).view({vocab}).clone();
    const int64_t next = infer::argmax({last.data<float>(), static_cast<size_t>(vocab)});
    t.logits.push_back(last);
    t.tokens.push_back(next);
    ids.push_back(next);
  }
  return t;
}

// Greedy with the KV cache: one prefill, then one token per forward_cached.
Trace greedy_cached(nn::CausalLM& lm, const std::vector<int64_t>& prompt, int64_t steps) {
  Trace t;
  nn::Context ctx;
  const int64_t vocab = lm.config().vocab_size;
  nn::KvCache cache = lm.make_cache(static_cast<int64_t>(prompt.size()) + steps);
  Tensor logits = lm.forward_cached(
      ctx, Tensor::from_i64({static_cast<int64_t>(prompt.size())}, prompt), cache);
  for (int64_t s = 0; s < steps; ++s) {
    Tensor last = logits.view({vocab}).clone();
    const int64_t next = infer::argmax({last.data<float>(), static_cast<size_t>(vocab)});
    t.logits.push_back(last);
    t.tokens.push_back(next);
    ctx.arena.reset();
    logits = lm.forward_cached(ctx, Tensor::from_i64({1}, {next}), cache);
  }
  return t;
}

// Greedy for 24 steps from prompts of 1, 5 and 12 tokens (the mistral case's window of 6 is
// crossed): same tokens, logits within 1e-5 of recomputing everything.
TEST(InferKvCache, GreedyEqualsRecomputingEveryStep) {
  double worst = 0;
  for (const std::string& name : golden_cases()) {
    SCOPED_TRACE(name);
    auto model = load(name);
    nn::CausalLM& lm = model->lm();
    for (int64_t len : {1, 5, 12}) {
      const std::vector<int64_t> prompt = prompt_of(len, lm.config().vocab_size, len);
      const Trace a = greedy_recompute(lm, prompt, 24), b = greedy_cached(lm, prompt, 24);
      EXPECT_EQ(a.tokens, b.tokens) << "prompt length " << len;
      for (size_t s = 0; s < a.logits.size(); ++s) {
        const double d = test::max_abs_diff(a.logits[s], b.logits[s]);
        worst = std::max(worst, d);
        EXPECT_LT(d, 1e-5) << "prompt length " << len << ", step " << s;
      }
    }
  }
  std::printf("  greedy KV cache vs recompute: max |logit difference| %.3g\n", worst);
}

// Prefill of T tokens with Logits::all equals the training forward's logits, and a prompt fed in
// chunks equals one prefill.
TEST(InferKvCache, PrefillAllLogitsAndChunkedPrefillMatchTheTrainingForward) {
  for (const std::string& name : golden_cases()) {
    SCOPED_TRACE(name);
    auto model = load(name);
    nn::CausalLM& lm = model->lm();
    const std::vector<int64_t> ids = prompt_of(13, lm.config().vocab_size, 7);
    nn::Context ctx;
    ctx.mode = nn::Mode::eval;
    const Tensor full =
        lm.forward(ctx, Tensor::from_i64({1, 13}, ids), nn::default_positions(1, 13)).clone();
    nn::KvCache cache = lm.make_cache(13);
    nn::Context c2;
    const Tensor all =
        lm.forward_cached(c2, Tensor::from_i64({13}, ids), cache, nn::Logits::all).clone();
    EXPECT_LT(test::max_abs_diff(full, all), 1e-5);
    EXPECT_EQ(cache.length(), 13);
    nn::KvCache chunked = lm.make_cache(16);
    Tensor rows = Tensor::empty({13, lm.config().vocab_size}, DType::f32);
    int64_t at = 0;
    for (int64_t n : {4, 1, 8}) {
      c2.arena.reset();
      std::vector<int64_t> part(ids.begin() + at, ids.begin() + at + n);
      Tensor out = rows.narrow(at, n);
      ops::copy(out, lm.forward_cached(c2, Tensor::from_i64({n}, part), chunked, nn::Logits::all));
      at += n;
    }
    EXPECT_LT(test::max_abs_diff(full, rows), 1e-5);
  }
}

TEST(InferKvCache, RefusesTokensPastItsCapacity) {
  auto model = load("llama_gqa");
  nn::KvCache cache = model->lm().make_cache(3);
  nn::Context ctx;
  EXPECT_TRUE(
      test::contains(test::error_of([&] {
                       model->lm().forward_cached(ctx, Tensor::from_i64({4}, {1, 2, 3, 4}), cache);
                     }),
                     "do not fit in a KV cache of 3 positions"));
}

TEST(InferGenerator, GreedyMatchesTheCachedLoopAndReusesTheCacheAcrossCalls) {
  auto model = load("qwen3_qknorm");
  nn::CausalLM& lm = model->lm();
  const std::vector<int64_t> prompt = prompt_of(9, lm.config().vocab_size, 1);
  infer::GenerateOptions options;
  options.max_new_tokens = 10;
  infer::Generator gen(lm, nullptr);
  const infer::Generation first = gen.generate(prompt, options);
  EXPECT_EQ(first.tokens, greedy_cached(lm, prompt, 10).tokens);
  EXPECT_EQ(first.finish, infer::FinishReason::length);
  EXPECT_EQ(first.reused_tokens, 0);
  // The next turn extends the conversation: only the new tokens are prefilled, and the result is
  // what a fresh generator computes.
  std::vector<int64_t> next = prompt;
  next.insert(next.end(), first.tokens.begin(), first.tokens.end());
  for (int64_t id : {5, 6, 7}) next.push_back(id);
  const infer::Generation second = gen.generate(next, options);
  EXPECT_EQ(second.reused_tokens, 9 + 10 - 1);  // the last generated token was never fed
  infer::Generator fresh(lm, nullptr);
  EXPECT_EQ(second.tokens, fresh.generate(next, options).tokens);
  // A prompt that diverges early re-prefills from the divergence.
  std::vector<int64_t> other = prompt;
  other[2] = (other[2] + 1) % lm.config().vocab_size;
  const infer::Generation third = gen.generate(other, options);
  EXPECT_EQ(third.reused_tokens, 2);
  EXPECT_EQ(third.tokens, infer::Generator(lm, nullptr).generate(other, options).tokens);
  gen.reset();
  EXPECT_EQ(gen.generate(prompt, options).tokens, first.tokens);
}

TEST(InferGenerator, EndOfSequenceStopsUnlessMinNewTokensRulesItOut) {
  auto model = load("llama_gqa");
  nn::CausalLM& lm = model->lm();
  const std::vector<int64_t> prompt = prompt_of(5, lm.config().vocab_size, 2);
  infer::GenerateOptions options;
  options.max_new_tokens = 8;
  const std::vector<int64_t> free_run =
      infer::Generator(lm, nullptr).generate(prompt, options).tokens;
  // Declare the first greedy token that differs from the first an end-of-sequence token:
  // generation stops there, the token kept.
  size_t at = 1;
  while (at < free_run.size() && free_run[at] == free_run[0]) ++at;
  ASSERT_LT(at, free_run.size()) << "the model repeats one token; pick another prompt";
  options.eos_token_ids = {free_run[at]};
  const infer::Generation stopped = infer::Generator(lm, nullptr).generate(prompt, options);
  EXPECT_EQ(stopped.finish, infer::FinishReason::stop);
  EXPECT_EQ(stopped.tokens, std::vector<int64_t>(free_run.begin(), free_run.begin() + at + 1));
  // With min_new_tokens the id is masked out for the first 8 tokens: it never appears.
  options.min_new_tokens = 8;
  const infer::Generation forced = infer::Generator(lm, nullptr).generate(prompt, options);
  EXPECT_EQ(forced.tokens.size(), 8u);
  EXPECT_EQ(forced.finish, infer::FinishReason::length);
  EXPECT_EQ(std::count(forced.tokens.begin(), forced.tokens.end(), free_run[at]), 0);
}

TEST(InferGenerator, SampledGenerationIsAFunctionOfTheSeed) {
  auto model = load("mistral_swa");
  nn::CausalLM& lm = model->lm();
  const std::vector<int64_t> prompt = prompt_of(4, lm.config().vocab_size, 3);
  infer::GenerateOptions options;
  options.max_new_tokens = 16;
  options.sampling.do_sample = true;
  options.sampling.temperature = 1.5;
  options.sampling.seed = 11;
  const auto a = infer::Generator(lm, nullptr).generate(prompt, options).tokens;
  const auto b = infer::Generator(lm, nullptr).generate(prompt, options).tokens;
  options.sampling.seed = 12;
  const auto c = infer::Generator(lm, nullptr).generate(prompt, options).tokens;
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

// The LoRA adapter changes the model, and the cached path agrees with recomputing.
TEST(InferKvCache, LoraAdapterGreedyEqualsRecomputing) {
  for (const std::string& name : {"llama_gqa", "qwen2_bias"}) {
    SCOPED_TRACE(name);
    auto model = load(name, /*adapter=*/true);
    auto base = load(name);
    const std::vector<int64_t> prompt = prompt_of(6, model->lm().config().vocab_size, 4);
    const Trace a = greedy_recompute(model->lm(), prompt, 12);
    const Trace b = greedy_cached(model->lm(), prompt, 12);
    EXPECT_EQ(a.tokens, b.tokens);
    for (size_t s = 0; s < a.logits.size(); ++s)
      EXPECT_LT(test::max_abs_diff(a.logits[s], b.logits[s]), 1e-5);
    const Trace plain = greedy_cached(base->lm(), prompt, 1);
    EXPECT_GT(test::max_abs_diff(plain.logits[0], b.logits[0]), 1e-4) << "the adapter did nothing";
  }
}

// tests/golden/<case>/generate.json from make_generate_reference.py: transformers' greedy tokens
// (min_new_tokens = max_new_tokens, so end-of-sequence never ends a run early). Tokens must agree
// exactly up to the first step where transformers' top two logits are within 1e-5 of each other
// (there float rounding, not the model, picks the token, and the runs may part).
TEST(InferReference, GreedyEqualsTransformers) {
  int checked = 0;
  for (const std::string& name : golden_cases()) {
    const std::string path = kGolden + "/" + name + "/generate.json";
    if (!fs::exists(path)) continue;
    SCOPED_TRACE(name);
    const nlohmann::json ref = io::read_json_file(path);
    auto model = load(name);
    infer::GenerateOptions options;
    options.max_new_tokens = ref.at("max_new_tokens").get<int64_t>();
    options.min_new_tokens = ref.at("min_new_tokens").get<int64_t>();
    options.eos_token_ids = ref.at("eos_token_id").get<std::vector<int64_t>>();
    for (size_t p = 0; p < ref.at("prompts").size(); ++p) {
      const auto prompt = ref["prompts"][p].get<std::vector<int64_t>>();
      const auto expected = ref["outputs"][p].get<std::vector<int64_t>>();
      const auto margins = ref["margins"][p].get<std::vector<double>>();
      const infer::Generation g = infer::Generator(model->lm(), nullptr).generate(prompt, options);
      ASSERT_EQ(g.tokens.size(), expected.size()) << "prompt " << p;
      for (size_t s = 0; s < expected.size(); ++s) {
        ASSERT_EQ(g.tokens[s], expected[s])
            << "prompt " << p << ", step " << s << " (transformers' margin " << margins[s] << ")";
        if (margins[s] < 1e-5) break;
      }
      ++checked;
    }
  }
  if (checked == 0)
    GTEST_SKIP() << "no tests/golden/*/generate.json yet: run tests/reference/"
                    "make_generate_reference.py where transformers is installed";
}

TEST(InferGenerationConfig, EosIdsAndSamplingDefaultsWithHuggingFaceSemantics) {
  const infer::GenerationConfig a = infer::parse_generation_config(
      nlohmann::json::parse(R"({"eos_token_id": [7, 9], "temperature": 0.6, "top_k": 20,
                                "top_p": 0.95})"),
      "a.json");
  EXPECT_EQ(a.eos_token_ids, (std::vector<int64_t>{7, 9}));
  const infer::SamplingParams pa = infer::default_sampling(a);
  EXPECT_FALSE(pa.do_sample) << "without do_sample = true, transformers is greedy";
  EXPECT_EQ(pa.top_k, 20);
  EXPECT_DOUBLE_EQ(pa.temperature, 0.6);
  const infer::GenerationConfig b = infer::parse_generation_config(
      nlohmann::json::parse(R"({"eos_token_id": 3, "do_sample": true})"), "b.json");
  EXPECT_EQ(b.eos_token_ids, (std::vector<int64_t>{3}));
  EXPECT_TRUE(infer::default_sampling(b).do_sample);
  EXPECT_EQ(infer::default_sampling(b).top_k, 50) << "transformers' default top_k";
  // Fallbacks: config.json's eos_token_id when generation_config has none.
  EXPECT_EQ(
      infer::end_of_sequence_ids({}, nlohmann::json::parse(R"({"eos_token_id": 5})"), nullptr),
      (std::vector<int64_t>{5}));
  EXPECT_TRUE(test::contains(test::error_of([] {
                               infer::parse_generation_config(
                                   nlohmann::json::parse(R"({"eos_token_id": "x"})"), "c.json");
                             }),
                             "c.json: \"eos_token_id\" must be an integer or a list of integers"));
  EXPECT_EQ(infer::read_generation_config(kGolden + "/llama_gqa").eos_token_ids,
            (std::vector<int64_t>{2}));
}

}  // namespace
}  // namespace tune
