#include <gtest/gtest.h>

#include <cmath>

#include "tune/core/tensor.h"

namespace tune {

TEST(DType, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even mantissa (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3 * 2^-8 is halfway too, and rounds up to the even neighbour.
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(DType, F16RoundTripsAndRounds) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f})
    EXPECT_EQ(f16_to_f32(f32_to_f16(f)), f) << f;
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);  // overflow to inf
}

TEST(Tensor, StorageIs64ByteAligned) {
  for (int64_t n : {1, 3, 17, 1000}) {
    Tensor t = Tensor::empty({n}, DType::bf16);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  }
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::from_f32({2, 3}, {0, 1, 2, 3, 4, 5});
  Tensor row = t[1];
  EXPECT_EQ(row.shape(), (Shape{3}));
  EXPECT_EQ(row.item(0), 3.0);
  row.data<float>()[0] = 9;
  EXPECT_EQ(t.item(3), 9.0);
  EXPECT_EQ(t.view({3, -1}).shape(), (Shape{3, 2}));
}

TEST(Tensor, ConvertsBetweenDtypes) {
  Tensor t = Tensor::from_f32({3}, {1.5f, -2.0f, 3.25f});
  Tensor b = t.to(DType::bf16).to(DType::f64);
  EXPECT_EQ(b.item(0), 1.5);
  EXPECT_EQ(b.item(2), 3.25);
}

}  // namespace tune
