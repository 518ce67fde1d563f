// Choosing the next token from a row of logits, with Hugging Face's semantics so that a
// generation_config.json means the same here as in transformers:
//   repetition penalty (every token already in the sequence: logit / p when positive, * p when
//   negative) -> greedy argmax, or with do_sample: logits / temperature -> top-k (ties with the
//   k-th kept) -> top-p (the smallest set of most likely tokens whose mass reaches p) -> min-p
//   (drop tokens below min_p times the most likely one's probability) -> one draw.
// Draws come from tune's Philox stream (seed, draw index): the same seed gives the same tokens
// on every machine.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tune::infer {

struct SamplingParams {
  bool do_sample = false;           // false: greedy, the other fields but the penalty unused
  double temperature = 1.0;         // <= 0 with do_sample: greedy
  int64_t top_k = 0;                // 0: off
  double top_p = 1.0;               // 1: off
  double min_p = 0.0;               // 0: off
  double repetition_penalty = 1.0;  // 1: off
  uint64_t seed = 0;
};

// Hugging Face's RepetitionPenaltyLogitsProcessor on one row, in place.
void apply_repetition_penalty(std::span<float> logits, std::span<const int64_t> seen,
                              double penalty);

// The first index of the largest logit (torch.argmax).
int64_t argmax(std::span<const float> logits);

struct Candidate {
  int64_t id;
  double prob;
};
// The distribution do_sample draws from, after temperature, top-k, top-p and min-p: the surviving
// tokens with their renormalized probabilities, most likely first (ties by id). Never empty.
std::vector<Candidate> sampling_distribution(std::span<const float> logits,
                                             const SamplingParams& params);

// The next token. `logits` gets the repetition penalty in place (from the tokens in `seen`);
// `draw` numbers the draws of one generation (0, 1, ...), so draw d of a seed is always the
// same uniform number.
int64_t choose_token(std::span<float> logits, std::span<const int64_t> seen,
                     const SamplingParams& params, uint64_t draw);

// Uniform in [0, 1) with 53 random bits from Philox (seed, draw).
double uniform_draw(uint64_t seed, uint64_t draw);

}  // namespace tune::infer
