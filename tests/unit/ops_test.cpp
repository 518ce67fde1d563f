// Ops, part 1: matmul, elementwise ops, bias, sum of squares, dropout, embedding, and the
// argument checks every op shares. Each op is compared with a naive loop written here, at
// awkward sizes and in f32 and f64; backward ops against central finite differences in f64.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "test_util.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using ops::Transpose;
using test::contains;
using test::dot;
using test::error_of;
using test::fd_gradient;
using test::randn;
using test::rel_error;

constexpr DType kFloatTypes[] = {DType::f32, DType::f64};

double tolerance(DType t) {
  return t == DType::f32 ? 2e-6 : 1e-13;
}

// ---- matmul ----

// alpha * op(a) @ op(b) + beta * c0, in f64 by triple loop.
Tensor naive_matmul(const Tensor& a, Transpose ta, const Tensor& b, Transpose tb, double alpha,
                    double beta, const Tensor& c0) {
  const int64_t m = ta == Transpose::no ? a.size(0) : a.size(1);
  const int64_t k = ta == Transpose::no ? a.size(1) : a.size(0);
  const int64_t n = tb == Transpose::no ? b.size(1) : b.size(0);
  Tensor c = Tensor::empty({m, n}, DType::f64);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double av = ta == Transpose::no ? a.item(i * k + p) : a.item(p * m + i);
        const double bv = tb == Transpose::no ? b.item(p * n + j) : b.item(j * k + p);
        s += av * bv;
      }
      c.data<double>()[i * n + j] = alpha * s + (beta != 0 ? beta * c0.item(i * n + j) : 0.0);
    }
  }
  return c;
}

Shape operand_shape(int64_t rows, int64_t cols, Transpose t) {
  return t == Transpose::no ? Shape{rows, cols} : Shape{cols, rows};
}

constexpr Transpose kTransposes[] = {Transpose::no, Transpose::yes};

TEST(OpsMatmul, MatchesTripleLoopAtAwkwardSizes) {
  uint64_t seed = 1;
  for (DType dt : kFloatTypes) {
    for (Transpose ta : kTransposes) {
      for (Transpose tb : kTransposes) {
        for (int64_t m : {1, 7, 31, 33}) {
          for (int64_t n : {1, 7, 33}) {
            for (int64_t k : {1, 5, 31}) {
              const Tensor a = randn(operand_shape(m, k, ta), dt, seed++);
              const Tensor b = randn(operand_shape(k, n, tb), dt, seed++);
              // beta = 0 must overwrite c, NaNs included.
              Tensor c = test::full({m, n}, dt, NAN);
              ops::matmul(c, a, ta, b, tb);
              EXPECT_LT(rel_error(c, naive_matmul(a, ta, b, tb, 1, 0, c)), tolerance(dt))
                  << m << "x" << n << "x" << k;
              // alpha and beta = 1 (accumulate).
              const Tensor c0 = randn({m, n}, dt, seed++);
              c = c0.clone();
              ops::matmul(c, a, ta, b, tb, 0.5, 1.0);
              EXPECT_LT(rel_error(c, naive_matmul(a, ta, b, tb, 0.5, 1.0, c0)), tolerance(dt))
                  << m << "x" << n << "x" << k << " accumulate";
            }
          }
        }
      }
    }
  }
}

// Past the sizes where OpenBLAS switches to its blocked, threaded kernels: beta = 0 must still
// overwrite c. The f64 product of the same f32 inputs is the reference.
TEST(OpsMatmul, BetaZeroOverwritesAtBlockedSizes) {
  const Tensor a = randn({300, 170}, DType::f32, 50), b = randn({257, 170}, DType::f32, 51);
  Tensor c = test::full({300, 257}, DType::f32, NAN);
  ops::matmul(c, a, Transpose::no, b, Transpose::yes);
  Tensor c64 = Tensor::empty({300, 257}, DType::f64);
  ops::matmul(c64, a.to(DType::f64), Transpose::no, b.to(DType::f64), Transpose::yes);
  EXPECT_LT(rel_error(c, c64), 1e-6);
}

TEST(OpsMatmul, EmptyInnerDimensionScalesC) {
  Tensor a = Tensor::empty({3, 0}, DType::f32), b = Tensor::empty({0, 2}, DType::f32);
  Tensor c = test::full({3, 2}, DType::f32, NAN);
  ops::matmul(c, a, Transpose::no, b, Transpose::no);
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(c.item(i), 0.0);
  c = test::full({3, 2}, DType::f32, 2.0);
  ops::matmul(c, a, Transpose::no, b, Transpose::no, 1.0, 0.5);
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(c.item(i), 1.0);
}

// matmul_add: c = alpha op(a) op(b) + src (+ bias), src apart from c or c itself; a source that
// only partly overlaps c, or of another dtype, is refused naming it.
TEST(OpsMatmul, AddFromASourceIsMatmulPlusTheSource) {
  const Tensor a = randn({5, 3}, DType::f64, 60), b = randn({4, 3}, DType::f64, 61);
  const Tensor src = randn({5, 4}, DType::f64, 62), bias = randn({4}, DType::f64, 63);
  Tensor want = src.clone();
  ops::matmul(want, a, Transpose::no, b, Transpose::yes, 0.5, 1.0, bias);
  Tensor c = test::full({5, 4}, DType::f64, NAN);
  ops::matmul_add(c, a, Transpose::no, b, Transpose::yes, src, 0.5, bias);
  EXPECT_LT(test::max_abs_diff(c, want), 1e-15);
  Tensor in_place = src.clone();
  ops::matmul_add(in_place, a, Transpose::no, b, Transpose::yes, in_place, 0.5, bias);
  EXPECT_LT(test::max_abs_diff(in_place, want), 1e-15);

  Tensor buffer = Tensor::zeros({24}, DType::f64);
  Tensor c2 = buffer.narrow(0, 20).view({5, 4}), shifted = buffer.narrow(4, 20).view({5, 4});
  EXPECT_TRUE(test::contains(
      test::error_of([&] { ops::matmul_add(c2, a, Transpose::no, b, Transpose::yes, shifted); }),
      "[matmul_add]"));
  EXPECT_TRUE(test::contains(test::error_of([&] {
                               ops::matmul_add(c, a, Transpose::no, b, Transpose::yes,
                                               src.to(DType::f32));
                             }),
                             "src is f32 but c is f64"));
}

// L = <dc, op(a) @ op(b)>: dop(a) = dc op(b)^T and dop(b) = op(a)^T dc, each written with the op
// itself in the layout a and b are stored in. This is how Linear's backward uses matmul.
TEST(OpsMatmul, GradientsMatchFiniteDifferencesForAllTransposes) {
  const int64_t m = 3, k = 5, n = 4;
  uint64_t seed = 100;
  for (Transpose ta : kTransposes) {
    for (Transpose tb : kTransposes) {
      Tensor a = randn(operand_shape(m, k, ta), DType::f64, seed++);
      Tensor b = randn(operand_shape(k, n, tb), DType::f64, seed++);
      const Tensor dc = randn({m, n}, DType::f64, seed++);
      auto loss = [&] {
        Tensor c = Tensor::empty({m, n}, DType::f64);
        ops::matmul(c, a, ta, b, tb);
        return dot(dc, c);
      };
      Tensor da = Tensor::empty(a.shape(), DType::f64), db = Tensor::empty(b.shape(), DType::f64);
      if (ta == Transpose::no) {  // da (m, k) = dc @ op(b)^T
        ops::matmul(da, dc, Transpose::no, b, tb == Transpose::no ? Transpose::yes : Transpose::no);
      } else {  // da (k, m) = op(b) @ dc^T
        ops::matmul(da, b, tb, dc, Transpose::yes);
      }
      if (tb == Transpose::no) {  // db (k, n) = op(a)^T @ dc
        ops::matmul(db, a, ta == Transpose::no ? Transpose::yes : Transpose::no, dc, Transpose::no);
      } else {  // db (n, k) = dc^T @ op(a)
        ops::matmul(db, dc, Transpose::yes, a, ta);
      }
      EXPECT_LT(rel_error(da, fd_gradient(a, loss)), 1e-6);
      EXPECT_LT(rel_error(db, fd_gradient(b, loss)), 1e-6);
    }
  }
}

TEST(OpsMatmul, RejectsMismatchedShapesWithBothShapes) {
  Tensor a = Tensor::zeros({2, 3}, DType::f32), b = Tensor::zeros({4, 5}, DType::f32);
  Tensor c = Tensor::zeros({2, 5}, DType::f32);
  const std::string msg = error_of([&] { ops::matmul(c, a, Transpose::no, b, Transpose::no); });
  EXPECT_TRUE(contains(msg, "[matmul] inner dimensions differ"));
  EXPECT_TRUE(contains(msg, "(2, 3)"));
  EXPECT_TRUE(contains(msg, "(4, 5)"));
  Tensor b2 = Tensor::zeros({3, 5}, DType::f32), c2 = Tensor::zeros({5, 2}, DType::f32);
  EXPECT_TRUE(contains(error_of([&] { ops::matmul(c2, a, Transpose::no, b2, Transpose::no); }),
                       "[matmul] c has shape (5, 2) but a @ b has shape (2, 5)"));
  Tensor c3 = Tensor::zeros({2, 5}, DType::f64);
  EXPECT_TRUE(contains(error_of([&] { ops::matmul(c3, a, Transpose::no, b2, Transpose::no); }),
                       "share one dtype"));
  // c aliasing an input would be read while it is written.
  Tensor sq = Tensor::zeros({3, 3}, DType::f32);
  EXPECT_TRUE(contains(error_of([&] { ops::matmul(sq, sq, Transpose::no, sq, Transpose::no); }),
                       "[matmul] c overlaps a"));
}

// ---- elementwise ----

TEST(OpsElementwise, MatchPerElementReference) {
  uint64_t seed = 200;
  for (DType dt : kFloatTypes) {
    for (int64_t n : {1, 7, 31, 33, 70001}) {
      const Tensor a = randn({n}, dt, seed++), b = randn({n}, dt, seed++);
      Tensor out = Tensor::empty({n}, dt);
      ops::add(out, a, b);
      Tensor y = a.clone();
      ops::add_inplace(y, b, -0.25);
      Tensor z = a.clone();
      ops::scale_inplace(z, 3.0);
      Tensor cp = test::full({n}, dt, NAN);
      ops::copy(cp, a);
      Tensor f = Tensor::empty({n}, dt);
      ops::fill(f, 1.5);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_NEAR(out.item(i), a.item(i) + b.item(i), 1e-6);
        ASSERT_NEAR(y.item(i), a.item(i) - 0.25 * b.item(i), 1e-6);
        ASSERT_NEAR(z.item(i), 3.0 * a.item(i), 1e-6);
        ASSERT_EQ(cp.item(i), a.item(i));
        ASSERT_EQ(f.item(i), 1.5);
      }
    }
  }
}

TEST(OpsElementwise, SumSquaresAccumulatesInDouble) {
  for (int64_t n : {0, 1, 33, 100003}) {
    const Tensor x = randn({n}, DType::f32, 300 + static_cast<uint64_t>(n));
    double expected = 0;
    for (int64_t i = 0; i < n; ++i) expected += x.item(i) * x.item(i);
    EXPECT_NEAR(ops::sum_squares(x), expected, 1e-12 * std::max(1.0, expected)) << n;
  }
  // 2^24 + 1 ones: a float accumulator would stop counting at 2^24.
  Tensor ones = test::full({(1 << 24) + 1}, DType::f32, 1.0);
  EXPECT_EQ(ops::sum_squares(ones), static_cast<double>((1 << 24) + 1));
}

TEST(OpsBias, AddAndBackwardMatchLoops) {
  uint64_t seed = 400;
  for (DType dt : kFloatTypes) {
    for (int64_t rows : {1, 7, 31, 33, 1000}) {
      for (int64_t cols : {1, 5, 67, 130}) {
        const Tensor y0 = randn({rows, cols}, dt, seed++), b = randn({cols}, dt, seed++);
        Tensor y = y0.clone();
        ops::add_bias(y, b);
        const Tensor db0 = randn({cols}, dt, seed++);
        Tensor db = db0.clone();
        ops::bias_backward(db, y0);  // accumulates
        for (int64_t c = 0; c < cols; ++c) {
          double col = 0;
          for (int64_t r = 0; r < rows; ++r) {
            ASSERT_NEAR(y.item(r * cols + c), y0.item(r * cols + c) + b.item(c), 1e-6);
            col += y0.item(r * cols + c);
          }
          ASSERT_NEAR(db.item(c), db0.item(c) + col, dt == DType::f32 ? 1e-4 : 1e-11);
        }
      }
    }
  }
}

TEST(OpsBias, GradientMatchesFiniteDifferences) {
  const Tensor y0 = randn({7, 5}, DType::f64, 450), dy = randn({7, 5}, DType::f64, 451);
  Tensor b = randn({5}, DType::f64, 452);
  auto loss = [&] {
    Tensor y = y0.clone();
    ops::add_bias(y, b);
    return dot(dy, y);
  };
  Tensor db = Tensor::zeros({5}, DType::f64);
  ops::bias_backward(db, dy);
  EXPECT_LT(rel_error(db, fd_gradient(b, loss)), 1e-6);
}

// ---- dropout ----

TEST(OpsDropout, MaskIsTheCounterBasedStreamAndBackwardIsTheSameCall) {
  const double p = 0.3;
  const uint64_t seed = 7, stream = 11;
  for (DType dt : kFloatTypes) {
    for (int64_t n : {1, 7, 33, 50000}) {
      const Tensor x = randn({n}, dt, 500 + static_cast<uint64_t>(n));
      Tensor out = Tensor::empty({n}, dt);
      ops::dropout(out, x, p, seed, stream);
      int64_t kept = 0;
      for (int64_t i = 0; i < n; ++i) {
        const bool keep =
            uniform01(seed, stream, static_cast<uint64_t>(i)) >= static_cast<float>(p);
        kept += keep;
        const double expected = keep ? x.item(i) * (1.0 / (1.0 - p)) : 0.0;
        ASSERT_NEAR(out.item(i), expected, 1e-6 * std::abs(expected)) << i;
      }
      if (n == 50000) EXPECT_NEAR(static_cast<double>(kept) / n, 1 - p, 0.01);
      // Backward: the same call on dy drops the same elements; in place works.
      Tensor dy = randn({n}, dt, 600);
      Tensor dx = dy.clone();
      ops::dropout(dx, dx, p, seed, stream);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(dx.item(i) == 0.0, out.item(i) == 0.0) << i;
    }
  }
  const Tensor x = randn({64}, DType::f32, 700);
  Tensor a = Tensor::empty({64}, DType::f32), b = Tensor::empty({64}, DType::f32);
  ops::dropout(a, x, p, seed, 1);
  ops::dropout(b, x, p, seed, 2);
  EXPECT_GT(rel_error(a, b), 0.1) << "another stream draws another mask";
}

TEST(OpsDropout, ZeroProbabilityCopiesAndBadProbabilityThrows) {
  const Tensor x = randn({33}, DType::f32, 800);
  Tensor out = test::full({33}, DType::f32, NAN);
  ops::dropout(out, x, 0.0, 1, 2);
  EXPECT_EQ(rel_error(out, x), 0.0);
  EXPECT_TRUE(contains(error_of([&] { ops::dropout(out, x, 1.0, 1, 2); }),
                       "[dropout] p = 1 is outside [0, 1)"));
  EXPECT_TRUE(contains(error_of([&] { ops::dropout(out, x, -0.1, 1, 2); }), "[dropout]"));
}

// ---- embedding ----

TEST(OpsEmbedding, ForwardAndBackwardMatchLoops) {
  uint64_t seed = 900;
  for (DType dt : kFloatTypes) {
    for (DType it : {DType::i64, DType::i32}) {
      for (int64_t n : {1, 7, 31, 33, 600}) {
        for (int64_t c : {1, 5, 67, 300}) {
          const int64_t vocab = 13;  // fewer rows than ids: repeats are certain
          const Tensor ids = test::randint({n}, vocab, seed++).to(it);
          const Tensor table = randn({vocab, c}, dt, seed++);
          Tensor out = test::full({n, c}, dt, NAN);
          ops::embedding_forward(out, ids, table);
          const Tensor dout = randn({n, c}, dt, seed++);
          const Tensor dtable0 = randn({vocab, c}, dt, seed++);
          Tensor dtable = dtable0.clone();
          ops::embedding_backward(dtable, dout, ids);
          Tensor expected = dtable0.to(DType::f64);
          for (int64_t r = 0; r < n; ++r) {
            const auto id = static_cast<int64_t>(ids.item(r));
            for (int64_t j = 0; j < c; ++j) {
              ASSERT_EQ(out.item(r * c + j), table.item(id * c + j));
              expected.data<double>()[id * c + j] += dout.item(r * c + j);
            }
          }
          EXPECT_LT(rel_error(dtable, expected), tolerance(dt) * 10);
        }
      }
    }
  }
}

TEST(OpsEmbedding, GradientMatchesFiniteDifferences) {
  const Tensor ids = Tensor::from_i64({6}, {3, 0, 3, 4, 1, 3});
  Tensor table = randn({5, 4}, DType::f64, 950);
  const Tensor dout = randn({6, 4}, DType::f64, 951);
  auto loss = [&] {
    Tensor out = Tensor::empty({6, 4}, DType::f64);
    ops::embedding_forward(out, ids, table);
    return dot(dout, out);
  };
  Tensor dtable = Tensor::zeros({5, 4}, DType::f64);
  ops::embedding_backward(dtable, dout, ids);
  EXPECT_LT(rel_error(dtable, fd_gradient(table, loss)), 1e-6);
}

TEST(OpsEmbedding, OutOfRangeIdThrowsNamingIdAndVocabulary) {
  const Tensor table = Tensor::zeros({8, 4}, DType::f32);
  Tensor out = Tensor::empty({3, 4}, DType::f32);
  const std::string msg = error_of([&] {
    ops::embedding_forward(out, Tensor::from_i64({3}, {1, 2, 9}), table);
  });
  EXPECT_TRUE(contains(msg, "[embedding_forward] id 9 at position 2"));
  EXPECT_TRUE(contains(msg, "8 rows"));
  EXPECT_TRUE(contains(error_of([&] {
                         ops::embedding_forward(out, Tensor::from_i64({3}, {-1, 2, 3}), table);
                       }),
                       "id -1"));
  Tensor dtable = Tensor::zeros({8, 4}, DType::f32);
  EXPECT_TRUE(contains(error_of([&] {
                         ops::embedding_backward(dtable, out, Tensor::from_i64({3}, {8, 0, 0}));
                       }),
                       "[embedding_backward] id 8"));
  EXPECT_TRUE(contains(
      error_of([&] { ops::embedding_forward(out, Tensor::zeros({3}, DType::f32), table); }),
      "index tensors are i64 or i32"));
}

// ---- checks every op shares ----

TEST(OpsChecks, MessagesNameTheOpAndTheShapes) {
  Tensor x = Tensor::zeros({2, 3}, DType::f32), w = Tensor::zeros({4}, DType::f32);
  Tensor y = Tensor::zeros({2, 3}, DType::f32), rstd = Tensor::zeros({2}, DType::f32);
  EXPECT_EQ(error_of([&] { ops::rms_norm_forward(y, rstd, x, w, 1e-5); }),
            "[rms_norm_forward] w has shape (4) but x has shape (2, 3); expected w to be (3)");
  Tensor w3 = Tensor::zeros({3}, DType::f64);
  EXPECT_TRUE(contains(error_of([&] { ops::rms_norm_forward(y, rstd, x, w3, 1e-5); }),
                       "[rms_norm_forward] y is f32 (2, 3) but w is f64 (3)"));
  Tensor bf = Tensor::zeros({2, 3}, DType::bf16);
  EXPECT_TRUE(contains(error_of([&] { ops::add(bf, bf, bf); }),
                       "[add] out is bf16 (2, 3); CPU kernels compute in f32 or f64"));
  Tensor undefined;
  EXPECT_TRUE(contains(error_of([&] { ops::copy(undefined, x); }), "[copy] dst is undefined"));
  Tensor x3 = Tensor::zeros({2, 3, 1}, DType::f32);
  EXPECT_TRUE(contains(error_of([&] { ops::add_bias(x3, w); }),
                       "[add_bias] y must have 2 dimensions but has shape (2, 3, 1)"));
}

TEST(OpsChecks, CudaTensorsSayThereIsNoKernelYet) {
  // A host buffer labelled as device memory: the op must refuse it before touching the data.
  Tensor host = Tensor::zeros({2, 3}, DType::f32);
  Tensor dev = Tensor::wrap(host.raw(), {2, 3}, DType::f32, nullptr, Device::cuda);
  Tensor other = Tensor::wrap(host.raw(), {2, 3}, DType::f32, nullptr, Device::cuda);
  // attention_backward (the probabilities form) is CPU-only; training on CUDA uses the lse form.
  std::vector<Tensor> host_bufs, devs;
  for (const Shape& shape :
       {Shape{1, 2, 1, 4}, Shape{1, 2, 1, 4}, Shape{1, 2, 1, 4}, Shape{1, 2, 1, 4},
        Shape{1, 2, 1, 4}, Shape{1, 2, 1, 4}, Shape{1, 2, 1, 4}, Shape{1, 1, 2, 2}}) {
    host_bufs.push_back(Tensor::zeros(shape, DType::f32));
    devs.push_back(Tensor::wrap(host_bufs.back().raw(), shape, DType::f32, nullptr, Device::cuda));
  }
  EXPECT_EQ(error_of([&] {
              ops::attention_backward(devs[0], devs[1], devs[2], devs[3], devs[4], devs[5], devs[6],
                                      devs[7], 1.0);
            }),
            "[attention_backward] no CUDA kernel yet");
  EXPECT_TRUE(contains(error_of([&] { ops::add(dev, host, host); }),
                       "[add] out is f32 (2, 3) cuda but a is f32 (2, 3)"));
}

}  // namespace
}  // namespace tune
