// AdamW (f32 and mixed precision), SGD and the sum of squares on the GPU against the CPU ops:
// the updates to the bit over several steps (both follow torch's roundings), the sum of squares
// within 1e-12 (both in f64, different order), at awkward sizes; the sum is the same on every run.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "test_util.h"
#include "tune/core/error.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(CudaOptim, AdamWEqualsTheCpuToTheBit) {
  for (int64_t n : {1, 7, 33, 257, 4097, 1000003}) {
    SCOPED_TRACE(n);
    Tensor p = test::randn({n}, DType::f32, 1 + n), m = Tensor::zeros({n}, DType::f32),
           v = Tensor::zeros({n}, DType::f32);
    Tensor dp = p.to(Device::cuda), dm = m.to(Device::cuda), dv = v.to(Device::cuda);
    for (int64_t step = 1; step <= 4; ++step) {
      const Tensor g = test::randn({n}, DType::f32, 100 * step + n, 0.1);
      const Tensor dg = g.to(Device::cuda);
      // beta1 = 0.9 (lerp weight 0.1 < 0.5) and beta1 = 0.3 (weight 0.7, torch's other form).
      const double beta1 = step % 2 ? 0.9 : 0.3;
      ops::adamw_update(p, g, m, v, 1e-3, beta1, 0.999, 1e-8, 0.01, step);
      ops::adamw_update(dp, dg, dm, dv, 1e-3, beta1, 0.999, 1e-8, 0.01, step);
    }
    EXPECT_TRUE(same_bits(dp.to(Device::cpu), p));
    EXPECT_TRUE(same_bits(dm.to(Device::cpu), m));
    EXPECT_TRUE(same_bits(dv.to(Device::cpu), v));
  }
}

TEST(CudaOptim, AdamWRefusesBf16) {
  Tensor p = Tensor::zeros({8}, DType::bf16, Device::cuda);
  Tensor g = p.to(Device::cpu).clone().to(Device::cuda);
  Tensor m = Tensor::zeros({8}, DType::bf16, Device::cuda),
         v = Tensor::zeros({8}, DType::bf16, Device::cuda);
  EXPECT_THROW(ops::adamw_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1), Error);
}

TEST(CudaOptim, SumOfSquaresMatchesTheCpuAndRepeats) {
  for (int64_t n : {1, 7, 33, 257, 4097, 1000003, 20000001}) {
    SCOPED_TRACE(n);
    const Tensor x = test::randn({n}, DType::f32, 7 + n);
    const double want = ops::sum_squares(x);
    const Tensor dx = x.to(Device::cuda);
    const double got = ops::sum_squares(dx);
    EXPECT_LE(std::abs(got - want), 1e-12 * want);
    EXPECT_EQ(ops::sum_squares(dx), got);  // deterministic
  }
}

TEST(CudaOptim, SumOfSquaresOfBf16AndF16MatchesTheCpu) {
  for (DType dtype : {DType::bf16, DType::f16}) {
    for (int64_t n : {1, 7, 33, 257, 4097, 1000003}) {
      SCOPED_TRACE(str(dtype_name(dtype), " n=", n));
      const Tensor x = test::randn({n}, DType::f32, 70 + n).to(dtype);
      const double want = ops::sum_squares(x.to(DType::f32));  // exact values, f64 sums
      const Tensor dx = x.to(Device::cuda);
      const double got = ops::sum_squares(dx);
      EXPECT_LE(std::abs(got - want), 1e-12 * want);
      EXPECT_EQ(ops::sum_squares(dx), got);
      // A view at an odd offset.
      if (n > 1) {
        const double tail = ops::sum_squares(dx.narrow(1, n - 1));
        EXPECT_LE(std::abs(tail - ops::sum_squares(x.to(DType::f32).narrow(1, n - 1))),
                  1e-12 * want);
      }
    }
  }
}

// f32 compute copy and grad_scale 1: the mixed update is adamw_update, bit for bit, on both
// devices, and param is the master.
TEST(CudaOptim, AdamWMixedF32EqualsAdamW) {
  for (int64_t n : {1, 7, 33, 4097, 1000003}) {
    SCOPED_TRACE(n);
    const Tensor p0 = test::randn({n}, DType::f32, 3 + n);
    Tensor p = p0.clone(), m = Tensor::zeros({n}, DType::f32), v = Tensor::zeros({n}, DType::f32);
    Tensor master = p0.to(Device::cuda), param = p0.to(Device::cuda);
    Tensor dm = m.to(Device::cuda), dv = v.to(Device::cuda);
    for (int64_t step = 1; step <= 4; ++step) {
      const Tensor g = test::randn({n}, DType::f32, 200 * step + n, 0.1);
      const double beta1 = step % 2 ? 0.9 : 0.3;
      ops::adamw_update(p, g, m, v, 1e-3, beta1, 0.999, 1e-8, 0.01, step);
      ops::adamw_update_mixed(master, param, g.to(Device::cuda), dm, dv, 1e-3, beta1, 0.999, 1e-8,
                              0.01, step, 1.0);
    }
    EXPECT_TRUE(same_bits(master.to(Device::cpu), p));
    EXPECT_TRUE(same_bits(param.to(Device::cpu), p));
    EXPECT_TRUE(same_bits(dm.to(Device::cpu), m));
    EXPECT_TRUE(same_bits(dv.to(Device::cpu), v));
  }
}

// bf16 and f16 compute copies with a grad scale: the GPU equals the CPU op to the bit.
TEST(CudaOptim, AdamWMixedEqualsTheCpuToTheBit) {
  for (DType dtype : {DType::bf16, DType::f16}) {
    for (int64_t n : {1, 7, 33, 257, 4097, 1000003}) {
      SCOPED_TRACE(str(dtype_name(dtype), " n=", n));
      const Tensor p0 = test::randn({n}, DType::f32, 5 + n);
      Tensor master = p0.clone(), param = p0.to(dtype);
      Tensor m = Tensor::zeros({n}, DType::f32), v = Tensor::zeros({n}, DType::f32);
      Tensor dmaster = master.to(Device::cuda), dparam = param.to(Device::cuda);
      Tensor dm = m.to(Device::cuda), dv = v.to(Device::cuda);
      for (int64_t step = 1; step <= 3; ++step) {
        // A loss-scaled gradient (f16's 1024) unscaled and clipped by grad_scale.
        const Tensor g = test::randn({n}, DType::f32, 300 * step + n, 100.0).to(dtype);
        const double scale = 0.37 / 1024;
        ops::adamw_update_mixed(master, param, g, m, v, 1e-3, 0.9, 0.95, 1e-8, 0.1, step, scale);
        ops::adamw_update_mixed(dmaster, dparam, g.to(Device::cuda), dm, dv, 1e-3, 0.9, 0.95, 1e-8,
                                0.1, step, scale);
      }
      EXPECT_TRUE(same_bits(dmaster.to(Device::cpu), master));
      EXPECT_TRUE(same_bits(dparam.to(Device::cpu), param));
      EXPECT_TRUE(same_bits(dm.to(Device::cpu), m));
      EXPECT_TRUE(same_bits(dv.to(Device::cpu), v));
    }
  }
}

TEST(CudaOptim, SgdEqualsTheCpuToTheBit) {
  for (double momentum : {0.0, 0.9}) {
    for (double wd : {0.0, 0.01}) {
      for (int64_t n : {1, 7, 33, 4097, 1000003}) {
        SCOPED_TRACE(str("momentum=", momentum, " wd=", wd, " n=", n));
        Tensor p = test::randn({n}, DType::f32, 9 + n), buf = Tensor::zeros({n}, DType::f32);
        Tensor dp = p.to(Device::cuda), dbuf = buf.to(Device::cuda);
        Tensor none, dnone;
        for (int64_t step = 1; step <= 3; ++step) {
          const Tensor g = test::randn({n}, DType::f32, 400 * step + n, 0.1);
          ops::sgd_update(p, g, momentum != 0.0 ? buf : none, 0.05, momentum, wd, step);
          ops::sgd_update(dp, g.to(Device::cuda), momentum != 0.0 ? dbuf : dnone, 0.05, momentum,
                          wd, step);
        }
        EXPECT_TRUE(same_bits(dp.to(Device::cpu), p));
        EXPECT_TRUE(same_bits(dbuf.to(Device::cpu), buf));
      }
    }
  }
}

}  // namespace
}  // namespace tune
