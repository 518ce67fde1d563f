// ops::argmax_rows on the CPU: the first maximum (torch.argmax), NaNs skipped, shapes checked.
#include <gtest/gtest.h>

#include <cmath>

#include "tune/core/error.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

TEST(OpsArgmax, FirstMaximumOfEachRowSkippingNans) {
  const float nan = std::nanf("");
  Tensor x = Tensor::from_f32({4, 5}, {1,   3,   3,   -1,  2,   // tie: the first
                                       -5,  -4,  -9,  -4,  -6,  // negatives
                                       nan, 1,   nan, 2,   0,   // NaN skipped
                                       nan, nan, nan, nan, nan});
  Tensor out = Tensor::empty({4}, DType::i64);
  ops::argmax_rows(out, x);
  EXPECT_EQ(out.data<int64_t>()[0], 1);
  EXPECT_EQ(out.data<int64_t>()[1], 1);
  EXPECT_EQ(out.data<int64_t>()[2], 3);
  EXPECT_EQ(out.data<int64_t>()[3], 0);
}

TEST(OpsArgmax, RejectsBadShapes) {
  Tensor x = Tensor::zeros({3, 4}, DType::f32);
  Tensor wrong_rows = Tensor::empty({2}, DType::i64), wrong_type = Tensor::empty({3}, DType::f32);
  EXPECT_THROW(ops::argmax_rows(wrong_rows, x), Error);
  EXPECT_THROW(ops::argmax_rows(wrong_type, x), Error);
}

}  // namespace
}  // namespace tune
