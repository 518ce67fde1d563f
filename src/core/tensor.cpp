#include "tune/core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "tune/core/device.h"

namespace tune {

namespace {

constexpr size_t kAlignment = 64;

std::shared_ptr<Storage> allocate(size_t bytes, Device device) {
  auto s = std::make_shared<Storage>();
  s->bytes = bytes;
  s->device = device;
  if (device == Device::cuda) {
    s->owner = cuda_allocate(bytes, &s->data);
    return s;
  }
  size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0) rounded = kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded);
  TUNE_CHECK(p, "out of host memory allocating ", bytes, " bytes");
  s->data = p;
  s->owner = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  return s;
}

template <typename Src>
double load_as_double(const Src* p, int64_t i) {
  return static_cast<double>(p[i]);
}

double element_as_double(const void* data, DType t, int64_t i) {
  switch (t) {
    case DType::f32:
      return static_cast<const float*>(data)[i];
    case DType::f64:
      return static_cast<const double*>(data)[i];
    case DType::bf16:
      return bf16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case DType::f16:
      return f16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case DType::i32:
      return static_cast<const int32_t*>(data)[i];
    case DType::i64:
      return static_cast<double>(static_cast<const int64_t*>(data)[i]);
    case DType::u8:
      return static_cast<const uint8_t*>(data)[i];
  }
  return 0;
}

void store_double(void* data, DType t, int64_t i, double v) {
  switch (t) {
    case DType::f32:
      static_cast<float*>(data)[i] = static_cast<float>(v);
      break;
    case DType::f64:
      static_cast<double*>(data)[i] = v;
      break;
    case DType::bf16:
      static_cast<uint16_t*>(data)[i] = f32_to_bf16(static_cast<float>(v));
      break;
    case DType::f16:
      static_cast<uint16_t*>(data)[i] = f32_to_f16(static_cast<float>(v));
      break;
    case DType::i32:
      static_cast<int32_t*>(data)[i] = static_cast<int32_t>(v);
      break;
    case DType::i64:
      static_cast<int64_t*>(data)[i] = static_cast<int64_t>(v);
      break;
    case DType::u8:
      static_cast<uint8_t*>(data)[i] = static_cast<uint8_t>(v);
      break;
  }
}

}  // namespace

int64_t numel_of(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void convert(const void* src, DType st, void* dst, DType dt, int64_t n) {
  if (st == dt) {
    std::memcpy(dst, src, static_cast<size_t>(n) * dtype_size(st));
    return;
  }
  // The hot conversions get their own loops; the rest go through double.
  if (st == DType::bf16 && dt == DType::f32) {
    auto* s = static_cast<const uint16_t*>(src);
    auto* d = static_cast<float*>(dst);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
    return;
  }
  if (st == DType::f32 && dt == DType::bf16) {
    auto* s = static_cast<const float*>(src);
    auto* d = static_cast<uint16_t*>(dst);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
    return;
  }
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) store_double(dst, dt, i, element_as_double(src, st, i));
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) TUNE_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = allocate(static_cast<size_t>(numel_of(shape)) * dtype_size(dtype), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero();
  return t;
}

Tensor Tensor::wrap(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner,
                    Device device) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>();
  t.storage_->data = data;
  t.storage_->bytes = static_cast<size_t>(numel_of(shape)) * dtype_size(dtype);
  t.storage_->device = device;
  t.storage_->owner = std::move(owner);
  return t;
}

Tensor Tensor::from_f32(const Shape& shape, const std::vector<float>& v) {
  TUNE_CHECK(numel_of(shape) == static_cast<int64_t>(v.size()), "from_f32: ", v.size(),
             " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::f32);
  std::memcpy(t.raw(), v.data(), v.size() * 4);
  return t;
}

Tensor Tensor::from_f64(const Shape& shape, const std::vector<double>& v) {
  TUNE_CHECK(numel_of(shape) == static_cast<int64_t>(v.size()), "from_f64: ", v.size(),
             " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::f64);
  std::memcpy(t.raw(), v.data(), v.size() * 8);
  return t;
}

Tensor Tensor::from_i64(const Shape& shape, const std::vector<int64_t>& v) {
  TUNE_CHECK(numel_of(shape) == static_cast<int64_t>(v.size()), "from_i64: ", v.size(),
             " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::i64);
  std::memcpy(t.raw(), v.data(), v.size() * 8);
  return t;
}

int64_t Tensor::size(int64_t i) const {
  int64_t n = dim();
  if (i < 0) i += n;
  TUNE_ASSERT(i >= 0 && i < n, "dimension ", i, " of a tensor with shape ", shape_str(shape_));
  return shape_[static_cast<size_t>(i)];
}

Tensor Tensor::view(const Shape& shape) const {
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      TUNE_ASSERT(infer < 0, "view: more than one -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) s[static_cast<size_t>(infer)] = known ? numel() / known : 0;
  TUNE_ASSERT(numel_of(s) == numel(), "view ", shape_str(shape), " of a tensor with shape ",
              shape_str(shape_));
  Tensor t = *this;
  t.shape_ = s;
  return t;
}

Tensor Tensor::narrow(int64_t start, int64_t length) const {
  TUNE_ASSERT(dim() >= 1 && start >= 0 && length >= 0 && start + length <= shape_[0], "narrow(",
              start, ", ", length, ") of shape ", shape_str(shape_));
  Tensor t = *this;
  t.shape_[0] = length;
  t.offset_ +=
      static_cast<size_t>(start * (numel() / std::max<int64_t>(shape_[0], 1))) * dtype_size(dtype_);
  return t;
}

Tensor Tensor::operator[](int64_t i) const {
  Tensor t = narrow(i, 1);
  t.shape_.erase(t.shape_.begin());
  return t;
}

Tensor Tensor::clone() const {
  return to(dtype_);
}

Tensor Tensor::to(DType dtype) const {
  TUNE_ASSERT(device() == Device::cpu, "Tensor::to on ", describe());
  Tensor t = empty(shape_, dtype);
  convert(raw(), dtype_, t.raw(), dtype, numel());
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  TUNE_ASSERT(src.numel() == numel(), "copy_from: ", src.describe(), " into ", describe());
  if (device() == Device::cpu && src.device() == Device::cpu) {
    convert(src.raw(), src.dtype(), raw(), dtype_, numel());
    return;
  }
  if (src.dtype() != dtype_) {
    // Between devices the dtype is converted on the host side.
    TUNE_ASSERT(device() == Device::cpu || src.device() == Device::cpu,
                "copy_from between two CUDA tensors needs equal dtypes: ", src.describe(), " into ",
                describe());
    if (src.device() == Device::cpu) {
      copy_from(src.to(dtype_));
    } else {
      copy_from(src.to(Device::cpu));
    }
    return;
  }
  CopyKind kind = device() == Device::cpu       ? CopyKind::device_to_host
                  : src.device() == Device::cpu ? CopyKind::host_to_device
                                                : CopyKind::device_to_device;
  cuda_copy(raw(), src.raw(), nbytes(), kind);
}

void Tensor::zero() {
  if (device() == Device::cpu) {
    std::memset(raw(), 0, nbytes());
    return;
  }
  cuda_zero(raw(), nbytes());
}

double Tensor::item(int64_t i) const {
  TUNE_ASSERT(device() == Device::cpu && i >= 0 && i < numel(), "item(", i, ") of ", describe());
  return element_as_double(raw(), dtype_, i);
}

std::vector<float> Tensor::to_f32_vector() const {
  std::vector<float> v(static_cast<size_t>(numel()));
  convert(raw(), dtype_, v.data(), DType::f32, numel());
  return v;
}

std::string Tensor::describe() const {
  return str(dtype_name(dtype_), " ", shape_str(shape_), device() == Device::cuda ? " cuda" : "");
}

}  // namespace tune
