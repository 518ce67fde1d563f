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
  // The current block, else the next one if it is free and large enough, else a new block right
  // after the current one (later blocks stay for later allocations).
  while (blocks_.empty() ||
         blocks_[current_].used + bytes > static_cast<size_t>(blocks_[current_].memory.numel())) {
    const size_t next = blocks_.empty() ? 0 : current_ + 1;
    if (next < blocks_.size() && blocks_[next].used == 0 &&
        static_cast<size_t>(blocks_[next].memory.numel()) >= bytes) {
      current_ = next;
      break;
    }
    const size_t size = std::max(bytes, kMinBlock);
    blocks_.insert(blocks_.begin() + static_cast<std::ptrdiff_t>(next),
                   Block{Tensor::empty({static_cast<int64_t>(size)}, DType::u8, device_), 0});
    current_ = next;
  }
  Block& b = blocks_[current_];
  Tensor memory = b.memory.narrow(static_cast<int64_t>(b.used), static_cast<int64_t>(bytes));
  b.used += bytes;
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
  // A typed view over the block's bytes; the view keeps the block alive.
  return Tensor::wrap(memory.raw(), shape, dtype,
                      std::shared_ptr<void>(memory.raw(), [memory](void*) {}), device_);
}

Tensor Arena::zeros(const Shape& shape, DType dtype) {
  Tensor t = alloc(shape, dtype);
  t.zero();
  return t;
}

void Arena::reset() {
  for (Block& b : blocks_) b.used = 0;
  current_ = 0;
  in_use_ = 0;
}

Arena::Mark Arena::mark() const {
  return {current_, blocks_.empty() ? 0 : blocks_[current_].used};
}

void Arena::release(const Mark& m) {
  if (blocks_.empty()) return;
  TUNE_ASSERT(m.blocks <= current_ && m.used <= blocks_[m.blocks].used,
              "Arena::release: a mark from after a reset or release");
  for (size_t i = m.blocks + 1; i <= current_; ++i) {
    in_use_ -= blocks_[i].used;
    blocks_[i].used = 0;
  }
  in_use_ -= blocks_[m.blocks].used - m.used;
  blocks_[m.blocks].used = m.used;
  current_ = m.blocks;
}

size_t Arena::capacity_bytes() const {
  size_t n = 0;
  for (const Block& b : blocks_) n += static_cast<size_t>(b.memory.numel());
  return n;
}

}  // namespace tune::nn
