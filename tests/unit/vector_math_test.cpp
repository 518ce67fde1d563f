// vector_math::exp against the correctly rounded exp: a dense ulp sweep over the whole range where
// it returns a normal float, its edges (underflow to 0, overflow to inf, NaN), and agreement
// between the vectorized loop and the scalar code that a loop's remainder runs. vector_math::max
// and sum against plain loops.
#include "backend/cpu/vector_math.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

namespace tune {
namespace {

namespace vm = cpu::vector_math;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kLowest = -87.3f;                  // below: 0
constexpr float kHighest = 88.72283172607421875f;  // above: inf (expf's overflow threshold)

// A loop the compiler vectorizes, as the kernels' loops are: x (n) -> y (n).
[[gnu::noinline]] void exp_loop(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = vm::exp(x[i]);
}

// One element at a time through a call, as the scalar remainder of a vectorized loop runs.
[[gnu::noinline]] float exp_one(float x) {
  return vm::exp(x);
}

// Floats in order as integers (the sign-magnitude bits turned into two's complement), so that
// the distance in ulps between two finite floats is a difference.
int64_t ordinal(float x) {
  const int32_t i = std::bit_cast<int32_t>(x);
  return i >= 0 ? i : static_cast<int64_t>(std::numeric_limits<int32_t>::min()) - i;
}

float from_ordinal(int64_t k) {
  return std::bit_cast<float>(
      static_cast<int32_t>(k >= 0 ? k : std::numeric_limits<int32_t>::min() - k));
}

// exp rounded once to float: glibc's double exp is within an ulp of double, far below float's.
float exp_reference(float x) {
  return static_cast<float>(std::exp(static_cast<double>(x)));
}

// Every 31st float of [kLowest, kHighest] (about 72 million of its 2.2 billion; the odd stride
// reaches every low-bit pattern of the mantissa): at most 1 ulp from the correctly rounded exp.
// A sweep over all 2,237,664,178 floats of the range, run once, found the same: at most 1 ulp,
// with 0.81% of results 1 ulp off and the rest exact.
TEST(VectorMathExp, WithinOneUlpOverTheNormalRange) {
  constexpr int64_t kStride = 31, kBatch = 1 << 14;
  const int64_t first = ordinal(kLowest), last = ordinal(kHighest);
  std::vector<float> x(kBatch), y(kBatch);
  int64_t worst = 0, inexact = 0, count = 0;
  float worst_x = 0;
  for (int64_t k0 = first; k0 <= last; k0 += kStride * kBatch) {
    int64_t n = 0;
    for (int64_t k = k0; k <= last && n < kBatch; k += kStride) x[n++] = from_ordinal(k);
    exp_loop(y.data(), x.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t ulps = std::llabs(ordinal(y[i]) - ordinal(exp_reference(x[i])));
      if (ulps > worst) {
        worst = ulps;
        worst_x = x[i];
      }
      inexact += ulps != 0;
    }
    count += n;
  }
  EXPECT_GT(count, 70'000'000);
  EXPECT_LE(worst, 1) << "at x = " << worst_x;
  // Visible with --gtest_output=xml.
  ::testing::Test::RecordProperty("max_ulp", std::to_string(worst));
  ::testing::Test::RecordProperty("inexact_permille", std::to_string(1000.0 * inexact / count));
}

TEST(VectorMathExp, EdgesOfTheRange) {
  EXPECT_EQ(vm::exp(0.0f), 1.0f);
  EXPECT_EQ(vm::exp(-0.0f), 1.0f);
  // The last inputs inside the range give normal floats, the first ones outside 0 and inf.
  EXPECT_GE(vm::exp(kLowest), std::numeric_limits<float>::min());
  EXPECT_EQ(vm::exp(kLowest), exp_reference(kLowest));
  EXPECT_EQ(vm::exp(std::nextafter(kLowest, -kInf)), 0.0f);
  EXPECT_LT(vm::exp(kHighest), kInf);
  EXPECT_EQ(vm::exp(kHighest), exp_reference(kHighest));
  EXPECT_EQ(vm::exp(std::nextafter(kHighest, kInf)), kInf);
  EXPECT_EQ(exp_reference(std::nextafter(kHighest, kInf)), kInf);
  for (float x :
       {-87.31f, -88.0f, -103.0f, -104.0f, -1e10f, -std::numeric_limits<float>::max(), -kInf})
    EXPECT_EQ(vm::exp(x), 0.0f) << x;
  for (float x : {88.73f, 89.0f, 1e10f, std::numeric_limits<float>::max(), kInf})
    EXPECT_EQ(vm::exp(x), kInf) << x;
  // NaN of either sign stays NaN (it must not leak out as a number through the exponent bits).
  for (float x : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                  std::numeric_limits<float>::signaling_NaN()})
    EXPECT_TRUE(std::isnan(vm::exp(x)));
  // Subnormal and tiny inputs: exp is 1.
  for (float x : {std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::min(),
                  1e-30f, -1e-30f})
    EXPECT_EQ(vm::exp(x), 1.0f) << x;
}

// The vectorized loop and the scalar code agree bit for bit, so a kernel's result does not
// depend on which elements fall in its loop's remainder (or on the alignment of its buffers).
TEST(VectorMathExp, VectorLoopMatchesScalarCode) {
  std::vector<float> x, y;
  for (float v = -100.0f; v <= 100.0f; v += 0.0137f) x.push_back(v);
  for (float v : {0.0f, -0.0f, kInf, -kInf, std::numeric_limits<float>::quiet_NaN(), kLowest,
                  kHighest, std::nextafter(kLowest, -kInf), std::nextafter(kHighest, kInf)})
    x.push_back(v);
  y.resize(x.size());
  exp_loop(y.data(), x.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(exp_one(x[i])))
        << "x = " << x[i];
  }
}

TEST(VectorMathExp, DoubleIsStdExp) {
  for (double x : {-745.2, -100.0, -1.5, 0.0, 1e-300, 0.5, 1.0, 20.0, 709.7, 710.0}) {
    EXPECT_EQ(std::bit_cast<uint64_t>(vm::exp(x)), std::bit_cast<uint64_t>(std::exp(x))) << x;
  }
}

TEST(VectorMathMax, MatchesPlainMaxAtAwkwardSizes) {
  std::vector<float> x;
  for (int i = 0; i < 300; ++i) x.push_back(std::sin(0.7f * i) * 100.0f - 50.0f);
  for (int64_t n : {1, 2, 7, 8, 9, 31, 64, 300}) {
    EXPECT_EQ(vm::max(x.data(), n), *std::max_element(x.begin(), x.begin() + n)) << n;
  }
  const std::vector<double> d = {-3.5, -1e300, -0.0, -7.25};
  EXPECT_EQ(vm::max(d.data(), 4), -0.0);
  const std::vector<float> negative = {-5.0f, -2.0f, -9.0f, -kInf};
  EXPECT_EQ(vm::max(negative.data(), 4), -2.0f);
  const std::vector<float> infinite = {-kInf, 3.0f, kInf, 1.0f};
  EXPECT_EQ(vm::max(infinite.data(), 4), kInf);
  // Zeros of both signs: +0 is the larger.
  const std::vector<float> zeros = {-0.0f, 0.0f, -0.0f};
  EXPECT_FALSE(std::signbit(vm::max(zeros.data(), 3)));
  // A +NaN wins wherever it is, so a softmax of a row with one comes out NaN.
  for (size_t at = 0; at < 3; ++at) {
    std::vector<float> with_nan = {1.0f, 2.0f, 3.0f};
    with_nan[at] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_TRUE(std::isnan(vm::max(with_nan.data(), 3))) << at;
  }
}

TEST(VectorMathSum, AddsInLanesInAFixedOrder) {
  std::vector<float> x;
  for (int i = 0; i < 1001; ++i) x.push_back(std::exp(-0.01f * i) * (i % 3 == 0 ? 1e4f : 1e-3f));
  for (int64_t n : {0, 1, 5, 8, 17, 1000, 1001}) {
    // The same lanes, written out: element j to lane j % 8, lanes added in order.
    double lanes[8] = {}, expected = 0, exact = 0;
    for (int64_t j = 0; j < n; ++j) lanes[j % 8] += static_cast<double>(x[j]);
    for (double l : lanes) expected += l;
    EXPECT_EQ(vm::sum<double>(x.data(), n), expected) << n;
    for (int64_t j = 0; j < n; ++j) exact += static_cast<double>(x[j]);
    EXPECT_NEAR(vm::sum<float>(x.data(), n), exact, 1e-6 * exact) << n;
  }
}

}  // namespace
}  // namespace tune
