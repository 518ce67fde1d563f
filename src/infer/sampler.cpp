// Sampling over one row of logits. Probabilities are computed in double from the f32 logits;
// filtering follows transformers' logits warpers (each keeps at least one token).
#include "tune/infer/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tune/core/error.h"
#include "tune/core/rng.h"

namespace tune::infer {

void apply_repetition_penalty(std::span<float> logits, std::span<const int64_t> seen,
                              double penalty) {
  if (penalty == 1.0) return;
  TUNE_CHECK(penalty > 0, "repetition_penalty must be > 0, got ", penalty);
  const auto vocab = static_cast<int64_t>(logits.size());
  std::vector<bool> done(logits.size(), false);
  for (int64_t id : seen) {
    if (id < 0 || id >= vocab || done[static_cast<size_t>(id)]) continue;
    done[static_cast<size_t>(id)] = true;
    float& x = logits[static_cast<size_t>(id)];
    x = x < 0 ? static_cast<float>(x * penalty) : static_cast<float>(x / penalty);
  }
}

int64_t argmax(std::span<const float> logits) {
  TUNE_ASSERT(!logits.empty(), "argmax of an empty row");
  return std::max_element(logits.begin(), logits.end()) - logits.begin();
}

std::vector<Candidate> sampling_distribution(std::span<const float> logits,
                                             const SamplingParams& params) {
  TUNE_ASSERT(!logits.empty(), "sampling_distribution of an empty row");
  TUNE_CHECK(params.temperature > 0, "temperature must be > 0 when sampling, got ",
             params.temperature);
  TUNE_CHECK(params.top_p > 0 && params.top_p <= 1, "top_p must be in (0, 1], got ", params.top_p);
  TUNE_CHECK(params.min_p >= 0 && params.min_p <= 1, "min_p must be in [0, 1], got ", params.min_p);
  TUNE_CHECK(params.top_k >= 0, "top_k must be >= 0 (0: off), got ", params.top_k);
  // (scaled logit, id), finite ones only (a -inf logit is a token ruled out, e.g. min_new_tokens).
  std::vector<Candidate> c;
  c.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isfinite(logits[i]))
      c.push_back({static_cast<int64_t>(i), logits[i] / params.temperature});
  }
  TUNE_CHECK(!c.empty(), "every logit is -inf or NaN: nothing to sample");
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.prob > b.prob || (a.prob == b.prob && a.id < b.id);
  };
  // top-k: keep every token whose logit reaches the k-th largest (ties kept, as transformers).
  if (params.top_k > 0 && params.top_k < static_cast<int64_t>(c.size())) {
    std::nth_element(c.begin(), c.begin() + (params.top_k - 1), c.end(), by_logit);
    const double kth = c[static_cast<size_t>(params.top_k - 1)].prob;
    std::erase_if(c, [&](const Candidate& x) { return x.prob < kth; });
  }
  std::sort(c.begin(), c.end(), by_logit);
  // softmax in place: prob holds the scaled logit until here.
  const double top = c.front().prob;
  double sum = 0;
  for (Candidate& x : c) sum += x.prob = std::exp(x.prob - top);
  for (Candidate& x : c) x.prob /= sum;
  // top-p: a token stays while the mass strictly ahead of it is below p.
  if (params.top_p < 1) {
    double ahead = 0;
    size_t keep = 0;
    while (keep < c.size() && ahead < params.top_p) ahead += c[keep++].prob;
    c.resize(std::max<size_t>(keep, 1));
  }
  // min-p, relative to the most likely token (renormalizing does not change the ratio).
  if (params.min_p > 0) {
    const double floor = params.min_p * c.front().prob;
    size_t keep = 1;
    while (keep < c.size() && c[keep].prob >= floor) ++keep;
    c.resize(keep);
  }
  double kept = 0;
  for (const Candidate& x : c) kept += x.prob;
  for (Candidate& x : c) x.prob /= kept;
  return c;
}

double uniform_draw(uint64_t seed, uint64_t draw) {
  const std::array<uint32_t, 4> r = philox4x32(seed, 0x73616d70 /* "samp" */, draw);
  const uint64_t bits = (static_cast<uint64_t>(r[0] >> 5) << 26) | (r[1] >> 6);
  return static_cast<double>(bits) * 0x1.0p-53;
}

int64_t choose_token(std::span<float> logits, std::span<const int64_t> seen,
                     const SamplingParams& params, uint64_t draw) {
  apply_repetition_penalty(logits, seen, params.repetition_penalty);
  if (!params.do_sample || params.temperature <= 0) return argmax(logits);
  const std::vector<Candidate> c = sampling_distribution(logits, params);
  const double u = uniform_draw(params.seed, draw);
  double cum = 0;
  for (const Candidate& x : c) {
    cum += x.prob;
    if (u < cum) return x.id;
  }
  return c.back().id;  // u within rounding of 1
}

}  // namespace tune::infer
