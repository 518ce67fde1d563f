// The generation engine: prefill the prompt in one forward pass, then one token per step against
// the KV cache, choosing each token with the sampler and streaming text as it becomes final.
// A Generator keeps its cache between calls: a prompt that starts with the tokens already cached
// (the next turn of a chat) only prefills what is new.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tune/infer/replayed_step.h"
#include "tune/infer/sampler.h"
#include "tune/nn/context.h"
#include "tune/nn/transformer.h"

namespace tune::tok {
class Tokenizer;
}

namespace tune::infer {

using KvCache = nn::KvCache;

enum class FinishReason : uint8_t {
  stop,    // an end-of-sequence token or a stop string
  length,  // max_new_tokens, or the model's max_position_embeddings
};
const char* finish_reason_name(FinishReason reason);  // "stop" / "length", as OpenAI says

struct GenerateOptions {
  SamplingParams sampling;
  int64_t max_new_tokens = 256;
  // End-of-sequence tokens are ruled out before this many new tokens (transformers'
  // min_new_tokens).
  int64_t min_new_tokens = 0;
  std::vector<int64_t> eos_token_ids;
  std::vector<std::string> stop;  // stop strings; need a tokenizer
};

struct Generation {
  std::vector<int64_t> tokens;  // the new tokens, the end-of-sequence token included
  std::string text;             // their text (with a tokenizer), cut before a stop string
  FinishReason finish = FinishReason::length;
  int64_t prompt_tokens = 0;
  int64_t reused_tokens = 0;  // prompt tokens whose keys and values came from the cache
  double prefill_seconds = 0, decode_seconds = 0;
  // New tokens per second after the first (which the prefill produces).
  double decode_tokens_per_second() const;
};

// Receives each piece of text as it becomes final.
using StreamCallback = std::function<void(std::string_view piece)>;

class Generator {
 public:
  // `tokenizer` may be null: then there is no text, no streaming and no stop strings.
  Generator(nn::CausalLM& lm, const tok::Tokenizer* tokenizer);

  Generation generate(std::span<const int64_t> prompt, const GenerateOptions& options,
                      const StreamCallback& on_text = {});
  // Forgets the cached tokens (chat's /reset).
  void reset();
  // The tokens whose keys and values are in the cache.
  const std::vector<int64_t>& cached_tokens() const { return cached_; }

 private:
  // Feeds tokens to the model after what is cached; returns the logits of the last one.
  Tensor feed(std::span<const int64_t> tokens);
  // On CUDA, one token through CausalLM::decode_step, replayed from a CUDA graph.
  Tensor decode_on_device(int64_t token);
  // The greedy choice from logits [1, V] on the device.
  int64_t device_argmax(const Tensor& logits);

  nn::CausalLM* lm_;
  const tok::Tokenizer* tokenizer_;
  nn::Context ctx_;
  KvCache cache_;
  std::vector<int64_t> cached_;
  // CUDA decode steps.
  nn::DecodeInputs step_inputs_;  // sized for the cache's capacity on first use
  ReplayedStep step_;
  Tensor chosen_;  // [1] i64 on the device
};

}  // namespace tune::infer
