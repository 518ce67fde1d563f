// BatchEngine (src/infer/batch_engine.cpp) on a golden model: requests served together give the
// tokens Generator::generate gives for each alone — greedy and seeded sampling, base model and a
// PEFT adapter from the bank — and a cancelled request leaves the batch.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tune/infer/batch_engine.h"
#include "tune/infer/generator.h"
#include "tune/models/model.h"
#include "tune/models/peft.h"

namespace tune {
namespace {

const std::string kCase = std::string(TUNE_TEST_DATA) + "/golden/qwen3_qknorm";

std::vector<int64_t> prompt_of(int64_t length, int64_t salt) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < length; ++i) p.push_back((i * 37 + salt * 101 + 3) % 512);
  return p;
}

std::vector<int64_t> drain(infer::RequestStream& s) {
  std::vector<infer::TokenEvent> events;
  while (s.wait(events, std::chrono::milliseconds(1000))) {
  }
  std::vector<int64_t> ids;
  for (const auto& e : events)
    if (e.id >= 0) ids.push_back(e.id);
  return ids;
}

TEST(BatchEngine, ConcurrentRequestsEqualGeneratorAlone) {
  infer::LoadedModel base;
  base.model = models::load_model(kCase, {});
  nn::AdapterBank bank;
  infer::load_adapter_into_bank(bank, "a", kCase + "/adapter", *base.model);
  models::ModelOptions lora;
  lora.training = models::Training::lora;
  lora.lora = models::read_adapter_config(kCase + "/adapter");
  auto with_adapter = models::load_model(kCase, lora);
  models::load_adapter(*with_adapter, kCase + "/adapter");

  struct Case {
    std::vector<int64_t> prompt;
    int adapter;
    infer::GenerateOptions options;
  };
  std::vector<Case> cases;
  for (int i = 0; i < 12; ++i) {
    Case c{prompt_of(3 + i * 2, i), i % 2, {}};
    c.options.max_new_tokens = 6 + i;
    if (i % 3 == 2) {
      c.options.sampling.do_sample = true;
      c.options.sampling.temperature = 0.8;
      c.options.sampling.top_k = 50;
      c.options.sampling.seed = static_cast<uint64_t>(i);
    }
    cases.push_back(c);
  }
  infer::BatchEngine engine(base, bank, {});
  std::vector<std::shared_ptr<infer::RequestStream>> streams;
  for (const Case& c : cases) {
    infer::BatchRequest r;
    r.prompt = c.prompt;
    r.adapter = c.adapter;
    r.options = c.options;
    streams.push_back(engine.submit(r));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::vector<int64_t> got = drain(*streams[i]);
    EXPECT_TRUE(streams[i]->error().empty()) << streams[i]->error();
    nn::CausalLM& lm = cases[i].adapter ? with_adapter->lm() : base.model->lm();
    infer::Generator gen(lm, nullptr);
    const infer::Generation want = gen.generate(cases[i].prompt, cases[i].options);
    EXPECT_EQ(got, want.tokens) << "request " << i;
    EXPECT_EQ(streams[i]->completion_tokens(), static_cast<int64_t>(want.tokens.size()));
    EXPECT_EQ(streams[i]->finish(), want.finish);
    EXPECT_EQ(streams[i]->prompt_tokens(), static_cast<int64_t>(cases[i].prompt.size()));
  }
  EXPECT_GE(engine.stats().largest_batch, 2);
}

TEST(BatchEngine, CancelledRequestLeavesTheBatch) {
  infer::LoadedModel base;
  base.model = models::load_model(kCase, {});
  nn::AdapterBank bank;
  infer::BatchEngine engine(base, bank, {});
  infer::BatchRequest r;
  r.prompt = prompt_of(5, 1);
  r.options.max_new_tokens = 240;
  auto s = engine.submit(r);
  std::vector<infer::TokenEvent> events;
  s->wait(events, std::chrono::milliseconds(2000));  // at least one token came
  ASSERT_FALSE(events.empty());
  s->cancel();
  while (s->wait(events, std::chrono::milliseconds(1000))) {
  }
  EXPECT_EQ(s->error(), "cancelled");
  EXPECT_LT(s->completion_tokens(), 240);
  EXPECT_EQ(engine.stats().cancelled, 1);
  // The engine goes on serving.
  infer::BatchRequest next;
  next.prompt = prompt_of(4, 2);
  next.options.max_new_tokens = 3;
  auto n = engine.submit(next);
  EXPECT_EQ(drain(*n).size(), 3u);
}

TEST(BatchEngine, RejectsPromptsTheModelCannotTake) {
  infer::LoadedModel base;
  base.model = models::load_model(kCase, {});
  nn::AdapterBank bank;
  infer::BatchEngine engine(base, bank, {});
  infer::BatchRequest r;
  EXPECT_THROW(engine.submit(r), Error);  // no tokens
  r.prompt = {600};
  EXPECT_THROW(engine.submit(r), Error);  // outside the vocabulary
  r.prompt = {1};
  r.adapter = 1;
  EXPECT_THROW(engine.submit(r), Error);  // no such adapter
}

}  // namespace
}  // namespace tune
