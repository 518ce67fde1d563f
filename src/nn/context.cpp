#include "tune/nn/context.h"

#include <algorithm>

#include "tune/core/error.h"

namespace tune::nn {

namespace {
// Tensors start on a cache line on the host, and on 256 bytes on CUDA, where cuBLASLt's fastest
// kernels and 128-bit loads want them.
constexpr size_t kMinBlock = size_t{1} << 20;
size_t round_up(size_t n, Device device) {
  const size_t align = device == Device::cuda ? 256 : 64;
  return (n + align - 1) / align * align;
}
}  // namespace

Tensor Arena::alloc(const Shape& shape, DType dtype) {
  size_t bytes = round_up(static_cast<size_t>(numel_of(shape)) * dtype_size(dtype), device_);
  if (blocks_.empty() ||
      blocks_.back().used + bytes > static_cast<size_t>(blocks_.back().memory.numel())) {
    size_t size = std::max(bytes, kMinBlock);
    blocks_.push_back({Tensor::empty({static_cast<int64_t>(size)}, DType::u8, device_), 0});
  }
  Block& b = blocks_.back();
  Tensor memory = b.memory.narrow(static_cast<int64_t>(b.used), static_cast<int64_t>(bytes));
  b.used += bytes;
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
  // A typed view over the block's bytes that does not keep the block alive: the arena alone owns
  // its memory, so a block dropped by release() or reset() is freed at once even while a layer
  // still holds a tensor it saved in the last step (which is never read again). Views that owned
  // their block pinned every dropped block until the next step overwrote those tensors, ~9.5 GiB
  // on top of every training run's peak on the H100 (all of step one's per-block memory under
  // checkpointing, the whole arena on the step after a spill).
  return Tensor::wrap(memory.raw(), shape, dtype, std::shared_ptr<void>(memory.raw(), [](void*) {}),
                      device_);
}

Tensor Arena::zeros(const Shape& shape, DType dtype) {
  Tensor t = alloc(shape, dtype);
  t.zero();
  return t;
}

void Arena::reset() {
  if (blocks_.size() > 1 || capacity_bytes() < peak_) {
    // The last step spilled (its extra blocks may already be released): from now on one block holds
    // a whole step. Allocation is stack-like (release() frees only the top), so the peak in use is
    // the size one block needs.
    blocks_.clear();
    blocks_.push_back(
        {Tensor::empty({static_cast<int64_t>(std::max(peak_, kMinBlock))}, DType::u8, device_), 0});
  }
  for (Block& b : blocks_) b.used = 0;
  in_use_ = 0;
}

Arena::Mark Arena::mark() const {
  return {blocks_.size(), blocks_.empty() ? 0 : blocks_.back().used};
}

void Arena::release(const Mark& m) {
  TUNE_ASSERT(m.blocks <= blocks_.size(), "Arena::release: a mark from after a reset");
  // Blocks opened after the mark are dropped (their memory returns once no tensor holds it);
  // the next reset() sizes one block for the whole step anyway.
  blocks_.resize(m.blocks);
  if (!blocks_.empty()) blocks_.back().used = m.used;
  in_use_ = 0;
  for (const Block& b : blocks_) in_use_ += b.used;
}

size_t Arena::capacity_bytes() const {
  size_t n = 0;
  for (const Block& b : blocks_) n += static_cast<size_t>(b.memory.numel());
  return n;
}

}  // namespace tune::nn
