// Continuous batching for a server: one scheduler thread owns the model; requests from any
// thread join the running batch. Each scheduler step is one CausalLM::forward_batch over every
// active sequence — decoding ones contribute their last token, newly admitted ones their whole
// prompt (prefill) — then each sequence chooses its next token with the sampler and streams it.
// Finished and cancelled sequences leave at once and free their KV cache.
//
// On CUDA with an empty AdapterBank the sequences live in the slots of a PagedDecoder instead:
// a new prompt is prefilled into its slot, and every decoding sequence advances in one
// graph-replayed decode_step (the paged KV pool, one CUDA graph per batch size).
//
// Each request runs on the base model or one LoRA adapter of the engine's AdapterBank; rows of
// different adapters share the step. With RowMatmul::independent (the default) a request's
// tokens do not depend on what else is being served: a greedy request gives the same answer
// alone and under load.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tune/infer/generator.h"
#include "tune/infer/paged_decoder.h"
#include "tune/infer/session.h"
#include "tune/nn/adapter_bank.h"

namespace tune::infer {

// Reads the PEFT adapter folder DIR (adapter_config.json + adapter_model.safetensors) into
// `bank` as adapter `name`, checking every tensor against the Linear it adapts in `model` (which
// must carry no adapter of its own). Returns the adapter's id.
int load_adapter_into_bank(nn::AdapterBank& bank, const std::string& name, const std::string& dir,
                           models::Model& model);

struct BatchRequest {
  std::vector<int64_t> prompt;
  int adapter = 0;          // 0: the base model
  GenerateOptions options;  // sampling, max_new_tokens, end-of-sequence ids, stop strings
  // Log-probabilities: -1 none; k >= 0 the chosen token's and the k most likely tokens'.
  int top_logprobs = -1;
};

struct TokenLogprob {
  int64_t id = 0;
  double logprob = 0;  // log softmax of the model's logits (before sampling settings)
};

// One generated token, as the scheduler hands it over.
struct TokenEvent {
  int64_t id = -1;   // -1: no token, only text released at the end (a held-back tail)
  std::string text;  // the text that became final with this token (may be empty)
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;  // most likely first
};

// A request's output, filled by the scheduler thread and read by the thread that submitted it.
class RequestStream {
 public:
  // Waits until there are events or the request is done (or `timeout` passes); moves the events
  // out (appended) into `events`. Returns false when the request is done: the events taken by
  // this call were its last.
  bool wait(std::vector<TokenEvent>& events, std::chrono::milliseconds timeout);
  // Stops the request (its client went away); the scheduler frees its slot at the next step.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // Valid once wait() returned false.
  FinishReason finish() const { return finish_; }
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t completion_tokens() const { return completion_tokens_; }
  const std::string& text() const { return text_; }
  const std::string& error() const { return error_; }  // non-empty when the request failed

 private:
  friend class BatchEngine;
  void push(TokenEvent event);
  void close(FinishReason finish, int64_t completion_tokens, std::string text, std::string error);

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<TokenEvent> events_;
  bool done_ = false;
  std::atomic<bool> cancelled_{false};
  FinishReason finish_ = FinishReason::length;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  std::string text_, error_;
};

struct BatchEngineOptions {
  int64_t max_batch = 64;  // most sequences in one step; more requests wait their turn
  nn::RowMatmul rows = nn::RowMatmul::independent;
  // On CUDA without adapters: the positions (prompt + new tokens) of each of the max_batch KV
  // slots; capped at the model's max_position_embeddings.
  int64_t max_context = 4096;
};

struct BatchEngineStats {
  int64_t steps = 0, generated_tokens = 0, active = 0, waiting = 0, largest_batch = 0;
  int64_t cancelled = 0;  // requests whose client went away before they finished
};

class BatchEngine {
 public:
  // `model` must outlive the engine; it and `bank` are used only by the scheduler thread.
  BatchEngine(LoadedModel& model, const nn::AdapterBank& bank, BatchEngineOptions options = {});
  ~BatchEngine();
  BatchEngine(const BatchEngine&) = delete;
  BatchEngine& operator=(const BatchEngine&) = delete;

  // Thread-safe. The request must fit the model (prompt + max_new_tokens within
  // max_position_embeddings is the caller's check; the engine stops at the limit). On the paged
  // CUDA path a request that does not fit one KV slot (options.max_context) is refused here.
  std::shared_ptr<RequestStream> submit(BatchRequest request);
  // Finishes every request already submitted, then stops the scheduler thread. Idempotent.
  void shutdown();
  BatchEngineStats stats() const;
  // The most positions (prompt + new tokens) one request may take: the model's
  // max_position_embeddings, or a KV slot's size on the paged CUDA path.
  int64_t max_sequence_positions() const;

 private:
  struct Sequence;
  void run();
  void step(std::vector<std::unique_ptr<Sequence>>& active);
  // The logits [active, V] of a step on the host: through forward_batch, or the PagedDecoder.
  Tensor batch_logits(std::vector<std::unique_ptr<Sequence>>& active);
  Tensor paged_logits(std::vector<std::unique_ptr<Sequence>>& active);

  LoadedModel* model_;
  const nn::AdapterBank* bank_;
  BatchEngineOptions options_;
  std::unique_ptr<PagedDecoder> paged_;  // CUDA without adapters; used by the scheduler only
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  bool stopping_ = false;
  BatchEngineStats stats_;
  std::thread thread_;
};

}  // namespace tune::infer
