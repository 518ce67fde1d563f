// Elementwise math and row reductions that the compiler can vectorize in the CPU kernels' plain
// loops.
//
// glibc's expf is a call per element, and its vector twin (libmvec) is only used under
// -ffast-math, which we do not want for the whole build (it lets the compiler reassociate sums,
// so results would change with the vector width and the code around them).
// vector_math::exp(float) is built from arithmetic, bit casts and integer selects only, so a loop
// calling it vectorizes at any -march (SSE2 in the baseline x86-64 build, AVX2/AVX-512 with
// TUNE_NATIVE), and its vector and scalar code give the same bits.
//
// Accuracy: at most 1 ulp from the correctly rounded exp over [-87.3, 88.72] (every float of it,
// swept once; tests/unit/vector_math_test.cpp checks every 31st): 0.8% of results are 1 ulp off,
// the rest exact, the same as glibc's expf to within an ulp. Edges: x < -87.3 gives 0 (results
// near and below 2^-126 ~ FLT_MIN are flushed rather than made subnormal: no kernel needs them,
// a softmax term that small vanishes next to the row's 1), x > 88.7228317 (where expf overflows)
// gives +inf, NaN gives NaN.
//
// The double overload is std::exp: double exists for the finite-difference gradient checks,
// where accuracy matters more than speed.
//
// max and sum reduce a row in an order fixed by the code, not by the vectorizer. Without
// -ffast-math GCC vectorizes neither a float max (its answer for NaN and for -0 vs +0 depends
// on the order) nor a running float sum (not associative), so max works on integers and sum on
// interleaved lanes.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace tune::cpu::vector_math {

// exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2 / 2 (Cody-Waite).
[[gnu::always_inline]] inline float exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  // ln2 in two parts: kLn2Hi has 15 significant bits, so n * kLn2Hi is exact for |n| < 256 and
  // x - n * kLn2Hi loses nothing; kLn2Lo carries the rest of ln2.
  constexpr float kLn2Hi = 0.693145751953125f;
  constexpr float kLn2Lo = 1.42860682030941723212e-6f;
  // Adding 1.5 * 2^23 rounds to an integer (in round-to-nearest, without a rounding instruction,
  // which baseline x86-64 lacks) and leaves n in the low mantissa bits.
  constexpr float kRound = 12582912.0f;
  // Below -126 ln2 ~ -87.3365 the result is subnormal, which the exponent arithmetic below
  // cannot form (kMin leaves a margin); above kMax, expf overflows.
  constexpr float kMin = -87.3f;
  constexpr float kMax = 88.72283172607421875f;
  constexpr uint32_t kInfBits = 0x7f800000u, kQuietBit = 0x00400000u;

  const float t = x * kLog2e + kRound;
  const float n = t - kRound;
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  // exp(r) on [-ln2/2, ln2/2] as 1 + r + r^2 * p(r), with Cephes' expf coefficients.
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = (p * (r * r) + r) + 1.0f;
  // Multiply by 2^n by adding n to the exponent field. The bits of t are those of kRound plus n,
  // and kRound's bits vanish when shifted left by 23, so t's bits << 23 are n << 23 (mod 2^32).
  // Unsigned arithmetic: wraps for the out-of-range x that the selects below replace.
  const uint32_t y = std::bit_cast<uint32_t>(er) + (std::bit_cast<uint32_t>(t) << 23);
  // The range checks select with masks, not ?:, which GCC turns into a branch around the
  // computation of y and then will not vectorize, as float operations in a branch may trap
  // (-ftrapping-math, the default). They compare bits as integers: floats of one sign order as
  // their bits do, so x < kMin (x negative, or -NaN) is bits(x) > bits(kMin) unsigned, and
  // x > kMax (or +NaN) is bits(x) > bits(kMax) signed.
  const uint32_t ux = std::bit_cast<uint32_t>(x);
  const uint32_t underflow = 0u - static_cast<uint32_t>(ux > std::bit_cast<uint32_t>(kMin));
  const uint32_t overflow =
      0u - static_cast<uint32_t>(static_cast<int32_t>(ux) > std::bit_cast<int32_t>(kMax));
  const uint32_t nan = 0u - static_cast<uint32_t>((ux & 0x7fffffffu) > kInfBits);
  uint32_t result = y & ~underflow;
  result = (result & ~overflow) | (kInfBits & overflow);
  // NaN went through the exponent addition above, so y is garbage: return x itself, quiet.
  result = (result & ~nan) | ((ux | kQuietBit) & nan);
  return std::bit_cast<float>(result);
}

inline double exp(double x) {
  return std::exp(x);
}

namespace detail {
template <typename T>
using OrderedInt = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

// Flipping the magnitude bits of negative values makes floats (all but NaN) order as these
// integers do, and flipping again restores the float.
template <typename I>
I flip_negative(I i) {
  return i ^ ((i >> (8 * sizeof(I) - 1)) & std::numeric_limits<I>::max());
}
}  // namespace detail

// Largest of x (n >= 1), as an integer max, which gives the same answer in any order. A +NaN
// is larger than everything and comes back; a -NaN is smaller than everything.
template <typename T>
T max(const T* x, int64_t n) {
  using I = detail::OrderedInt<T>;
  I m = detail::flip_negative(std::bit_cast<I>(x[0]));
  for (int64_t j = 1; j < n; ++j) m = std::max(m, detail::flip_negative(std::bit_cast<I>(x[j])));
  return std::bit_cast<T>(detail::flip_negative(m));
}

// Sum of x (n) in Acc: element j goes to partial sum j % kSumLanes, and the lanes are added in
// order at the end. The compiler may keep the lanes in vector registers; the result is the same
// either way.
constexpr int64_t kSumLanes = 8;
template <typename Acc, typename T>
Acc sum(const T* x, int64_t n) {
  Acc lanes[kSumLanes] = {};
  const int64_t whole = n - n % kSumLanes;
  for (int64_t j = 0; j < whole; j += kSumLanes)
    for (int64_t l = 0; l < kSumLanes; ++l) lanes[l] += static_cast<Acc>(x[j + l]);
  for (int64_t j = whole; j < n; ++j) lanes[j - whole] += static_cast<Acc>(x[j]);
  Acc total = 0;
  for (Acc s : lanes) total += s;
  return total;
}

}  // namespace tune::cpu::vector_math
