#include "tune/infer/paged_decoder.h"

#include "tune/core/error.h"

namespace tune::infer {

PagedDecoder::PagedDecoder(nn::CausalLM& lm, int64_t slots, int64_t slot_capacity)
    : lm_(&lm), slot_capacity_(slot_capacity) {
  TUNE_CHECK(lm.device() == Device::cuda,
             "PagedDecoder: the model must be on CUDA (the CPU decodes through forward_batch)");
  TUNE_CHECK(slots > 0 && slot_capacity > 0, "PagedDecoder: ", slots, " slots of ", slot_capacity,
             " positions; both must be positive");
  pool_ = lm.make_cache(slots * slot_capacity);
  for (int64_t s = 0; s < slots; ++s)
    views_.push_back(pool_.slice(s * slot_capacity, slot_capacity));
  lengths_.assign(static_cast<size_t>(slots), 0);
  taken_.assign(static_cast<size_t>(slots), false);
  prefill_ctx_.mode = nn::Mode::eval;
}

int64_t PagedDecoder::acquire() {
  for (size_t s = 0; s < taken_.size(); ++s) {
    if (taken_[s]) continue;
    taken_[s] = true;
    lengths_[s] = 0;
    views_[s].clear();
    return static_cast<int64_t>(s);
  }
  return -1;
}

void PagedDecoder::release(int64_t slot) {
  TUNE_ASSERT(
      slot >= 0 && slot < static_cast<int64_t>(taken_.size()) && taken_[static_cast<size_t>(slot)],
      "PagedDecoder::release(", slot, "): not a taken slot");
  taken_[static_cast<size_t>(slot)] = false;
}

Tensor PagedDecoder::prefill(int64_t slot, std::span<const int64_t> tokens) {
  auto& length = lengths_[static_cast<size_t>(slot)];
  const auto n = static_cast<int64_t>(tokens.size());
  TUNE_CHECK(length + n <= slot_capacity_, "PagedDecoder: ", n,
             " more tokens do not fit a slot of ", slot_capacity_, " positions holding ", length);
  prefill_ctx_.arena.reset();
  const Tensor ids = Tensor::from_i64({n}, {tokens.begin(), tokens.end()});
  Tensor logits =
      lm_->forward_cached(prefill_ctx_, ids, views_[static_cast<size_t>(slot)], nn::Logits::last);
  length += n;
  return logits;
}

Tensor PagedDecoder::decode(std::span<const int64_t> slots, std::span<const int64_t> tokens) {
  const auto n = static_cast<int64_t>(slots.size());
  TUNE_CHECK(n > 0 && tokens.size() == slots.size(), "PagedDecoder::decode: ", n, " slots and ",
             tokens.size(), " tokens");
  int64_t rows = 1;
  while (rows < n) rows *= 2;
  Step& step = steps_[rows];
  if (!step.inputs.ids.defined()) {
    step.inputs = nn::DecodeInputs(Device::cuda, rows, 1, slot_capacity_);
    step.ctx.mode = nn::Mode::eval;
  }
  // Rows past n are padding: slot -1 writes nothing, and they read one position of page 0.
  std::vector<int64_t> ids(static_cast<size_t>(rows), 0), positions(static_cast<size_t>(rows), 0);
  std::vector<int32_t> write(static_cast<size_t>(rows), -1), visible(static_cast<size_t>(rows), 1),
      pages(static_cast<size_t>(rows), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = slots[static_cast<size_t>(i)];
    const int64_t length = lengths_[static_cast<size_t>(slot)];
    TUNE_CHECK(length < slot_capacity_ && length < lm_->config().max_positions,
               "PagedDecoder::decode: slot ", slot, " is full (", length, " positions)");
    const auto r = static_cast<size_t>(i);
    ids[r] = tokens[r];
    positions[r] = length;
    write[r] = static_cast<int32_t>(slot * slot_capacity_ + length);
    visible[r] = static_cast<int32_t>(length + 1);
    pages[r] = static_cast<int32_t>(slot);
  }
  step.inputs.set(ids, positions, write, visible, pages);
  step.ctx.arena.reset();
  Tensor logits =
      step.replay.run({pool_.keys(0).raw(), step.ctx.arena.base(), step.inputs.buffer.raw()},
                      [&] { return lm_->decode_step(step.ctx, step.inputs, pool_); });
  for (int64_t i = 0; i < n; ++i) ++lengths_[static_cast<size_t>(slots[static_cast<size_t>(i)])];
  return logits.narrow(0, n);
}

}  // namespace tune::infer
