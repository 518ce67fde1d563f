// ops::cross_entropy and count_targets on the GPU against the CPU op in f64 on the same rounded
// logits: the loss within 1e-5 (relative) in every dtype (the math is f32 on the device), dlogits
// within 1e-5 for f32 and 2e-2 for bf16/f16, at awkward row counts and real vocabularies (GPT-2's
// 50257, Llama 3's 128256); outputs placed among sentinels, aligned (pad 64: 128-bit loads) and
// not (pad 37: scalar loads); in place, loss-only, i32 and i64 targets, ignored rows; the loss
// identical across runs; a bad target throws naming its row and value.
#include <gtest/gtest.h>

#include <cstring>

#include <cmath>

#include "gpu/gpu_test_util.h"
#include "tune/core/error.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using test::fetch;
using test::place;
using test::Placed;
using test::rounded;

// Targets [n] in [0, v), every fifth row (from the fourth) ignored with -100.
Tensor make_targets(int64_t n, int64_t v, uint64_t seed, DType index_type) {
  Tensor t = test::randint({n}, v, seed);
  for (int64_t r = 3; r < n; r += 5) t.data<int64_t>()[r] = -100;
  if (index_type == DType::i64) return t;
  Tensor t32 = Tensor::empty({n}, DType::i32);
  for (int64_t r = 0; r < n; ++r)
    t32.data<int32_t>()[r] = static_cast<int32_t>(t.data<int64_t>()[r]);
  return t32;
}

// Logits with a spread like a trained model's (scale 3) so the softmax is not flat.
Tensor make_logits(int64_t n, int64_t v, DType dtype, uint64_t seed) {
  return test::randn({n, v}, DType::f32, seed, 3.0).to(dtype).to(DType::f64);
}

void check(DType dtype, DType index_type, int64_t n, int64_t v, int64_t pad) {
  SCOPED_TRACE(
      str(dtype_name(dtype), " ", dtype_name(index_type), " n=", n, " v=", v, " pad=", pad));
  const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
  const uint64_t seed = static_cast<uint64_t>(n * 7919 + v + pad);
  const Tensor logits = make_logits(n, v, dtype, seed);
  const Tensor targets = make_targets(n, v, seed + 1, index_type);
  const double scale = 1.0 / std::max<int64_t>(1, ops::count_targets(targets));
  Tensor d_ref = Tensor::empty({n, v}, DType::f64);
  const double loss_ref = ops::cross_entropy(d_ref, logits, targets, scale);

  const Tensor td = targets.to(Device::cuda);
  EXPECT_EQ(ops::count_targets(td), ops::count_targets(targets));
  Placed x = place({n, v}, dtype, pad, logits), d = place({n, v}, dtype, pad);
  const double loss = ops::cross_entropy(d.view, x.view, td, scale);
  EXPECT_LE(std::abs(loss - loss_ref), 1e-5 * std::max(1.0, std::abs(loss_ref)));
  EXPECT_LE(test::rel_error(fetch(d, {n, v}, "dlogits"), d_ref), tol);
  // The same bits on every run; and the loss alone (dlogits undefined) is the same number.
  EXPECT_EQ(ops::cross_entropy(d.view, x.view, td, scale), loss);
  Tensor none;
  EXPECT_EQ(ops::cross_entropy(none, x.view, td, scale), loss);
  // In place: dlogits is logits.
  const double loss_inplace = ops::cross_entropy(x.view, x.view, td, scale);
  EXPECT_EQ(loss_inplace, loss);
  EXPECT_LE(test::rel_error(fetch(x, {n, v}, "logits in place"), d_ref), tol);
}

TEST(CudaCrossEntropy, MatchesCpuAtAwkwardSizesAndVocabularies) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (int64_t pad : {64, 37}) {
      check(dtype, DType::i64, 1, 50257, pad);
      check(dtype, DType::i32, 7, 128256, pad);
      check(dtype, DType::i64, 33, 50257, pad);
      check(dtype, DType::i64, 257, 1000, pad);
      check(dtype, DType::i32, 4097, 8, pad);
      check(dtype, DType::i64, 33, 1, pad);
      if (testing::Test::HasFailure()) return;
    }
  }
  check(DType::bf16, DType::i64, 257, 128256, 64);
}

TEST(CudaCrossEntropy, AllRowsIgnoredGiveZeroLossAndGradient) {
  const int64_t n = 5, v = 33;
  Tensor t = Tensor::empty({n}, DType::i64);
  for (int64_t r = 0; r < n; ++r) t.data<int64_t>()[r] = -100;
  Placed x = place({n, v}, DType::bf16, 64, make_logits(n, v, DType::bf16, 1));
  Placed d = place({n, v}, DType::bf16, 64);
  EXPECT_EQ(ops::cross_entropy(d.view, x.view, t.to(Device::cuda), 1.0), 0.0);
  EXPECT_EQ(test::max_abs_diff(fetch(d, {n, v}), Tensor::zeros({n, v}, DType::f64)), 0.0);
  EXPECT_EQ(ops::count_targets(t.to(Device::cuda)), 0);
}

TEST(CudaCrossEntropy, BadTargetThrowsNamingRowAndValue) {
  const int64_t n = 9, v = 50257;
  Tensor t = make_targets(n, v, 5, DType::i64);
  t.data<int64_t>()[6] = 50257;
  t.data<int64_t>()[8] = -7;
  Tensor x = Tensor::zeros({n, v}, DType::bf16, Device::cuda);
  Tensor d = Tensor::zeros({n, v}, DType::bf16, Device::cuda);
  try {
    ops::cross_entropy(d, x, t.to(Device::cuda), 1.0);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_TRUE(test::contains(e.what(), "target 50257 at row 6"));
    EXPECT_TRUE(test::contains(e.what(), "use -100 to ignore a row"));
  }
}

TEST(CudaCrossEntropy, RejectsPartialOverlapAndMixedDtypes) {
  Tensor buf = Tensor::zeros({2 * 16 + 16}, DType::f32, Device::cuda);
  Tensor x = buf.narrow(0, 32).view({2, 16}), d = buf.narrow(16, 32).view({2, 16});
  const Tensor t = Tensor::zeros({2}, DType::i64).to(Device::cuda);
  EXPECT_THROW(ops::cross_entropy(d, x, t, 1.0), Error);
  // Only f32 logits may hand back a gradient of another dtype.
  Tensor x16 = Tensor::zeros({2, 16}, DType::bf16, Device::cuda);
  Tensor d32 = Tensor::zeros({2, 16}, DType::f32, Device::cuda);
  EXPECT_THROW(ops::cross_entropy(d32, x16, t, 1.0), Error);
}

// The output head of bf16 training: f32 logits, a bf16 gradient. The loss is the f32 loss and the
// gradient is the f32 gradient rounded once (the kernel computes it in f32 either way), at a
// Llama 3 vocabulary (the cluster kernel) and GPT-2's (the row kernel, odd width).
TEST(CudaCrossEntropy, F32LogitsWithALowPrecisionGradient) {
  for (int64_t v : {int64_t{128256}, int64_t{50257}}) {
    for (DType g : {DType::bf16, DType::f16}) {
      SCOPED_TRACE(str("V ", v, " ", dtype_name(g)));
      const int64_t n = 7;
      const Tensor x = test::to_device(test::randn({n, v}, DType::f32, 11, 3.0), DType::f32);
      std::vector<int64_t> tv(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) tv[static_cast<size_t>(i)] = i == 3 ? -100 : (i * 7919) % v;
      const Tensor t = Tensor::from_i64({n}, tv).to(Device::cuda);
      Tensor d32 = Tensor::empty({n, v}, DType::f32, Device::cuda);
      Tensor dlow = Tensor::empty({n, v}, g, Device::cuda);
      const double want = ops::cross_entropy(d32, x, t, 0.25);
      const double got = ops::cross_entropy(dlow, x, t, 0.25);
      EXPECT_EQ(got, want);
      const std::vector<float> a = d32.to(Device::cpu).to(g).to_f32_vector();
      const std::vector<float> b = dlow.to(Device::cpu).to_f32_vector();
      ASSERT_EQ(a.size(), b.size());
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
    }
  }
}

}  // namespace
}  // namespace tune
