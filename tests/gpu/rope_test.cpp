// ops::rope_forward / rope_backward on the GPU against the CPU op in f64 on the same rounded
// inputs: f32/bf16/f16, i64 and i32 positions (on the device), head dims 64/80/128/256 and odd
// half-dims (the scalar path), awkward row counts, x inside a sentinel-filled buffer (pad 37
// misaligns it for packed access, 64 keeps it aligned), with the positions checked on the device
// or by the caller. f32 within 1e-6, bf16/f16 2e-2. A position outside the tables throws naming
// it.
#include <gtest/gtest.h>

#include "gpu/gpu_test_util.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using test::fetch;
using test::place;
using test::Placed;
using test::to_device;

// Llama's tables for `positions` rows, rounded to dtype, in f64.
void tables(int64_t positions, int64_t d, DType dtype, Tensor* cos, Tensor* sin) {
  *cos = Tensor::empty({positions, d / 2}, DType::f64);
  *sin = Tensor::empty({positions, d / 2}, DType::f64);
  for (int64_t p = 0; p < positions; ++p) {
    for (int64_t i = 0; i < d / 2; ++i) {
      const double f = std::pow(10000.0, -2.0 * static_cast<double>(i) / static_cast<double>(d));
      cos->data<double>()[p * (d / 2) + i] = std::cos(static_cast<double>(p) * f);
      sin->data<double>()[p * (d / 2) + i] = std::sin(static_cast<double>(p) * f);
    }
  }
  *cos = cos->to(dtype).to(DType::f64);
  *sin = sin->to(dtype).to(DType::f64);
}

Tensor positions_of(DType type, int64_t b, int64_t t, int64_t limit, uint64_t seed) {
  Tensor pos = test::randint({b, t}, limit, seed);
  if (type == DType::i64) return pos;
  Tensor i32 = Tensor::empty({b, t}, DType::i32);
  for (int64_t i = 0; i < b * t; ++i) i32.data<int32_t>()[i] = static_cast<int32_t>(pos.item(i));
  return i32;
}

Tensor on_device(const Tensor& ints) {
  Tensor d = Tensor::empty(ints.shape(), ints.dtype(), Device::cuda);
  d.copy_from(ints);
  return d;
}

void check(DType dtype, DType pos_type, int64_t b, int64_t t, int64_t h, int64_t d, int64_t pad) {
  SCOPED_TRACE(str(dtype_name(dtype), " pos ", dtype_name(pos_type), " b=", b, " t=", t, " h=", h,
                   " d=", d, " pad=", pad));
  const int64_t table_rows = 300;
  const uint64_t seed = static_cast<uint64_t>(b * 131 + t * 7 + h * 3 + d + pad);
  Tensor cos, sin;
  tables(table_rows, d, dtype, &cos, &sin);
  const Tensor pos = positions_of(pos_type, b, t, table_rows, seed);
  const Tensor x = test::randn({b, t, h, d}, DType::f32, seed + 1).to(dtype).to(DType::f64);
  const Tensor cos_dev = to_device(cos, dtype), sin_dev = to_device(sin, dtype);
  const Tensor pos_dev = on_device(pos);
  const double tol = dtype == DType::f32 ? 1e-6 : 2e-2;
  for (bool forward : {true, false}) {
    for (ops::Checked checked : {ops::Checked::no, ops::Checked::yes}) {
      Tensor ref = x.clone();
      Placed dev = place({b, t, h, d}, dtype, pad, x);
      if (forward) {
        ops::rope_forward(ref, cos, sin, pos);
        ops::rope_forward(dev.view, cos_dev, sin_dev, pos_dev, checked);
      } else {
        ops::rope_backward(ref, cos, sin, pos);
        ops::rope_backward(dev.view, cos_dev, sin_dev, pos_dev, checked);
      }
      EXPECT_LE(test::rel_error(fetch(dev, {b, t, h, d}, "x"), ref), tol)
          << "forward " << forward << " checked by the caller " << (checked == ops::Checked::yes);
    }
  }
}

TEST(CudaRope, MatchesCpuAtAwkwardSizes) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (DType pos_type : {DType::i64, DType::i32}) {
      for (int64_t rows : {1, 7, 33, 257, 4097}) {
        for (int64_t d : {64, 80, 128, 256}) check(dtype, pos_type, 1, rows, 3, d, 64);
      }
      check(dtype, pos_type, 2, 33, 8, 128, 37);  // misaligned: narrower packs
      check(dtype, pos_type, 3, 7, 5, 6, 37);     // half-dim 3: scalar path
      check(dtype, pos_type, 2, 5, 4, 20, 64);    // half-dim 10: pairs of 2
    }
  }
}

TEST(CudaRope, PositionOutsideTheTablesThrows) {
  Tensor cos, sin;
  tables(16, 64, DType::bf16, &cos, &sin);
  Tensor pos = test::randint({2, 9}, 16, 1);
  pos.data<int64_t>()[13] = 16;
  Tensor x = to_device(test::randn({2, 9, 2, 64}, DType::f32, 2), DType::bf16);
  try {
    ops::rope_forward(x, to_device(cos, DType::bf16), to_device(sin, DType::bf16), on_device(pos));
    FAIL() << "no error for position 16";
  } catch (const Error& e) {
    EXPECT_TRUE(test::contains(e.what(),
                               "[rope_forward] position 16 at (b, t) = (1, 4) is "
                               "outside the cos/sin tables"))
        << e.what();
  }
}

}  // namespace
}  // namespace tune
