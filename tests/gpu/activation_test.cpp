// GELU (tanh) forward/backward, dropout, and the column-block copies (slice_columns,
// write_columns) on the GPU against the CPU ops on the same rounded inputs, at awkward sizes, with
// outputs among sentinels (pad 64: aligned, 37: not). GELU: f32 within 1e-6, bf16/f16 within 1e-2.
// Dropout: the same bits as the CPU (the same Philox draws, the same f32 product, the same
// rounding); column copies: exact.
#include <gtest/gtest.h>

#include <cstring>

#include "gpu/gpu_test_util.h"
#include "tune/core/error.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using test::fetch;
using test::place;
using test::Placed;
using test::rounded;
using test::to_device;

const int64_t kSizes[] = {1, 7, 33, 257, 4097, (int64_t{1} << 20) + 3};
const DType kDtypes[] = {DType::f32, DType::bf16, DType::f16};

TEST(CudaGelu, MatchesCpu) {
  for (DType dtype : kDtypes) {
    const double tol = dtype == DType::f32 ? 1e-6 : 1e-2;
    for (int64_t pad : {64, 37}) {
      for (int64_t n : kSizes) {
        SCOPED_TRACE(str(dtype_name(dtype), " n=", n, " pad=", pad));
        const uint64_t seed = static_cast<uint64_t>(n * 31 + pad);
        // Spread 3: the tails, where tanh saturates, are covered too.
        const Tensor x = test::randn({n}, DType::f32, seed, 3.0).to(dtype).to(DType::f64);
        const Tensor dy = rounded({n}, dtype, seed + 1);
        Tensor y_ref = Tensor::empty({n}, DType::f64), dx_ref = Tensor::empty({n}, DType::f64);
        ops::gelu_tanh_forward(y_ref, x);
        ops::gelu_tanh_backward(dx_ref, dy, x);
        const Placed xd = place({n}, dtype, pad, x);
        Placed y = place({n}, dtype, pad);
        ops::gelu_tanh_forward(y.view, xd.view);
        EXPECT_LE(test::rel_error(fetch(y, {n}, "y"), y_ref), tol);
        // dx written over dy (in place).
        Placed d = place({n}, dtype, pad, dy);
        ops::gelu_tanh_backward(d.view, d.view, xd.view);
        EXPECT_LE(test::rel_error(fetch(d, {n}, "dx"), dx_ref), tol);
        if (testing::Test::HasFailure()) return;
      }
    }
  }
}

// The CPU's f32 dropout, rounded to dtype: exactly what the device must produce.
Tensor cpu_dropout(const Tensor& x64, DType dtype, double p, uint64_t seed, uint64_t stream) {
  const Tensor x32 = x64.to(DType::f32);
  Tensor out = Tensor::empty(x32.shape(), DType::f32);
  ops::dropout(out, x32, p, seed, stream);
  return out.to(dtype);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(CudaDropout, SameMaskAndValuesAsTheCpu) {
  for (DType dtype : kDtypes) {
    for (double p : {0.0, 0.1, 0.5, 0.9}) {
      for (int64_t n : kSizes) {
        SCOPED_TRACE(str(dtype_name(dtype), " p=", p, " n=", n));
        const uint64_t seed = 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(n);
        const uint64_t stream = (uint64_t{7} << 40) + 3;  // both halves of the counter matter
        const Tensor x = rounded({n}, dtype, static_cast<uint64_t>(n) + 5);
        const Tensor want = cpu_dropout(x, dtype, p, seed, stream);
        const Tensor xd = to_device(x, dtype);
        Placed out = place({n}, dtype, 37);
        ops::dropout(out.view, xd, p, seed, stream);
        fetch(out, {n}, "out");  // sentinels
        EXPECT_TRUE(same_bits(out.view.to(Device::cpu), want));
        // In place on an aligned tensor (the backward applies the same call to dy).
        Tensor inplace = to_device(x, dtype);
        ops::dropout(inplace, inplace, p, seed, stream);
        EXPECT_TRUE(same_bits(inplace.to(Device::cpu), want));
        if (testing::Test::HasFailure()) return;
      }
    }
  }
}

TEST(CudaDropout, KeepsAboutOneMinusP) {
  const int64_t n = 1 << 20;
  const Tensor ones = to_device(test::full({n}, DType::f32, 1.0), DType::f32);
  Tensor out = Tensor::empty({n}, DType::f32, Device::cuda);
  ops::dropout(out, ones, 0.25, 42, 1);
  const Tensor h = out.to(Device::cpu);
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) kept += h.data<float>()[i] != 0.0f;
  EXPECT_NEAR(static_cast<double>(kept) / n, 0.75, 0.005);
}

TEST(CudaColumns, SliceAndWriteMatchTheCpuExactly) {
  for (DType dtype : kDtypes) {
    for (int64_t pad : {64, 37}) {
      for (int64_t n : {1, 7, 33, 257}) {
        for (int64_t w : {1, 5, 64}) {
          const int64_t wide = 3 * w + 3;
          for (int64_t start : {int64_t{0}, w + 1, wide - w}) {
            SCOPED_TRACE(str(dtype_name(dtype), " n=", n, " w=", w, " W=", wide, " start=", start,
                             " pad=", pad));
            const Tensor x = rounded({n, wide}, dtype, static_cast<uint64_t>(n * 13 + w));
            const Tensor part = rounded({n, w}, dtype, static_cast<uint64_t>(n * 17 + w));
            // slice_columns
            Tensor want = Tensor::empty({n, w}, DType::f64);
            ops::slice_columns(want, x, start);
            const Placed xd = place({n, wide}, dtype, pad, x);
            Placed out = place({n, w}, dtype, pad);
            ops::slice_columns(out.view, xd.view, start);
            EXPECT_EQ(test::max_abs_diff(fetch(out, {n, w}, "slice"), want), 0.0);
            // write_columns
            Tensor want_w = x.clone();
            ops::write_columns(want_w, start, part);
            Placed outw = place({n, wide}, dtype, pad, x);
            const Placed pd = place({n, w}, dtype, pad, part);
            ops::write_columns(outw.view, start, pd.view);
            EXPECT_EQ(test::max_abs_diff(fetch(outw, {n, wide}, "write"), want_w), 0.0);
          }
        }
        if (testing::Test::HasFailure()) return;
      }
    }
  }
}

TEST(CudaColumns, RejectsOverlapAndBadRanges) {
  Tensor buf = Tensor::zeros({64}, DType::bf16, Device::cuda);
  Tensor x = buf.narrow(0, 32).view({4, 8}), out = buf.narrow(16, 16).view({4, 4});
  EXPECT_THROW(ops::slice_columns(out, x, 2), Error);
  Tensor ok = Tensor::zeros({4, 4}, DType::bf16, Device::cuda);
  EXPECT_THROW(ops::slice_columns(ok, x, 5), Error);
  EXPECT_NO_THROW(ops::slice_columns(ok, x, 4));
}

}  // namespace
}  // namespace tune
