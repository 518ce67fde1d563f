// Many sequences decoding at once on CUDA: one KV pool (CausalLM::make_cache) cut into fixed
// slots — one page of the paged-attention ops per slot — so that a decode step over any set of
// slots is one CausalLM::decode_step whose block table lists their pages. A prompt is prefilled
// through forward_cached into its slot's view of the pool; decode steps are captured in one CUDA
// graph per batch size (rounded up to a power of two; padding rows write nothing) and replayed,
// so a step of 32 sequences costs one graph launch. Used by the serving engine and the decode
// benchmark.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "tune/infer/replayed_step.h"
#include "tune/nn/context.h"
#include "tune/nn/transformer.h"

namespace tune::infer {

class PagedDecoder {
 public:
  // `slots` sequences of at most `slot_capacity` positions each; the model must live on CUDA
  // (the CPU has no graphs to replay; it decodes through CausalLM::forward_batch).
  PagedDecoder(nn::CausalLM& lm, int64_t slots, int64_t slot_capacity);
  PagedDecoder(const PagedDecoder&) = delete;
  PagedDecoder& operator=(const PagedDecoder&) = delete;

  int64_t slot_capacity() const { return slot_capacity_; }
  // A free slot (emptied), or -1 when every slot is taken.
  int64_t acquire();
  void release(int64_t slot);
  // Positions the slot holds.
  int64_t length(int64_t slot) const { return lengths_[static_cast<size_t>(slot)]; }

  // Feeds `tokens` after what the slot holds; returns the logits [1, V] of the last one, on the
  // device, valid until the next prefill.
  Tensor prefill(int64_t slot, std::span<const int64_t> tokens);
  // One new token for each of `slots` (distinct, each with room for one more position); returns
  // logits [slots.size(), V] on the device, row i for slots[i], valid until the next decode.
  Tensor decode(std::span<const int64_t> slots, std::span<const int64_t> tokens);

 private:
  // The decode step of one batch size: its own arena, inputs and graph.
  struct Step {
    nn::Context ctx{Device::cuda};
    nn::DecodeInputs inputs;
    ReplayedStep replay;
  };

  nn::CausalLM* lm_;
  int64_t slot_capacity_;
  nn::KvCache pool_;
  std::vector<nn::KvCache> views_;  // per slot, over its positions of the pool
  std::vector<int64_t> lengths_;
  std::vector<bool> taken_;
  nn::Context prefill_ctx_{Device::cuda};
  std::map<int64_t, Step> steps_;  // by batch size
};

}  // namespace tune::infer
