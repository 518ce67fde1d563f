// Parameters live in flat buffers (DESIGN.md decision 2). A ParamStore is a table of
// (name, shape, role, weight decay, offset) and one contiguous buffer per role: frozen weights,
// trainable weights, and — same layout as the trainable buffer — their gradients. Optimizer state
// is allocated by the optimizer in that same layout, so an update is one loop over a buffer and a
// ZeRO shard is an offset range. Each parameter starts on a 64-byte boundary (padding is zero
// and stays zero: its gradient is zero).
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "tune/core/tensor.h"

namespace tune::nn {

enum class Role : uint8_t { frozen, trainable };
enum class Decay : uint8_t { no, yes };

struct ParamInfo {
  std::string name;  // Hugging Face name ("model.layers.0.self_attn.q_proj.weight") or PEFT name
  Shape shape;
  Role role = Role::trainable;
  Decay decay = Decay::yes;
  int64_t offset = 0;  // elements into its role's buffer
};

class ParamStore {
 public:
  // Declares a parameter; returns its index. Names are unique.
  int add(const std::string& name, const Shape& shape, Role role, Decay decay);
  // Allocates the buffers (zeroed) once every parameter is declared. Everything is stored in
  // `dtype` on `device` (on the CPU f32 for training, f64 for gradient checks).
  void allocate(DType dtype, Device device = Device::cpu);
  bool allocated() const { return trainable_.defined() || frozen_.defined(); }

  const std::vector<ParamInfo>& infos() const { return infos_; }
  int index(const std::string& name) const;  // -1 when absent
  const ParamInfo& info(int i) const { return infos_[static_cast<size_t>(i)]; }
  // Views into the flat buffers. grad() is undefined for frozen parameters.
  Tensor param(int i) const;
  Tensor grad(int i) const;
  Tensor param(const std::string& name) const;

  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  Tensor& trainable() { return trainable_; }
  const Tensor& trainable() const { return trainable_; }
  Tensor& grads() { return grads_; }
  const Tensor& grads() const { return grads_; }
  Tensor& frozen() { return frozen_; }
  const Tensor& frozen() const { return frozen_; }
  // Weight-decay groups do not affect the layout, so they may change after allocation
  // (torch's default AdamW decays everything; trainers usually exempt norms and biases).
  void set_decay(int i, Decay decay) { infos_[static_cast<size_t>(i)].decay = decay; }
  int64_t trainable_numel() const { return sizes_[1]; }
  int64_t frozen_numel() const { return sizes_[0]; }
  void zero_grads();

 private:
  std::vector<ParamInfo> infos_;
  std::unordered_map<std::string, int> by_name_;
  int64_t sizes_[2] = {0, 0};  // padded element counts: frozen, trainable
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
  Tensor frozen_, trainable_, grads_;
};

}  // namespace tune::nn
