// One sequence at a time: prefill (all new prompt tokens in one forward_cached), then decode one
// token per forward. The last token chosen is never fed (its logits are not needed), so the cache
// holds prompt + all new tokens but the last.
#include "tune/infer/generator.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <optional>

#include "tune/core/error.h"
#include "tune/infer/text_stream.h"
#include "tune/ops/ops.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::infer {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Row 0 of logits [1, V] as floats, whatever the model's dtype and device.
void row_to_floats(const Tensor& device_logits, std::vector<float>& out) {
  const Tensor logits = device_logits.to(Device::cpu);
  const int64_t vocab = logits.size(logits.dim() - 1);
  out.resize(static_cast<size_t>(vocab));
  convert(logits.raw(), logits.dtype(), out.data(), DType::f32, vocab);
}

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  return reason == FinishReason::stop ? "stop" : "length";
}

double Generation::decode_tokens_per_second() const {
  const auto n = static_cast<double>(tokens.size());
  return n > 1 && decode_seconds > 0 ? (n - 1) / decode_seconds : 0.0;
}

Generator::Generator(nn::CausalLM& lm, const tok::Tokenizer* tokenizer)
    : lm_(&lm), tokenizer_(tokenizer), ctx_(lm.device()) {
  ctx_.mode = nn::Mode::eval;
}

void Generator::reset() {
  cached_.clear();
  if (cache_.capacity() > 0) cache_.clear();
}

Tensor Generator::feed(std::span<const int64_t> tokens) {
  if (tokens.size() == 1 && lm_->device() == Device::cuda) {
    TUNE_CHECK(cache_.length() < cache_.capacity() && cache_.length() < lm_->config().max_positions,
               "generate: no room for another token in the KV cache");
    Tensor logits = decode_on_device(tokens[0]);
    cache_.advance(1);
    cached_.push_back(tokens[0]);
    return logits;
  }
  ctx_.arena.reset();
  const Tensor ids =
      Tensor::from_i64({static_cast<int64_t>(tokens.size())}, {tokens.begin(), tokens.end()});
  Tensor logits = lm_->forward_cached(ctx_, ids, cache_, nn::Logits::last);
  cached_.insert(cached_.end(), tokens.begin(), tokens.end());
  return logits;
}

Tensor Generator::decode_on_device(int64_t token) {
  // The sequence's cache is one page of its whole capacity.
  if (step_inputs_.page_size != cache_.capacity())
    step_inputs_ = nn::DecodeInputs(lm_->device(), 1, 1, cache_.capacity());
  step_inputs_.set(token, cache_.length());
  ctx_.arena.reset();
  return step_.run({cache_.keys(0).raw(), ctx_.arena.base(), step_inputs_.buffer.raw()},
                   [&] { return lm_->decode_step(ctx_, step_inputs_, cache_); });
}

int64_t Generator::device_argmax(const Tensor& logits) {
  if (!chosen_.defined()) chosen_ = Tensor::empty({1}, DType::i64, logits.device());
  ops::argmax_rows(chosen_, logits.view({1, logits.numel()}));
  return static_cast<int64_t>(chosen_.to(Device::cpu).item(0));
}

Generation Generator::generate(std::span<const int64_t> prompt, const GenerateOptions& options,
                               const StreamCallback& on_text) {
  TUNE_CHECK(!prompt.empty(), "generate: the prompt has no tokens");
  TUNE_CHECK(options.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, got ",
             options.max_new_tokens);
  TUNE_CHECK(options.stop.empty() || tokenizer_, "generate: stop strings need a tokenizer");
  const nn::TransformerConfig& config = lm_->config();
  const auto prompt_len = static_cast<int64_t>(prompt.size());
  TUNE_CHECK(prompt_len <= config.max_positions, "generate: the prompt has ", prompt_len,
             " tokens but the model takes at most ", config.max_positions,
             " (max_position_embeddings)");
  for (int64_t id : prompt) {
    TUNE_CHECK(id >= 0 && id < config.vocab_size, "generate: prompt token ", id,
               " is outside the model's vocabulary of ", config.vocab_size);
  }
  Generation g;
  g.prompt_tokens = prompt_len;
  if (options.max_new_tokens == 0) return g;

  // Reuse the cached prefix; at least the last prompt token is fed, for its logits.
  int64_t reuse = 0;
  const int64_t limit = std::min<int64_t>(static_cast<int64_t>(cached_.size()), prompt_len - 1);
  while (reuse < limit && cached_[static_cast<size_t>(reuse)] == prompt[static_cast<size_t>(reuse)])
    ++reuse;
  cached_.resize(static_cast<size_t>(reuse));
  // The last new token is never fed: prompt + max_new_tokens - 1 positions at most.
  const int64_t need = std::min(config.max_positions, prompt_len + options.max_new_tokens - 1);
  if (cache_.capacity() == 0) {
    cache_ = lm_->make_cache(std::max<int64_t>(need, 1));
  } else {
    cache_.truncate(std::min(reuse, cache_.length()));
    if (cache_.capacity() < need) cache_ = cache_.grown(need);
  }
  g.reused_tokens = reuse;

  const auto t0 = std::chrono::steady_clock::now();
  Tensor logits = feed(prompt.subspan(static_cast<size_t>(reuse)));
  g.prefill_seconds = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();

  std::optional<TextStream> stream;
  if (tokenizer_) stream.emplace(*tokenizer_, options.stop);
  std::vector<int64_t> seen(prompt.begin(), prompt.end());  // for the repetition penalty
  std::vector<float> row;
  // Greedy without a penalty needs only the argmax: on CUDA it is taken there, and 8 bytes come
  // back instead of the whole row of logits.
  const bool plain_greedy =
      !options.sampling.do_sample && options.sampling.repetition_penalty == 1.0;
  for (int64_t step = 0;; ++step) {
    const bool suppress_eos = step < options.min_new_tokens && !options.eos_token_ids.empty();
    int64_t token = 0;
    if (plain_greedy && !suppress_eos && logits.device() == Device::cuda) {
      token = device_argmax(logits);
    } else {
      row_to_floats(logits, row);
      if (suppress_eos) {
        for (int64_t id : options.eos_token_ids)
          if (id >= 0 && id < static_cast<int64_t>(row.size()))
            row[static_cast<size_t>(id)] = -std::numeric_limits<float>::infinity();
      }
      token = choose_token(row, seen, options.sampling, static_cast<uint64_t>(step));
    }
    g.tokens.push_back(token);
    seen.push_back(token);
    if (std::find(options.eos_token_ids.begin(), options.eos_token_ids.end(), token) !=
        options.eos_token_ids.end()) {
      g.finish = FinishReason::stop;
      break;
    }
    if (stream) {
      const std::string piece = stream->push(token);
      if (!piece.empty() && on_text) on_text(piece);
      if (stream->stopped()) {
        g.finish = FinishReason::stop;
        break;
      }
    }
    if (static_cast<int64_t>(g.tokens.size()) >= options.max_new_tokens ||
        cache_.length() >= config.max_positions) {
      g.finish = FinishReason::length;
      break;
    }
    logits = feed(std::span<const int64_t>(&token, 1));
  }
  if (stream) {
    const std::string rest = stream->finish();
    if (!rest.empty() && on_text) on_text(rest);
    g.text = stream->text();
  }
  g.decode_seconds = seconds_since(t1);
  return g;
}

}  // namespace tune::infer
