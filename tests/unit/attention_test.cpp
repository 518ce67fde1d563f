// Attention: the GEMM-based kernel against a naive per-(b, h, i, j) loop (f32 and f64, GQA, MQA,
// sliding windows, sequences that cross the kernel's 64-row blocks), backward against central
// finite differences in f64, and bit-identical repeats. Then the two generalisations: packed
// documents (key_start, derived from positions by nn::document_key_starts; a packed row gives the
// same logits and gradients as its documents run as separate rows) and queries that are the last
// Tq of Tk keys (the KV cache), with and without saved probabilities.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "nn_gradcheck.h"
#include "test_util.h"
#include "tune/core/parallel.h"
#include "tune/nn/transformer.h"
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

// ---- packed documents and the KV-cache offset ----

// q_seq queries as the last of kv_seq keys, each with an optional first visible key.
struct GeneralCase {
  int64_t batch, q_seq, kv_seq, q_heads, kv_heads, dim, window;
  std::vector<int64_t> key_start;  // (B * Tq) or empty
};

Tensor key_start_of(const GeneralCase& c) {
  return c.key_start.empty() ? Tensor() : Tensor::from_i64({c.batch, c.q_seq}, c.key_start);
}

// The definition, one score at a time: query i at a = Tk - Tq + i sees key j when
// max(key_start, a - window + 1, 0) <= j <= a.
void naive_general(const GeneralCase& c, const Tensor& q, const Tensor& k, const Tensor& v,
                   double scale, Tensor* out, Tensor* probs) {
  *out = Tensor::zeros({c.batch, c.q_seq, c.q_heads, c.dim}, DType::f64);
  *probs = Tensor::zeros({c.batch, c.q_heads, c.q_seq, c.kv_seq}, DType::f64);
  const int64_t group = c.q_heads / c.kv_heads, d = c.dim, off = c.kv_seq - c.q_seq;
  auto qi = [&](int64_t b, int64_t t, int64_t h) {
    return ((b * c.q_seq + t) * c.q_heads + h) * d;
  };
  auto ki = [&](int64_t b, int64_t t, int64_t g) {
    return ((b * c.kv_seq + t) * c.kv_heads + g) * d;
  };
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t h = 0; h < c.q_heads; ++h) {
      for (int64_t i = 0; i < c.q_seq; ++i) {
        const int64_t a = off + i;
        int64_t lo = c.window > 0 ? std::max<int64_t>(0, a - c.window + 1) : 0;
        if (!c.key_start.empty()) lo = std::max(lo, c.key_start[b * c.q_seq + i]);
        std::vector<double> s(static_cast<size_t>(c.kv_seq), 0.0);
        double m = -INFINITY, sum = 0;
        for (int64_t j = lo; j <= a; ++j) {
          double acc = 0;
          for (int64_t e = 0; e < d; ++e)
            acc += q.item(qi(b, i, h) + e) * k.item(ki(b, j, h / group) + e);
          s[j] = scale * acc;
          m = std::max(m, s[j]);
        }
        for (int64_t j = lo; j <= a; ++j) sum += std::exp(s[j] - m);
        double* prow = probs->data<double>() + ((b * c.q_heads + h) * c.q_seq + i) * c.kv_seq;
        for (int64_t j = lo; j <= a; ++j) {
          prow[j] = std::exp(s[j] - m) / sum;
          for (int64_t e = 0; e < d; ++e)
            out->data<double>()[qi(b, i, h) + e] += prow[j] * v.item(ki(b, j, h / group) + e);
        }
      }
    }
  }
}

// Documents of the given lengths packed into one row: their first keys, repeated per row.
std::vector<int64_t> packed_starts(int64_t batch, const std::vector<int64_t>& lengths) {
  std::vector<int64_t> starts;
  for (int64_t b = 0; b < batch; ++b) {
    int64_t start = 0;
    for (int64_t len : lengths) {
      for (int64_t t = 0; t < len; ++t) starts.push_back(start);
      start += len;
    }
  }
  return starts;
}

std::vector<GeneralCase> general_cases() {
  return {
      // packed documents (Tq = Tk), awkward sizes and documents across 64-row blocks
      {1, 1, 1, 1, 1, 1, 0, {0}},
      {2, 7, 7, 4, 2, 8, 0, packed_starts(2, {3, 4})},
      {1, 7, 7, 4, 1, 8, 3, packed_starts(1, {1, 1, 5})},
      {1, 31, 31, 3, 3, 5, 0, packed_starts(1, {10, 1, 20})},
      {1, 33, 33, 2, 1, 7, 5, packed_starts(1, {17, 16})},
      {1, 130, 130, 2, 1, 3, 0, packed_starts(1, {60, 10, 1, 59})},
      {2, 70, 70, 2, 2, 4, 20, packed_starts(2, {65, 5})},
      // KV cache: the last Tq of Tk positions, with and without a window
      {1, 1, 1, 2, 1, 4, 0, {}},
      {2, 1, 9, 4, 2, 8, 0, {}},
      {1, 1, 33, 2, 1, 7, 5, {}},
      {1, 5, 12, 4, 2, 8, 0, {}},
      {1, 31, 100, 2, 2, 4, 0, {}},
      {1, 70, 71, 2, 1, 3, 20, {}},
      // both: a prefix in the cache, then a packed chunk
      {1, 6, 10, 2, 1, 4, 0, {0, 0, 0, 7, 7, 7}},
  };
}

TEST(AttentionGeneral, PackedDocumentsAndKvOffsetMatchNaiveLoop) {
  uint64_t seed = 700;
  for (DType dt : {DType::f32, DType::f64}) {
    for (const GeneralCase& c : general_cases()) {
      const Shape qs{c.batch, c.q_seq, c.q_heads, c.dim}, ks{c.batch, c.kv_seq, c.kv_heads, c.dim};
      const Tensor q = randn(qs, dt, seed++), k = randn(ks, dt, seed++), v = randn(ks, dt, seed++);
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.dim));
      Tensor out = test::full(qs, dt, NAN);
      Tensor probs = test::full({c.batch, c.q_heads, c.q_seq, c.kv_seq}, dt, NAN);
      ops::attention_forward(out, probs, q, k, v, scale, c.window, key_start_of(c));
      Tensor eo, ep;
      naive_general(c, q, k, v, scale, &eo, &ep);
      const double tol = dt == DType::f32 ? 1e-5 : 1e-13;
      const std::string where = str("Tq=", c.q_seq, " Tk=", c.kv_seq, " window=", c.window,
                                    " packed=", !c.key_start.empty());
      EXPECT_LT(rel_error(out, eo), tol) << where;
      EXPECT_LT(rel_error(probs, ep), tol) << where;
      for (int64_t i = 0; i < probs.numel(); ++i) {
        if (ep.item(i) == 0.0)
          ASSERT_EQ(probs.item(i), 0.0) << "masked entries are zero, " << where;
      }
      // Inference: no probs saved, the same output to the bit.
      Tensor none, out2 = test::full(qs, dt, NAN);
      ops::attention_forward(out2, none, q, k, v, scale, c.window, key_start_of(c));
      EXPECT_EQ(std::memcmp(out.raw(), out2.raw(), out.nbytes()), 0) << where;
    }
  }
}

TEST(AttentionGeneral, BackwardMatchesFiniteDifferences) {
  uint64_t seed = 800;
  for (const GeneralCase& c : general_cases()) {
    if (c.q_seq * c.kv_seq > 2500) continue;  // finite differences cost O(numel) forwards
    const Shape qs{c.batch, c.q_seq, c.q_heads, c.dim}, ks{c.batch, c.kv_seq, c.kv_heads, c.dim};
    const Shape ps{c.batch, c.q_heads, c.q_seq, c.kv_seq};
    Tensor q = randn(qs, DType::f64, seed++), k = randn(ks, DType::f64, seed++);
    Tensor v = randn(ks, DType::f64, seed++);
    const Tensor dout = randn(qs, DType::f64, seed++), starts = key_start_of(c);
    const double scale = 0.4;
    auto loss = [&] {
      Tensor out = Tensor::empty(qs, DType::f64), probs = Tensor::empty(ps, DType::f64);
      ops::attention_forward(out, probs, q, k, v, scale, c.window, starts);
      return dot(dout, out);
    };
    Tensor out = Tensor::empty(qs, DType::f64), probs = Tensor::empty(ps, DType::f64);
    ops::attention_forward(out, probs, q, k, v, scale, c.window, starts);
    Tensor dq = test::full(qs, DType::f64, NAN), dk = test::full(ks, DType::f64, NAN);
    Tensor dv = test::full(ks, DType::f64, NAN);
    ops::attention_backward(dq, dk, dv, dout, q, k, v, probs, scale);
    const std::string where = str("Tq=", c.q_seq, " Tk=", c.kv_seq, " window=", c.window,
                                  " packed=", !c.key_start.empty());
    EXPECT_LT(rel_error(dq, fd_gradient(q, loss)), 1e-6) << where;
    EXPECT_LT(rel_error(dk, fd_gradient(k, loss)), 1e-6) << where;
    EXPECT_LT(rel_error(dv, fd_gradient(v, loss)), 1e-6) << where;
  }
}

// The lse pair (training without saved probabilities) against the probs pair on every general
// case (packed documents, windows, KV-cache offsets): out to the bit's neighbourhood, lse equal to
// log sum exp of the naive scores, and the gradients of attention_backward_lse equal to
// attention_backward's, with lse in f64 and in f32 (the dtype CUDA uses).
TEST(AttentionLse, ForwardAndBackwardMatchTheProbsPair) {
  uint64_t seed = 900;
  for (const GeneralCase& c : general_cases()) {
    const Shape qs{c.batch, c.q_seq, c.q_heads, c.dim}, ks{c.batch, c.kv_seq, c.kv_heads, c.dim};
    const Shape ps{c.batch, c.q_heads, c.q_seq, c.kv_seq}, ls{c.batch, c.q_heads, c.q_seq};
    const Tensor q = randn(qs, DType::f64, seed++), k = randn(ks, DType::f64, seed++);
    const Tensor v = randn(ks, DType::f64, seed++), dout = randn(qs, DType::f64, seed++);
    const Tensor starts = key_start_of(c);
    const double scale = 0.4;
    const std::string where = str("Tq=", c.q_seq, " Tk=", c.kv_seq, " window=", c.window,
                                  " packed=", !c.key_start.empty());
    Tensor out = Tensor::empty(qs, DType::f64), probs = Tensor::empty(ps, DType::f64);
    ops::attention_forward(out, probs, q, k, v, scale, c.window, starts);
    Tensor dq = Tensor::empty(qs, DType::f64), dk = Tensor::empty(ks, DType::f64);
    Tensor dv = Tensor::empty(ks, DType::f64);
    ops::attention_backward(dq, dk, dv, dout, q, k, v, probs, scale);

    for (DType lse_dt : {DType::f64, DType::f32}) {
      const double tol = lse_dt == DType::f64 ? 1e-12 : 1e-6;
      Tensor out_l = test::full(qs, DType::f64, NAN), lse = test::full(ls, lse_dt, NAN);
      ops::attention_forward_lse(out_l, lse, q, k, v, scale, c.window, starts);
      EXPECT_LT(rel_error(out_l, out), 1e-12) << where;
      // P_ij = exp(scale q.k - lse_i) reproduces the saved probabilities.
      const int64_t group = c.q_heads / c.kv_heads;
      double worst = 0;
      for (int64_t b = 0; b < c.batch; ++b) {
        for (int64_t h = 0; h < c.q_heads; ++h) {
          for (int64_t i = 0; i < c.q_seq; ++i) {
            const double l = lse.item((b * c.q_heads + h) * c.q_seq + i);
            ASSERT_TRUE(std::isfinite(l)) << where;
            for (int64_t j = 0; j < c.kv_seq; ++j) {
              const double p = probs.item(((b * c.q_heads + h) * c.q_seq + i) * c.kv_seq + j);
              if (p == 0.0) continue;
              double dot_qk = 0;
              for (int64_t e = 0; e < c.dim; ++e) {
                dot_qk += q.item(((b * c.q_seq + i) * c.q_heads + h) * c.dim + e) *
                          k.item(((b * c.kv_seq + j) * c.kv_heads + h / group) * c.dim + e);
              }
              worst = std::max(worst, std::abs(std::exp(scale * dot_qk - l) - p));
            }
          }
        }
      }
      EXPECT_LT(worst, tol) << where;
      Tensor dq_l = test::full(qs, DType::f64, NAN), dk_l = test::full(ks, DType::f64, NAN);
      Tensor dv_l = test::full(ks, DType::f64, NAN);
      ops::attention_backward_lse(dq_l, dk_l, dv_l, dout, q, k, v, out_l, lse, scale, c.window,
                                  starts);
      EXPECT_LT(rel_error(dq_l, dq), tol) << where << " lse " << dtype_name(lse_dt);
      EXPECT_LT(rel_error(dk_l, dk), tol) << where << " lse " << dtype_name(lse_dt);
      EXPECT_LT(rel_error(dv_l, dv), tol) << where << " lse " << dtype_name(lse_dt);
    }
  }
}

// lse is the log of the softmax denominator: exp(scale q.k - lse) summed over visible keys is 1,
// and for one visible key lse is that key's scaled score.
TEST(AttentionLse, LseIsTheLogOfTheDenominator) {
  const Tensor q = randn({1, 3, 1, 4}, DType::f64, 31), k = randn({1, 3, 1, 4}, DType::f64, 32);
  Tensor out = Tensor::empty({1, 3, 1, 4}, DType::f64), lse = Tensor::empty({1, 1, 3}, DType::f64);
  ops::attention_forward_lse(out, lse, q, k, k, 0.5, 0);
  for (int64_t i = 0; i < 3; ++i) {
    double sum = 0;
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0;
      for (int64_t e = 0; e < 4; ++e) s += q.item(i * 4 + e) * k.item(j * 4 + e);
      if (i == 0) EXPECT_NEAR(lse.item(0), 0.5 * s, 1e-14);
      sum += std::exp(0.5 * s - lse.item(i));
    }
    EXPECT_NEAR(sum, 1.0, 1e-14) << i;
  }
}

TEST(AttentionLse, F32MatchesF64AndRejectsBadLse) {
  const Case c{2, 70, 4, 2, 8, 5};
  Tensor grads[2][3];
  for (int pass = 0; pass < 2; ++pass) {
    const DType dt = pass == 0 ? DType::f32 : DType::f64;
    const Tensor q = randn(q_shape(c), dt, 300), k = randn(kv_shape(c), dt, 301);
    const Tensor v = randn(kv_shape(c), dt, 302), dout = randn(q_shape(c), dt, 303);
    Tensor out = Tensor::empty(q_shape(c), dt);
    Tensor lse = Tensor::empty({c.batch, c.q_heads, c.seq}, DType::f32);
    ops::attention_forward_lse(out, lse, q, k, v, 0.35, c.window);
    grads[pass][0] = Tensor::empty(q_shape(c), dt);
    grads[pass][1] = Tensor::empty(kv_shape(c), dt);
    grads[pass][2] = Tensor::empty(kv_shape(c), dt);
    ops::attention_backward_lse(grads[pass][0], grads[pass][1], grads[pass][2], dout, q, k, v, out,
                                lse, 0.35, c.window);
  }
  for (int i = 0; i < 3; ++i) EXPECT_LT(rel_error(grads[0][i], grads[1][i]), 1e-5) << i;

  const Tensor q = Tensor::zeros({1, 3, 2, 4}, DType::f32);
  Tensor out = Tensor::zeros({1, 3, 2, 4}, DType::f32);
  Tensor bad_shape = Tensor::zeros({1, 3, 2}, DType::f32);
  EXPECT_TRUE(
      contains(error_of([&] { ops::attention_forward_lse(out, bad_shape, q, q, q, 0.5, 0); }),
               "[attention_forward_lse] lse"));
  Tensor bad_dtype = Tensor::zeros({1, 2, 3}, DType::f64);
  EXPECT_TRUE(
      contains(error_of([&] { ops::attention_forward_lse(out, bad_dtype, q, q, q, 0.5, 0); }),
               "expected f32"));
}

TEST(AttentionGeneral, DocumentKeyStartsFromPositions) {
  // Unpacked rows (including a row that starts past 0) need no mask beyond causality.
  EXPECT_FALSE(nn::document_key_starts(nn::default_positions(2, 5)).defined());
  EXPECT_FALSE(nn::document_key_starts(Tensor::from_i64({2, 3}, {0, 1, 2, 6, 7, 8})).defined());
  const Tensor s =
      nn::document_key_starts(Tensor::from_i64({2, 5}, {0, 1, 0, 1, 2, 5, 6, 0, 0, 1}));
  ASSERT_TRUE(s.defined());
  const std::vector<int64_t> expected = {0, 0, 2, 2, 2, 0, 0, 2, 3, 3};
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(s.data<int64_t>()[i], expected[i]) << i;
}

TEST(AttentionChecks, RejectsBadKeyStartsAndQueriesPastTheKeys) {
  const Tensor q = Tensor::zeros({1, 3, 2, 4}, DType::f32),
               k = Tensor::zeros({1, 3, 1, 4}, DType::f32);
  Tensor out = Tensor::zeros({1, 3, 2, 4}, DType::f32),
         probs = Tensor::zeros({1, 2, 3, 3}, DType::f32);
  EXPECT_TRUE(contains(
      error_of([&] {
        ops::attention_forward(out, probs, q, k, k, 0.5, 0, Tensor::from_i64({1, 3}, {0, 2, 1}));
      }),
      "[attention_forward] key_start[0, 1] = 2 is outside [0, 1]"));
  const Tensor k_short = Tensor::zeros({1, 2, 1, 4}, DType::f32);
  Tensor probs_short = Tensor::zeros({1, 2, 3, 2}, DType::f32);
  EXPECT_TRUE(contains(
      error_of([&] { ops::attention_forward(out, probs_short, q, k_short, k_short, 0.5, 0); }),
      "the 3 queries must be the last of the 2 keys (Tq <= Tk)"));
}

// A two-layer CausalLM of 13 words, hidden 16, 4 query heads of 4 over 2 kv heads.
nn::TransformerConfig tiny_lm_config() {
  nn::TransformerConfig c;
  c.vocab_size = 13;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.max_positions = 32;
  return c;
}

// A packed row of two documents gives each document's logits as if it ran alone, and the same
// parameter gradients as the two documents run separately, summed (f64 CausalLM with qk-norm,
// biases and a window, GQA).
TEST(AttentionPacked, PackedRowEqualsSeparateRowsInLogitsAndGradients) {
  nn::TransformerConfig c = tiny_lm_config();
  c.qkv_bias = true;
  c.qk_norm = true;
  c.sliding_window = {0, 4};
  nn::ParamStore params;
  nn::CausalLM lm(params, c, nn::TensorNames{}, nn::BuildOptions{});
  params.allocate(DType::f64);
  test::fill_params(params, 900);
  const std::vector<int64_t> doc_a = {1, 5, 7, 2, 9}, doc_b = {3, 3, 8, 12, 0, 4, 6};
  const int64_t ta = 5, tb = 7, t = ta + tb, V = c.vocab_size;
  const Tensor dlogits = randn({t, V}, DType::f64, 901);

  std::vector<int64_t> ids = doc_a, pos;
  ids.insert(ids.end(), doc_b.begin(), doc_b.end());
  for (int64_t i = 0; i < ta; ++i) pos.push_back(i);
  for (int64_t i = 0; i < tb; ++i) pos.push_back(i);
  nn::Context ctx;
  ctx.dtype = DType::f64;
  params.zero_grads();
  const Tensor packed =
      lm.forward(ctx, Tensor::from_i64({1, t}, ids), Tensor::from_i64({1, t}, pos)).clone();
  lm.backward(ctx, dlogits);
  const Tensor packed_grads = params.grads().clone();

  params.zero_grads();
  Tensor separate = Tensor::empty({t, V}, DType::f64);
  int64_t row = 0;
  for (const std::vector<int64_t>& doc : {doc_a, doc_b}) {
    const int64_t n = static_cast<int64_t>(doc.size());
    ctx.arena.reset();
    Tensor logits = lm.forward(ctx, Tensor::from_i64({1, n}, doc), nn::default_positions(1, n));
    Tensor dst = separate.narrow(row, n);
    ops::copy(dst, logits);
    lm.backward(ctx, dlogits.narrow(row, n).clone());
    row += n;
  }
  EXPECT_LT(test::max_abs_diff(packed, separate), 1e-12);
  EXPECT_LT(rel_error(packed_grads, params.grads()), 1e-12);
  EXPECT_GT(ops::sum_squares(packed_grads), 0.0);
}

// CausalLM checks every position against its tables once, on the host, before any layer runs (the
// layers' RoPE on CUDA then skips its own check, which would wait for the device each time).
TEST(AttentionPositions, CausalLMRejectsAPositionPastItsTables) {
  nn::TransformerConfig c = tiny_lm_config();
  c.max_positions = 8;
  nn::ParamStore params;
  nn::CausalLM lm(params, c, nn::TensorNames{}, nn::BuildOptions{});
  params.allocate(DType::f64);
  test::fill_params(params, 910);
  nn::Context ctx;
  const Tensor ids = Tensor::from_i64({2, 3}, {1, 2, 3, 4, 5, 6});
  for (int64_t bad : {8, -1}) {
    const Tensor pos = Tensor::from_i64({2, 3}, {0, 1, 2, 5, bad, 7});
    const std::string e = test::error_of([&] { lm.forward(ctx, ids, pos); });
    EXPECT_TRUE(test::contains(
        e, str("CausalLM::forward: position ", bad, " at (b, t) = (1, 1) is outside [0, 8)")))
        << e;
  }
  EXPECT_EQ(lm.forward(ctx, ids, Tensor::from_i64({2, 3}, {0, 1, 2, 5, 6, 7})).size(0), 6);
}

}  // namespace
}  // namespace tune
