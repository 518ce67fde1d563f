// Tensor: a shape, a dtype, a device and a shared storage with a byte offset. Tensors are always
// contiguous (row-major); views share storage and differ only in shape and offset. Storage is
// 64-byte aligned when we allocate it, or a zero-copy window into an mmap'd file that stays mapped
// while any view of it lives.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tune/core/dtype.h"
#include "tune/core/error.h"

namespace tune {

enum class Device : uint8_t { cpu, cuda };
inline const char* device_name(Device d) {
  return d == Device::cuda ? "cuda" : "cpu";
}

using Shape = std::vector<int64_t>;

// Raw memory with an owner. `owner` keeps whatever backs `data` alive (an aligned allocation,
// an mmap, a device allocation).
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::cpu;
  std::shared_ptr<void> owner;
};

int64_t numel_of(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;

  // New uninitialised / zeroed tensors on the CPU (64-byte aligned).
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu);
  // A view of memory someone else owns; `owner` is kept alive as long as the view.
  static Tensor wrap(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner,
                     Device device = Device::cpu);
  // Copies of host values, for tests and small constants.
  static Tensor from_f32(const Shape& shape, const std::vector<float>& values);
  static Tensor from_f64(const Shape& shape, const std::vector<double>& values);
  static Tensor from_i64(const Shape& shape, const std::vector<int64_t>& values);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  // Size of dimension i; negative i counts from the end.
  int64_t size(int64_t i) const;
  int64_t numel() const { return numel_of(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  void* raw() const { return static_cast<char*>(storage_->data) + offset_; }
  template <typename T>
  T* data() const {
    return static_cast<T*>(raw());
  }

  // Same storage, new shape with the same numel; one dimension may be -1.
  Tensor view(const Shape& shape) const;
  // Rows [start, start + length) along dimension 0, sharing storage.
  Tensor narrow(int64_t start, int64_t length) const;
  // Row i along dimension 0, one dimension fewer.
  Tensor operator[](int64_t i) const;

  // A new tensor with its own storage: same values, possibly another dtype.
  Tensor clone() const;
  Tensor to(DType dtype) const;
  // The same values on `device`: this tensor itself when it is there already, else a copy.
  Tensor to(Device device) const;
  // Copies `src` (same numel, any float dtype, any device) into this tensor's storage,
  // converting (on the host side when the devices differ).
  void copy_from(const Tensor& src);
  void zero();

  // Element access converting to double: for tests, messages and small loops, not kernels.
  double item(int64_t flat_index = 0) const;
  std::vector<float> to_f32_vector() const;

  std::string describe() const;  // "f32 (2, 16, 64)"
  bool same_storage(const Tensor& other) const { return storage_ == other.storage_; }

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes
  Shape shape_;
  DType dtype_ = DType::f32;
};

// Converts `n` elements between dtypes on the CPU (float types and integers; rounding to nearest
// even into bf16/f16).
void convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n);

}  // namespace tune
