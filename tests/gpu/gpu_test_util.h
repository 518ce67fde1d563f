// What the GPU tests share: host values copied to the device in a storage dtype, and outputs
// placed in the middle of a device buffer of sentinels that the op under test must leave alone
// (a pad of 37 elements misaligns the output for 16-byte access, 64 keeps it aligned).
#pragma once

#include <gtest/gtest.h>

#include "test_util.h"

namespace tune::test {

constexpr double kSentinel = 7.0;

// `host` (any float dtype) on the device in `dtype`.
inline Tensor to_device(const Tensor& host, DType dtype) {
  Tensor d = Tensor::empty(host.shape(), dtype, Device::cuda);
  d.copy_from(host.dtype() == dtype ? host : host.to(dtype));
  return d;
}

// Normal random values rounded to `dtype`, in f64: exactly what the device sees, for the
// reference.
inline Tensor rounded(const Shape& shape, DType dtype, uint64_t seed) {
  return randn(shape, DType::f32, seed).to(dtype).to(DType::f64);
}

// A device tensor `view` of `shape` inside `buffer`, with `pad` sentinels on each side.
struct Placed {
  Tensor buffer, view;
  int64_t pad = 0, numel = 0;
};

// Holds `init` (rounded to dtype) when it is defined.
inline Placed place(const Shape& shape, DType dtype, int64_t pad, const Tensor& init = Tensor()) {
  Placed p;
  p.pad = pad;
  p.numel = numel_of(shape);
  Tensor host = full({p.numel + 2 * pad}, DType::f32, kSentinel).to(dtype);
  if (init.defined()) host.narrow(pad, p.numel).copy_from(init.view({p.numel}).to(dtype));
  p.buffer = to_device(host, dtype);
  p.view = p.buffer.narrow(pad, p.numel).view(shape);
  return p;
}

// The placed tensor back on the host in f64, after checking that every sentinel survived.
inline Tensor fetch(const Placed& p, const Shape& shape, const char* name = "output") {
  const Tensor back = p.buffer.to(Device::cpu);
  for (int64_t i = 0; i < p.pad; ++i) {
    EXPECT_EQ(back.item(i), kSentinel) << name << ": sentinel before overwritten at " << i;
    EXPECT_EQ(back.item(p.pad + p.numel + i), kSentinel)
        << name << ": sentinel after overwritten at " << i;
  }
  return back.narrow(p.pad, p.numel).to(DType::f64).view(shape);
}

}  // namespace tune::test
