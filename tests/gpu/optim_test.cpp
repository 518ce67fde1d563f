// AdamW and the sum of squares on the GPU against the CPU ops: AdamW to the bit over several
// steps (both follow torch's roundings), the sum of squares within 1e-12 (both in f64, different
// order), at awkward sizes; the sum is the same on every run.
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

}  // namespace
}  // namespace tune
