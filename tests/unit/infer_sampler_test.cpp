// Samplers against hand-computed cases with transformers' semantics: repetition penalty, greedy,
// temperature, top-k (ties kept), top-p, min-p and their order; seeded draws.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "test_util.h"
#include "tune/infer/sampler.h"

namespace tune {
namespace {

using infer::Candidate;
using infer::SamplingParams;

std::vector<float> log_of(const std::vector<double>& probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
  return out;
}

void expect_distribution(const std::vector<Candidate>& got,
                         const std::vector<std::pair<int64_t, double>>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].id, expected[i].first) << i;
    EXPECT_NEAR(got[i].prob, expected[i].second, 1e-6) << i;
  }
}

TEST(InferSampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  std::vector<float> logits = {2, -2, 1, 0.5f};
  const std::vector<int64_t> seen = {0, 1, 1, 3};  // repeats count once
  infer::apply_repetition_penalty(logits, seen, 2.0);
  EXPECT_EQ(logits, (std::vector<float>{1, -4, 1, 0.25f}));
}

TEST(InferSampler, GreedyTakesTheFirstLargestLogit) {
  const std::vector<float> logits = {1, 3, 3, 2};
  EXPECT_EQ(infer::argmax(logits), 1);
  std::vector<float> row = logits;
  SamplingParams p;  // do_sample false: temperature and top-k are not used
  p.temperature = 0.01;
  p.top_k = 1;
  EXPECT_EQ(infer::choose_token(row, {}, p, 0), 1);
  // The penalty applies before greedy: id 1's 3 becomes 1.5, id 2 wins.
  row = logits;
  p.repetition_penalty = 2;
  const std::vector<int64_t> seen = {1};
  EXPECT_EQ(infer::choose_token(row, seen, p, 0), 2);
}

TEST(InferSampler, TemperatureScalesLogits) {
  SamplingParams p;
  p.do_sample = true;
  const std::vector<float> logits = {0, static_cast<float>(std::log(2.0))};
  expect_distribution(infer::sampling_distribution(logits, p), {{1, 2.0 / 3}, {0, 1.0 / 3}});
  p.temperature = 0.5;  // logits doubled: odds 4 : 1
  expect_distribution(infer::sampling_distribution(logits, p), {{1, 0.8}, {0, 0.2}});
}

TEST(InferSampler, TopKKeepsTiesWithTheKthLogit) {
  SamplingParams p;
  p.do_sample = true;
  const std::vector<float> logits = {1, 3, 3, 2, 0};
  p.top_k = 2;
  expect_distribution(infer::sampling_distribution(logits, p), {{1, 0.5}, {2, 0.5}});
  p.top_k = 1;  // the k-th largest is 3, and both 3s stay (transformers: scores < kth removed)
  expect_distribution(infer::sampling_distribution(logits, p), {{1, 0.5}, {2, 0.5}});
  p.top_k = 3;
  const double e3 = std::exp(3.0), e2 = std::exp(2.0), z = 2 * e3 + e2;
  expect_distribution(infer::sampling_distribution(logits, p),
                      {{1, e3 / z}, {2, e3 / z}, {3, e2 / z}});
}

TEST(InferSampler, TopPKeepsTheSmallestSetReachingP) {
  SamplingParams p;
  p.do_sample = true;
  const std::vector<float> logits = log_of({0.15, 0.5, 0.05, 0.3});
  p.top_p = 0.75;  // 0.5 < 0.75, 0.5 + 0.3 >= 0.75
  expect_distribution(infer::sampling_distribution(logits, p), {{1, 0.625}, {3, 0.375}});
  p.top_p = 0.85;
  expect_distribution(infer::sampling_distribution(logits, p),
                      {{1, 0.5 / 0.95}, {3, 0.3 / 0.95}, {0, 0.15 / 0.95}});
  p.top_p = 0.1;  // the most likely token always stays
  expect_distribution(infer::sampling_distribution(logits, p), {{1, 1.0}});
}

TEST(InferSampler, MinPDropsTokensBelowAFractionOfTheTopProbability) {
  SamplingParams p;
  p.do_sample = true;
  const std::vector<float> logits = log_of({0.15, 0.5, 0.05, 0.3});
  p.min_p = 0.2;  // floor 0.1
  expect_distribution(infer::sampling_distribution(logits, p),
                      {{1, 0.5 / 0.95}, {3, 0.3 / 0.95}, {0, 0.15 / 0.95}});
  p.min_p = 0.7;  // floor 0.35
  expect_distribution(infer::sampling_distribution(logits, p), {{1, 1.0}});
}

// transformers' order: temperature, top-k, top-p (on the top-k renormalized), min-p.
TEST(InferSampler, FiltersComposeInTransformersOrder) {
  SamplingParams p;
  p.do_sample = true;
  const std::vector<float> logits = log_of({0.4, 0.3, 0.2, 0.1});
  p.top_k = 3;    // {0.4, 0.3, 0.2} / 0.9 = {0.444, 0.333, 0.222}
  p.top_p = 0.7;  // 0.444 < 0.7, 0.777 >= 0.7: {0, 1}
  expect_distribution(infer::sampling_distribution(logits, p), {{0, 4.0 / 7}, {1, 3.0 / 7}});
  p.min_p = 0.8;  // 0.333 < 0.8 * 0.444
  expect_distribution(infer::sampling_distribution(logits, p), {{0, 1.0}});
}

TEST(InferSampler, RuledOutTokensAreNeverDrawn) {
  SamplingParams p;
  p.do_sample = true;
  const float inf = std::numeric_limits<float>::infinity();
  expect_distribution(infer::sampling_distribution(std::vector<float>{-inf, 0, -inf}, p),
                      {{1, 1.0}});
}

TEST(InferSampler, DrawsFollowTheDistributionAndTheSeed) {
  SamplingParams p;
  p.do_sample = true;
  p.seed = 42;
  const std::vector<float> logits = log_of({0.25, 0.75});
  int ones = 0;
  std::vector<int64_t> first, again;
  for (uint64_t d = 0; d < 4000; ++d) {
    std::vector<float> row = logits;
    const int64_t t = infer::choose_token(row, {}, p, d);
    ones += t == 1;
    if (d < 50) first.push_back(t);
  }
  EXPECT_NEAR(ones / 4000.0, 0.75, 0.03);
  for (uint64_t d = 0; d < 50; ++d) {
    std::vector<float> row = logits;
    again.push_back(infer::choose_token(row, {}, p, d));
  }
  EXPECT_EQ(first, again);
  for (uint64_t d = 0; d < 1000; ++d) {
    const double u = infer::uniform_draw(7, d);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
  EXPECT_NE(infer::uniform_draw(7, 0), infer::uniform_draw(8, 0));
}

TEST(InferSampler, RejectsBadSettings) {
  SamplingParams p;
  p.do_sample = true;
  p.top_p = 0;
  const std::vector<float> logits = {0, 1};
  EXPECT_TRUE(test::contains(test::error_of([&] { infer::sampling_distribution(logits, p); }),
                             "top_p must be in (0, 1]"));
  p.top_p = 1;
  p.top_k = -1;
  EXPECT_TRUE(test::contains(test::error_of([&] { infer::sampling_distribution(logits, p); }),
                             "top_k must be >= 0"));
}

}  // namespace
}  // namespace tune
