// What a forward/backward pass needs besides parameters: an activation arena (DESIGN.md
// decision 3), whether dropout is on, and the step counter that makes dropout masks reproducible.
#pragma once

#include <cstdint>
#include <vector>

#include "tune/core/tensor.h"

namespace tune::nn {

// A bump allocator for one step's activations. The first step discovers how much memory a step
// of this shape needs (spilling into extra blocks as it goes); reset() then replaces the blocks
// by a single one of that size, so later steps of the same shape allocate nothing. Tensors handed
// out stay valid until the next reset() (or a release() past them); after it their memory is
// reused or freed: they do not keep it alive.
class Arena {
 public:
  // Memory on `device`: host memory, or CUDA's stream-ordered pool.
  explicit Arena(Device device = Device::cpu) : device_(device) {}
  Device device() const { return device_; }
  Tensor alloc(const Shape& shape, DType dtype);
  Tensor zeros(const Shape& shape, DType dtype);
  void reset();
  // Stack-like release, for recomputation: everything allocated after mark() is given back by
  // release(mark) (tensors from it must no longer be used), so a block's activations can live
  // only while that block runs.
  struct Mark {
    size_t blocks = 0, used = 0;
  };
  Mark mark() const;
  void release(const Mark& m);
  size_t capacity_bytes() const;
  // The start of the first block (null before the first alloc): where a step's tensors are.
  const void* base() const { return blocks_.empty() ? nullptr : blocks_.front().memory.raw(); }
  size_t peak_bytes() const { return peak_; }

 private:
  struct Block {
    Tensor memory;  // u8, owns the bytes
    size_t used = 0;
  };
  Device device_ = Device::cpu;
  std::vector<Block> blocks_;
  size_t in_use_ = 0, peak_ = 0;
};

enum class Mode : uint8_t { train, eval };

struct Context {
  Context() = default;
  // A context whose activations live on `device` (the model's parameters must be there too).
  explicit Context(Device device) : arena(device) {}
  Device device() const { return arena.device(); }

  Arena arena;
  Mode mode = Mode::train;
  // Activation dtype: the parameters' (f32, or f64 for gradient checks on the CPU; f32, bf16 or
  // f16 on CUDA).
  DType dtype = DType::f32;
  // Dropout masks are a function of (LoraConfig::seed, step, layer, element): the same step
  // gives the same mask, so an interrupted run resumes exactly.
  uint64_t step = 0;
  // Activation checkpointing per block (DESIGN.md decision 3): forward keeps only each block's
  // input and backward reruns the block's forward first. Same gradients, far less memory. On
  // CUDA (without offload_blocks) each block's attention output and lse are kept as well, and the
  // rerun skips the flash-attention forward (CausalLM::kept_attention).
  bool recompute_blocks = false;
  // With recompute_blocks on CUDA: the kept block inputs go to pinned host memory, copied on a
  // side stream while the next block computes, and come back one block ahead in backward; the
  // device holds two block inputs instead of one per layer (the longest sequences).
  bool offload_blocks = false;
};

}  // namespace tune::nn
