#include "tune/nn/params.h"

namespace tune::nn {

namespace {
constexpr int64_t kAlignElements = 16;  // 64 bytes of f32
}

int ParamStore::add(const std::string& name, const Shape& shape, Role role, Decay decay) {
  TUNE_ASSERT(!allocated(), "ParamStore::add(", name, ") after allocate()");
  TUNE_ASSERT(!by_name_.count(name), "parameter ", name, " declared twice");
  int64_t& size = sizes_[role == Role::trainable ? 1 : 0];
  infos_.push_back({name, shape, role, decay, size});
  size += (numel_of(shape) + kAlignElements - 1) / kAlignElements * kAlignElements;
  int i = static_cast<int>(infos_.size()) - 1;
  by_name_[name] = i;
  return i;
}

void ParamStore::allocate(DType dtype, Device device) {
  TUNE_ASSERT(!allocated(), "ParamStore::allocate() twice");
  dtype_ = dtype;
  device_ = device;
  frozen_ = Tensor::zeros({sizes_[0]}, dtype, device);
  trainable_ = Tensor::zeros({sizes_[1]}, dtype, device);
  grads_ = Tensor::zeros({sizes_[1]}, dtype, device);
}

int ParamStore::index(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? -1 : it->second;
}

Tensor ParamStore::param(int i) const {
  const ParamInfo& p = info(i);
  const Tensor& buf = p.role == Role::trainable ? trainable_ : frozen_;
  return buf.narrow(p.offset, numel_of(p.shape)).view(p.shape);
}

Tensor ParamStore::grad(int i) const {
  const ParamInfo& p = info(i);
  if (p.role != Role::trainable) return Tensor();
  return grads_.narrow(p.offset, numel_of(p.shape)).view(p.shape);
}

Tensor ParamStore::param(const std::string& name) const {
  int i = index(name);
  TUNE_ASSERT(i >= 0, "no parameter named ", name);
  return param(i);
}

void ParamStore::zero_grads() {
  if (grads_.defined()) grads_.zero();
}

}  // namespace tune::nn
