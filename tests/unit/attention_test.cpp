// Attention: the GEMM-based kernel against a naive per-(b, h, i, j) loop (f32 and f64, GQA, MQA,
// sliding windows, sequences that cross the kernel's 64-row blocks), backward against central
// finite differences in f64, and bit-identical repeats.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "test_util.h"
#include "tune/core/parallel.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using test::contains;
using test::dot;
using test::error_of;
using test::fd_gradient;
using test::randn;
using test::rel_error;

struct Case {
  int64_t batch, seq, q_heads, kv_heads, dim, window;
};

Shape q_shape(const Case& c) {
  return {c.batch, c.seq, c.q_heads, c.dim};
}
Shape kv_shape(const Case& c) {
  return {c.batch, c.seq, c.kv_heads, c.dim};
}
Shape probs_shape(const Case& c) {
  return {c.batch, c.q_heads, c.seq, c.seq};
}

// out (B, T, Hq, D) and probs (B, Hq, T, T) in f64, one score at a time.
void naive_attention(const Case& c, const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                     Tensor* out, Tensor* probs) {
  *out = Tensor::zeros(q_shape(c), DType::f64);
  *probs = Tensor::zeros(probs_shape(c), DType::f64);
  const int64_t group = c.q_heads / c.kv_heads, d = c.dim;
  auto qi = [&](int64_t b, int64_t t, int64_t h) { return ((b * c.seq + t) * c.q_heads + h) * d; };
  auto ki = [&](int64_t b, int64_t t, int64_t g) { return ((b * c.seq + t) * c.kv_heads + g) * d; };
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t h = 0; h < c.q_heads; ++h) {
      const int64_t g = h / group;
      for (int64_t i = 0; i < c.seq; ++i) {
        std::vector<double> s(static_cast<size_t>(c.seq), -INFINITY);
        double m = -INFINITY;
        for (int64_t j = 0; j <= i; ++j) {
          if (c.window > 0 && i - j >= c.window) continue;
          double acc = 0;
          for (int64_t e = 0; e < d; ++e) acc += q.item(qi(b, i, h) + e) * k.item(ki(b, j, g) + e);
          s[j] = scale * acc;
          m = std::max(m, s[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(s[j] - m);
        double* prow = probs->data<double>() + ((b * c.q_heads + h) * c.seq + i) * c.seq;
        for (int64_t j = 0; j <= i; ++j) {
          prow[j] = std::exp(s[j] - m) / sum;
          for (int64_t e = 0; e < d; ++e) {
            out->data<double>()[qi(b, i, h) + e] += prow[j] * v.item(ki(b, j, g) + e);
          }
        }
      }
    }
  }
}

TEST(AttentionForward, MatchesNaiveLoop) {
  const Case cases[] = {
      {1, 1, 1, 1, 1, 0},   {2, 7, 4, 2, 8, 0},    {2, 7, 4, 1, 8, 3},
      {1, 31, 3, 3, 5, 0},  {1, 33, 2, 1, 7, 5},   {1, 70, 4, 2, 8, 0},
      {2, 70, 2, 2, 4, 20}, {1, 130, 2, 1, 3, 64}, {3, 9, 6, 3, 16, 1},
  };
  uint64_t seed = 1;
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Case& c : cases) {
      const Tensor q = randn(q_shape(c), dt, seed++), k = randn(kv_shape(c), dt, seed++);
      const Tensor v = randn(kv_shape(c), dt, seed++);
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.dim));
      Tensor out = test::full(q_shape(c), dt, NAN), probs = test::full(probs_shape(c), dt, NAN);
      ops::attention_forward(out, probs, q, k, v, scale, c.window);
      Tensor eo, ep;
      naive_attention(c, q, k, v, scale, &eo, &ep);
      const double tol = dt == DType::f32 ? 1e-5 : 1e-13;
      EXPECT_LT(rel_error(out, eo), tol) << "T=" << c.seq << " window=" << c.window;
      EXPECT_LT(rel_error(probs, ep), tol) << "T=" << c.seq << " window=" << c.window;
      for (int64_t i = 0; i < probs.numel(); ++i) {
        if (ep.item(i) == 0.0) ASSERT_EQ(probs.item(i), 0.0) << "masked entries are zero";
      }
    }
  }
}

// L = <dout, attention(q, k, v)>; dq, dk, dv from attention_backward against finite differences.
void check_gradients(const Case& c, uint64_t seed) {
  Tensor q = randn(q_shape(c), DType::f64, seed), k = randn(kv_shape(c), DType::f64, seed + 1);
  Tensor v = randn(kv_shape(c), DType::f64, seed + 2);
  const Tensor dout = randn(q_shape(c), DType::f64, seed + 3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.dim));
  auto loss = [&] {
    Tensor out = Tensor::empty(q_shape(c), DType::f64);
    Tensor probs = Tensor::empty(probs_shape(c), DType::f64);
    ops::attention_forward(out, probs, q, k, v, scale, c.window);
    return dot(dout, out);
  };
  Tensor out = Tensor::empty(q_shape(c), DType::f64);
  Tensor probs = Tensor::empty(probs_shape(c), DType::f64);
  ops::attention_forward(out, probs, q, k, v, scale, c.window);
  // NaN-filled: dq, dk and dv must be written, not accumulated.
  Tensor dq = test::full(q_shape(c), DType::f64, NAN),
         dk = test::full(kv_shape(c), DType::f64, NAN);
  Tensor dv = test::full(kv_shape(c), DType::f64, NAN);
  ops::attention_backward(dq, dk, dv, dout, q, k, v, probs, scale);
  const std::string where =
      str("Hq=", c.q_heads, " Hkv=", c.kv_heads, " T=", c.seq, " window=", c.window);
  EXPECT_LT(rel_error(dq, fd_gradient(q, loss)), 1e-6) << where;
  EXPECT_LT(rel_error(dk, fd_gradient(k, loss)), 1e-6) << where;
  EXPECT_LT(rel_error(dv, fd_gradient(v, loss)), 1e-6) << where;
}

TEST(AttentionBackward, GqaAndMqaMatchFiniteDifferences) {
  uint64_t seed = 100;
  for (int64_t kv_heads : {2, 1}) {
    for (int64_t window : {0, 3}) {
      check_gradients({2, 7, 4, kv_heads, 8, window}, seed);
      seed += 10;
    }
  }
}

TEST(AttentionBackward, LongSequencesAcrossRowBlocksMatchFiniteDifferences) {
  check_gradients({1, 70, 2, 1, 4, 0}, 200);
  check_gradients({1, 70, 2, 1, 4, 20}, 210);
}

TEST(AttentionBackward, F32AgreesWithF64) {
  const Case c{2, 70, 4, 2, 8, 0};
  Tensor grads[2][3];
  for (int pass = 0; pass < 2; ++pass) {
    const DType dt = pass == 0 ? DType::f32 : DType::f64;
    const Tensor q = randn(q_shape(c), dt, 300), k = randn(kv_shape(c), dt, 301);
    const Tensor v = randn(kv_shape(c), dt, 302), dout = randn(q_shape(c), dt, 303);
    Tensor out = Tensor::empty(q_shape(c), dt), probs = Tensor::empty(probs_shape(c), dt);
    ops::attention_forward(out, probs, q, k, v, 0.35, c.window);
    grads[pass][0] = Tensor::empty(q_shape(c), dt);
    grads[pass][1] = Tensor::empty(kv_shape(c), dt);
    grads[pass][2] = Tensor::empty(kv_shape(c), dt);
    ops::attention_backward(grads[pass][0], grads[pass][1], grads[pass][2], dout, q, k, v, probs,
                            0.35);
  }
  for (int i = 0; i < 3; ++i) EXPECT_LT(rel_error(grads[0][i], grads[1][i]), 1e-5) << i;
}

// Row 64 (the first of the second row block) sees key 0 with a probability that underflows to
// 0 in f32, row 65 sees it with 1/66. The backward must still send row 65's gradient to key 0.
TEST(AttentionBackward, ExactWhenAProbabilityUnderflows) {
  const Case c{1, 70, 1, 1, 1, 0};
  Tensor grads[2][3];
  for (int pass = 0; pass < 2; ++pass) {
    const DType dt = pass == 0 ? DType::f32 : DType::f64;
    Tensor q = Tensor::zeros(q_shape(c), DType::f64), k = Tensor::zeros(kv_shape(c), DType::f64);
    for (int64_t j = 0; j < c.seq; ++j) k.data<double>()[j] = j == 0 ? -1.0 : 1.0;
    q.data<double>()[64] = 100.0;  // score -100 for key 0, +100 for the others
    q = q.to(dt);
    k = k.to(dt);
    const Tensor v = randn(kv_shape(c), dt, 400), dout = randn(q_shape(c), dt, 401);
    Tensor out = Tensor::empty(q_shape(c), dt), probs = Tensor::empty(probs_shape(c), dt);
    ops::attention_forward(out, probs, q, k, v, 1.0, 0);
    if (dt == DType::f32) ASSERT_EQ(probs.item(64 * c.seq), 0.0);
    ASSERT_GT(probs.item(65 * c.seq), 0.01);
    grads[pass][0] = Tensor::empty(q_shape(c), dt);
    grads[pass][1] = Tensor::empty(kv_shape(c), dt);
    grads[pass][2] = Tensor::empty(kv_shape(c), dt);
    ops::attention_backward(grads[pass][0], grads[pass][1], grads[pass][2], dout, q, k, v, probs,
                            1.0);
  }
  for (int i = 0; i < 3; ++i) EXPECT_LT(rel_error(grads[0][i], grads[1][i]), 1e-5) << i;
  EXPECT_NEAR(grads[0][2].item(0), grads[1][2].item(0), 1e-6) << "dv of key 0";
}

TEST(AttentionBackward, RepeatsAreBitIdentical) {
  for (const Case& c : {Case{2, 70, 4, 2, 8, 0}, Case{1, 33, 4, 1, 8, 5}}) {
    const Tensor q = randn(q_shape(c), DType::f32, 500), k = randn(kv_shape(c), DType::f32, 501);
    const Tensor v = randn(kv_shape(c), DType::f32, 502), dout = randn(q_shape(c), DType::f32, 503);
    Tensor out = Tensor::empty(q_shape(c), DType::f32);
    Tensor probs = Tensor::empty(probs_shape(c), DType::f32);
    ops::attention_forward(out, probs, q, k, v, 0.35, c.window);
    std::vector<Tensor> runs[2];
    for (auto& run : runs) {
      run = {test::full(q_shape(c), DType::f32, 1.0), test::full(kv_shape(c), DType::f32, 2.0),
             test::full(kv_shape(c), DType::f32, 3.0)};
      ops::attention_backward(run[0], run[1], run[2], dout, q, k, v, probs, 0.35);
    }
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(std::memcmp(runs[0][i].raw(), runs[1][i].raw(), runs[0][i].nbytes()), 0) << i;
    }
  }
}

// Big enough for the kernel to go parallel over (batch, head) tasks: the same values as the
// naive loop and as a one-thread run, and bit-identical repeats.
TEST(AttentionParallel, AgreesWithNaiveLoopAndOneThread) {
  const Case c{2, 130, 4, 2, 32, 0};
  const Tensor q = randn(q_shape(c), DType::f64, 600), k = randn(kv_shape(c), DType::f64, 601);
  const Tensor v = randn(kv_shape(c), DType::f64, 602), dout = randn(q_shape(c), DType::f64, 603);
  Tensor out = Tensor::empty(q_shape(c), DType::f64);
  Tensor probs = Tensor::empty(probs_shape(c), DType::f64);
  ops::attention_forward(out, probs, q, k, v, 0.2, c.window);
  Tensor eo, ep;
  naive_attention(c, q, k, v, 0.2, &eo, &ep);
  EXPECT_LT(rel_error(out, eo), 1e-13);
  EXPECT_LT(rel_error(probs, ep), 1e-13);
  auto backward = [&] {
    std::vector<Tensor> g = {Tensor::empty(q_shape(c), DType::f64),
                             Tensor::empty(kv_shape(c), DType::f64),
                             Tensor::empty(kv_shape(c), DType::f64)};
    ops::attention_backward(g[0], g[1], g[2], dout, q, k, v, probs, 0.2);
    return g;
  };
  const std::vector<Tensor> first = backward(), second = backward();
  const int threads = num_threads();
  set_num_threads(1);
  const std::vector<Tensor> serial = backward();
  set_num_threads(threads);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(std::memcmp(first[i].raw(), second[i].raw(), first[i].nbytes()), 0) << i;
    EXPECT_LT(rel_error(first[i], serial[i]), 1e-13) << i;
  }
}

TEST(AttentionChecks, RejectsBadShapes) {
  const Tensor q = Tensor::zeros({1, 5, 3, 4}, DType::f32),
               k = Tensor::zeros({1, 5, 2, 4}, DType::f32);
  Tensor out = Tensor::zeros({1, 5, 3, 4}, DType::f32),
         probs = Tensor::zeros({1, 3, 5, 5}, DType::f32);
  EXPECT_TRUE(contains(error_of([&] { ops::attention_forward(out, probs, q, k, k, 0.5, 0); }),
                       "[attention_forward] q has shape (1, 5, 3, 4) and k has shape "
                       "(1, 5, 2, 4): the 3 query heads must be a multiple of the 2 kv heads"));
  const Tensor k1 = Tensor::zeros({1, 5, 1, 4}, DType::f32),
               v_bad = Tensor::zeros({1, 5, 1, 2}, DType::f32);
  EXPECT_TRUE(
      contains(error_of([&] { ops::attention_forward(out, probs, q, k1, v_bad, 0.5, 0); }),
               "[attention_forward] v has shape (1, 5, 1, 2) but k has shape (1, 5, 1, 4)"));
  Tensor probs_bad = Tensor::zeros({1, 3, 5, 4}, DType::f32);
  EXPECT_TRUE(contains(error_of([&] { ops::attention_forward(out, probs_bad, q, k1, k1, 0.5, 0); }),
                       "expected probs to be (1, 3, 5, 5)"));
  EXPECT_TRUE(contains(error_of([&] { ops::attention_forward(out, probs, q, k1, k1, 0.5, -1); }),
                       "window = -1"));
}

}  // namespace
}  // namespace tune
