// Ops, part 2: the per-layer ops (RMSNorm, RoPE, SwiGLU, cross-entropy). Each is compared with
// a naive loop written here, at awkward sizes and in f32 and f64; backward ops against central
// finite differences of <dy, y> in f64.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "test_util.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

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

// ---- RMSNorm ----

TEST(OpsRmsNorm, ForwardMatchesLoop) {
  uint64_t seed = 1;
  for (DType dt : kFloatTypes) {
    for (int64_t n : {1, 7, 31, 33, 300}) {
      for (int64_t c : {1, 5, 67}) {
        const Tensor x = randn({n, c}, dt, seed++), w = randn({c}, dt, seed++);
        Tensor y = test::full({n, c}, dt, NAN), rstd = test::full({n}, dt, NAN);
        ops::rms_norm_forward(y, rstd, x, w, 1e-5);
        Tensor ey = Tensor::empty({n, c}, DType::f64), er = Tensor::empty({n}, DType::f64);
        for (int64_t r = 0; r < n; ++r) {
          double ss = 0;
          for (int64_t j = 0; j < c; ++j) ss += x.item(r * c + j) * x.item(r * c + j);
          const double rs = 1.0 / std::sqrt(ss / c + 1e-5);
          er.data<double>()[r] = rs;
          for (int64_t j = 0; j < c; ++j)
            ey.data<double>()[r * c + j] = x.item(r * c + j) * rs * w.item(j);
        }
        EXPECT_LT(rel_error(y, ey), tolerance(dt)) << n << "x" << c;
        EXPECT_LT(rel_error(rstd, er), tolerance(dt)) << n << "x" << c;
      }
    }
  }
}

TEST(OpsRmsNorm, GradientsMatchFiniteDifferences) {
  for (int64_t n : {1, 7}) {
    for (int64_t c : {1, 5, 67}) {
      Tensor x = randn({n, c}, DType::f64, 100), w = randn({c}, DType::f64, 101);
      const Tensor dy = randn({n, c}, DType::f64, 102);
      auto loss = [&] {
        Tensor y = Tensor::empty({n, c}, DType::f64), rstd = Tensor::empty({n}, DType::f64);
        ops::rms_norm_forward(y, rstd, x, w, 1e-5);
        return dot(dy, y);
      };
      Tensor y = Tensor::empty({n, c}, DType::f64), rstd = Tensor::empty({n}, DType::f64);
      ops::rms_norm_forward(y, rstd, x, w, 1e-5);
      Tensor dx = test::full({n, c}, DType::f64, NAN);
      const Tensor dw0 = randn({c}, DType::f64, 103);
      Tensor dw = dw0.clone();
      ops::rms_norm_backward(dx, dw, dy, x, w, rstd);
      EXPECT_LT(rel_error(dx, fd_gradient(x, loss)), 1e-6) << n << "x" << c;
      // dw accumulates onto what was there.
      Tensor dw_only = dw.clone();
      ops::add_inplace(dw_only, dw0, -1.0);
      EXPECT_LT(rel_error(dw_only, fd_gradient(w, loss)), 1e-6) << n << "x" << c;
    }
  }
}

TEST(OpsRmsNorm, BackwardWithoutWeightGradientAndInPlace) {
  for (DType dt : kFloatTypes) {
    const Tensor x = randn({33, 67}, dt, 200), w = randn({67}, dt, 201);
    const Tensor dy = randn({33, 67}, dt, 202);
    Tensor y = Tensor::empty({33, 67}, dt), rstd = Tensor::empty({33}, dt);
    ops::rms_norm_forward(y, rstd, x, w, 1e-6);
    Tensor dx = Tensor::empty({33, 67}, dt), dw = Tensor::zeros({67}, dt);
    ops::rms_norm_backward(dx, dw, dy, x, w, rstd);
    // A frozen weight: no dw, same dx.
    Tensor dx_frozen = Tensor::empty({33, 67}, dt), no_dw;
    ops::rms_norm_backward(dx_frozen, no_dw, dy, x, w, rstd);
    EXPECT_EQ(rel_error(dx_frozen, dx), 0.0);
    // dx written over dy: same dx and dw.
    Tensor inplace = dy.clone(), dw2 = Tensor::zeros({67}, dt);
    ops::rms_norm_backward(inplace, dw2, inplace, x, w, rstd);
    EXPECT_EQ(rel_error(inplace, dx), 0.0);
    EXPECT_EQ(rel_error(dw2, dw), 0.0);
  }
}

// The fused block forms against the sequence they replace (add, norm; norm backward, add): the
// same bits, written over NaN-filled outputs, at awkward sizes.
bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(OpsRmsNorm, ResidualFormsMatchAddThenNorm) {
  uint64_t seed = 300;
  for (DType dt : kFloatTypes) {
    for (int64_t n : {1, 7, 33, 257}) {
      for (int64_t c : {1, 5, 67, 1000}) {
        SCOPED_TRACE(str(dtype_name(dt), " ", n, "x", c));
        const Tensor x = randn({n, c}, dt, seed++), a = randn({n, c}, dt, seed++);
        const Tensor w = randn({c}, dt, seed++), dy = randn({n, c}, dt, seed++);
        const Tensor res = randn({n, c}, dt, seed++), dw0 = randn({c}, dt, seed++);
        // Unfused.
        Tensor h_ref = Tensor::empty({n, c}, dt), y_ref = Tensor::empty({n, c}, dt);
        Tensor rstd_ref = Tensor::empty({n}, dt);
        ops::add(h_ref, x, a);
        ops::rms_norm_forward(y_ref, rstd_ref, h_ref, w, 1e-5);
        Tensor dx_ref = Tensor::empty({n, c}, dt), dw_ref = dw0.clone();
        ops::rms_norm_backward(dx_ref, dw_ref, dy, h_ref, w, rstd_ref);
        ops::add_inplace(dx_ref, res);
        // Fused.
        Tensor h = test::full({n, c}, dt, NAN), y = test::full({n, c}, dt, NAN);
        Tensor rstd = test::full({n}, dt, NAN);
        ops::add_rms_norm_forward(h, y, rstd, x, a, w, 1e-5);
        EXPECT_TRUE(same_bits(h, h_ref));
        EXPECT_TRUE(same_bits(y, y_ref));
        EXPECT_TRUE(same_bits(rstd, rstd_ref));
        Tensor dx = test::full({n, c}, dt, NAN), dw = dw0.clone();
        ops::rms_norm_backward(dx, dw, dy, h, w, rstd, res);
        EXPECT_TRUE(same_bits(dx, dx_ref));
        EXPECT_TRUE(same_bits(dw, dw_ref));
        // dx over dy, the weight frozen.
        Tensor inplace = dy.clone(), no_dw;
        ops::rms_norm_backward(inplace, no_dw, inplace, h, w, rstd, res);
        EXPECT_TRUE(same_bits(inplace, dx_ref));
      }
    }
  }
}

TEST(OpsRmsNorm, ResidualFormsNameTheirArguments) {
  const Tensor x = Tensor::zeros({2, 3}, DType::f32), w = Tensor::zeros({3}, DType::f32);
  Tensor h = Tensor::zeros({2, 3}, DType::f32), y = Tensor::zeros({2, 3}, DType::f32);
  Tensor rstd = Tensor::zeros({2}, DType::f32), dw;
  const Tensor a = Tensor::zeros({2, 4}, DType::f32);
  EXPECT_EQ(error_of([&] { ops::add_rms_norm_forward(h, y, rstd, x, a, w, 1e-5); }),
            "[add_rms_norm_forward] a has shape (2, 4) but x has shape (2, 3); expected a to be "
            "(2, 3)");
  const Tensor res64 = Tensor::zeros({2, 3}, DType::f64);
  EXPECT_TRUE(contains(error_of([&] { ops::rms_norm_backward(y, dw, h, x, w, rstd, res64); }),
                       "[rms_norm_backward] residual is f64 (2, 3)"));
  EXPECT_TRUE(contains(error_of([&] { ops::rms_norm_backward(y, dw, h, x, w, rstd, y); }),
                       "[rms_norm_backward] dx overlaps residual in memory"));
}

// ---- RoPE ----

// cos/sin tables (P, D/2) for base 10000, as Hugging Face's rotary embedding builds them.
void rope_tables(Tensor& cos, Tensor& sin, int64_t positions, int64_t d, DType dt) {
  cos = Tensor::empty({positions, d / 2}, DType::f64);
  sin = Tensor::empty({positions, d / 2}, DType::f64);
  for (int64_t p = 0; p < positions; ++p) {
    for (int64_t i = 0; i < d / 2; ++i) {
      const double angle = p * std::pow(10000.0, -2.0 * i / d);
      cos.data<double>()[p * d / 2 + i] = std::cos(angle);
      sin.data<double>()[p * d / 2 + i] = std::sin(angle);
    }
  }
  cos = cos.to(dt);
  sin = sin.to(dt);
}

TEST(OpsRope, ForwardMatchesRotateHalfAndBackwardInvertsIt) {
  uint64_t seed = 300;
  for (DType dt : kFloatTypes) {
    for (DType it : {DType::i64, DType::i32}) {
      for (int64_t t : {1, 7, 33, 300}) {  // 300: big enough to run in parallel
        const int64_t b = 2, h = 3, d = 10, table = 50;
        Tensor cos, sin;
        rope_tables(cos, sin, table, d, dt);
        const Tensor positions = test::randint({b, t}, table, seed++).to(it);
        const Tensor x0 = randn({b, t, h, d}, dt, seed++);
        Tensor x = x0.clone();
        ops::rope_forward(x, cos, sin, positions);
        Tensor expected = Tensor::empty(x.shape(), DType::f64);
        for (int64_t bt = 0; bt < b * t; ++bt) {
          const auto pos = static_cast<int64_t>(positions.item(bt));
          for (int64_t head = 0; head < h; ++head) {
            const int64_t base = (bt * h + head) * d;
            for (int64_t i = 0; i < d / 2; ++i) {
              const double c = cos.item(pos * d / 2 + i), s = sin.item(pos * d / 2 + i);
              const double x1 = x0.item(base + i), x2 = x0.item(base + i + d / 2);
              expected.data<double>()[base + i] = x1 * c - x2 * s;
              expected.data<double>()[base + i + d / 2] = x2 * c + x1 * s;
            }
          }
        }
        EXPECT_LT(rel_error(x, expected), tolerance(dt) * 2);
        ops::rope_backward(x, cos, sin, positions);  // the rotation is orthogonal
        EXPECT_LT(rel_error(x, x0), tolerance(dt) * 2);
      }
    }
  }
}

TEST(OpsRope, BackwardMatchesFiniteDifferences) {
  const int64_t b = 2, t = 5, h = 2, d = 6;
  Tensor cos, sin;
  rope_tables(cos, sin, 9, d, DType::f64);
  const Tensor positions = Tensor::from_i64({b, t}, {0, 1, 2, 3, 4, 8, 3, 3, 0, 7});
  Tensor x = randn({b, t, h, d}, DType::f64, 400);
  const Tensor dy = randn({b, t, h, d}, DType::f64, 401);
  auto loss = [&] {
    Tensor y = x.clone();
    ops::rope_forward(y, cos, sin, positions);
    return dot(dy, y);
  };
  Tensor dx = dy.clone();
  ops::rope_backward(dx, cos, sin, positions);
  EXPECT_LT(rel_error(dx, fd_gradient(x, loss)), 1e-6);
}

TEST(OpsRope, RejectsPositionsBeyondTheTablesAndOddHeads) {
  Tensor cos, sin;
  rope_tables(cos, sin, 4, 8, DType::f32);
  Tensor x = Tensor::zeros({1, 3, 2, 8}, DType::f32);
  const std::string msg = error_of([&] {
    ops::rope_forward(x, cos, sin, Tensor::from_i64({1, 3}, {0, 1, 4}));
  });
  EXPECT_TRUE(contains(msg, "[rope_forward] position 4 at (b, t) = (0, 2)"));
  EXPECT_TRUE(contains(msg, "4 rows"));
  Tensor odd = Tensor::zeros({1, 3, 2, 7}, DType::f32);
  EXPECT_TRUE(
      contains(error_of([&] {
                 ops::rope_backward(odd, cos, sin, Tensor::from_i64({1, 3}, {0, 1, 2}));
               }),
               "[rope_backward] dx has shape (1, 3, 2, 7); the head dimension must be even"));
  Tensor narrow_cos = Tensor::zeros({4, 3}, DType::f32);
  EXPECT_TRUE(contains(error_of([&] {
                         ops::rope_forward(x, narrow_cos, sin, Tensor::from_i64({1, 3}, {0, 1, 2}));
                       }),
                       "[rope_forward] cos has shape (4, 3) but x has shape (1, 3, 2, 8); expected "
                       "cos to be (4, 4)"));
}

// ---- SwiGLU ----

TEST(OpsSwiglu, ForwardMatchesLoop) {
  uint64_t seed = 500;
  for (DType dt : kFloatTypes) {
    for (int64_t n : {1, 7, 31, 33}) {
      for (int64_t f : {1, 5, 67, 1001}) {
        const Tensor g = randn({n, f}, dt, seed++, 3.0), u = randn({n, f}, dt, seed++);
        Tensor h = test::full({n, f}, dt, NAN);
        ops::swiglu_forward(h, g, u);
        Tensor expected = Tensor::empty({n, f}, DType::f64);
        for (int64_t i = 0; i < n * f; ++i) {
          const double gi = g.item(i);
          expected.data<double>()[i] = gi / (1 + std::exp(-gi)) * u.item(i);
        }
        EXPECT_LT(rel_error(h, expected), tolerance(dt) * 2) << n << "x" << f;
      }
    }
  }
}

TEST(OpsSwiglu, GradientsMatchFiniteDifferences) {
  Tensor g = randn({7, 5}, DType::f64, 600, 3.0), u = randn({7, 5}, DType::f64, 601);
  const Tensor dh = randn({7, 5}, DType::f64, 602);
  auto loss = [&] {
    Tensor h = Tensor::empty({7, 5}, DType::f64);
    ops::swiglu_forward(h, g, u);
    return dot(dh, h);
  };
  Tensor dg = test::full({7, 5}, DType::f64, NAN), du = test::full({7, 5}, DType::f64, NAN);
  ops::swiglu_backward(dg, du, dh, g, u);
  EXPECT_LT(rel_error(dg, fd_gradient(g, loss)), 1e-6);
  EXPECT_LT(rel_error(du, fd_gradient(u, loss)), 1e-6);
  // Gradients written over their inputs (the MLP's memory-saving path) give the same values.
  Tensor g2 = g.clone(), u2 = u.clone();
  ops::swiglu_backward(g2, u2, dh, g2, u2);
  EXPECT_EQ(rel_error(g2, dg), 0.0);
  EXPECT_EQ(rel_error(u2, du), 0.0);
}

// ---- LayerNorm ----

TEST(OpsLayerNorm, ForwardMatchesLoop) {
  uint64_t seed = 700;
  for (DType dt : kFloatTypes) {
    for (int64_t n : {1, 7, 31, 33}) {
      for (int64_t c : {1, 7, 31, 33, 67}) {
        const Tensor x = randn({n, c}, dt, seed++, 2.0), w = randn({c}, dt, seed++),
                     b = randn({c}, dt, seed++);
        Tensor y = test::full({n, c}, dt, NAN), mean = test::full({n}, dt, NAN),
               rstd = test::full({n}, dt, NAN);
        ops::layer_norm_forward(y, mean, rstd, x, w, b, 1e-5);
        Tensor ey = Tensor::empty({n, c}, DType::f64), em = Tensor::empty({n}, DType::f64),
               er = Tensor::empty({n}, DType::f64);
        for (int64_t r = 0; r < n; ++r) {
          double mu = 0, var = 0;
          for (int64_t j = 0; j < c; ++j) mu += x.item(r * c + j) / c;
          for (int64_t j = 0; j < c; ++j) var += std::pow(x.item(r * c + j) - mu, 2) / c;
          const double rs = 1.0 / std::sqrt(var + 1e-5);
          em.data<double>()[r] = mu;
          er.data<double>()[r] = rs;
          for (int64_t j = 0; j < c; ++j)
            ey.data<double>()[r * c + j] = (x.item(r * c + j) - mu) * rs * w.item(j) + b.item(j);
        }
        EXPECT_LT(rel_error(y, ey), tolerance(dt) * 2) << n << "x" << c;
        EXPECT_LT(rel_error(rstd, er), tolerance(dt)) << n << "x" << c;
        EXPECT_LT(rel_error(mean, em), tolerance(dt) * 4) << n << "x" << c;
      }
    }
  }
}

TEST(OpsLayerNorm, GradientsMatchFiniteDifferences) {
  for (int64_t n : {1, 7, 31, 33}) {
    for (int64_t c : {2, 7, 33}) {
      Tensor x = randn({n, c}, DType::f64, 800), w = randn({c}, DType::f64, 801),
             b = randn({c}, DType::f64, 802);
      const Tensor dy = randn({n, c}, DType::f64, 803);
      auto loss = [&] {
        Tensor y = Tensor::empty({n, c}, DType::f64), m = Tensor::empty({n}, DType::f64),
               r = Tensor::empty({n}, DType::f64);
        ops::layer_norm_forward(y, m, r, x, w, b, 1e-5);
        return dot(dy, y);
      };
      Tensor y = Tensor::empty({n, c}, DType::f64), mean = Tensor::empty({n}, DType::f64),
             rstd = Tensor::empty({n}, DType::f64);
      ops::layer_norm_forward(y, mean, rstd, x, w, b, 1e-5);
      Tensor dx = test::full({n, c}, DType::f64, NAN);
      const Tensor dw0 = randn({c}, DType::f64, 804), db0 = randn({c}, DType::f64, 805);
      Tensor dw = dw0.clone(), db = db0.clone();
      ops::layer_norm_backward(dx, dw, db, dy, x, w, mean, rstd);
      EXPECT_LT(rel_error(dx, fd_gradient(x, loss)), 1e-6) << n << "x" << c;
      // dw and db accumulate onto what was there.
      ops::add_inplace(dw, dw0, -1.0);
      ops::add_inplace(db, db0, -1.0);
      EXPECT_LT(rel_error(dw, fd_gradient(w, loss)), 1e-6) << n << "x" << c;
      EXPECT_LT(rel_error(db, fd_gradient(b, loss)), 1e-6) << n << "x" << c;
    }
  }
}

TEST(OpsLayerNorm, BackwardWithoutParameterGradientsAndInPlace) {
  for (DType dt : kFloatTypes) {
    const Tensor x = randn({33, 67}, dt, 900), w = randn({67}, dt, 901), b = randn({67}, dt, 902);
    const Tensor dy = randn({33, 67}, dt, 903);
    Tensor y = Tensor::empty({33, 67}, dt), mean = Tensor::empty({33}, dt),
           rstd = Tensor::empty({33}, dt);
    ops::layer_norm_forward(y, mean, rstd, x, w, b, 1e-5);
    Tensor dx = Tensor::empty({33, 67}, dt), dw = Tensor::zeros({67}, dt),
           db = Tensor::zeros({67}, dt);
    ops::layer_norm_backward(dx, dw, db, dy, x, w, mean, rstd);
    Tensor dx_frozen = Tensor::empty({33, 67}, dt), none_w, none_b;
    ops::layer_norm_backward(dx_frozen, none_w, none_b, dy, x, w, mean, rstd);
    EXPECT_EQ(rel_error(dx_frozen, dx), 0.0);
    Tensor inplace = dy.clone(), dw2 = Tensor::zeros({67}, dt), db2 = Tensor::zeros({67}, dt);
    ops::layer_norm_backward(inplace, dw2, db2, inplace, x, w, mean, rstd);
    EXPECT_EQ(rel_error(inplace, dx), 0.0);
    EXPECT_EQ(rel_error(dw2, dw), 0.0);
    EXPECT_EQ(rel_error(db2, db), 0.0);
  }
}

// The fused block forms against add, norm; norm backward, add (same_bits, above).
TEST(OpsLayerNorm, ResidualFormsMatchAddThenNorm) {
  uint64_t seed = 950;
  for (DType dt : kFloatTypes) {
    for (int64_t n : {1, 7, 33, 257}) {
      for (int64_t c : {1, 5, 67, 1000}) {
        SCOPED_TRACE(str(dtype_name(dt), " ", n, "x", c));
        const Tensor x = randn({n, c}, dt, seed++, 2.0), a = randn({n, c}, dt, seed++);
        const Tensor w = randn({c}, dt, seed++), b = randn({c}, dt, seed++);
        const Tensor dy = randn({n, c}, dt, seed++), res = randn({n, c}, dt, seed++);
        const Tensor dw0 = randn({c}, dt, seed++), db0 = randn({c}, dt, seed++);
        // Unfused.
        Tensor h_ref = Tensor::empty({n, c}, dt), y_ref = Tensor::empty({n, c}, dt);
        Tensor mean_ref = Tensor::empty({n}, dt), rstd_ref = Tensor::empty({n}, dt);
        ops::add(h_ref, x, a);
        ops::layer_norm_forward(y_ref, mean_ref, rstd_ref, h_ref, w, b, 1e-5);
        Tensor dx_ref = Tensor::empty({n, c}, dt), dw_ref = dw0.clone(), db_ref = db0.clone();
        ops::layer_norm_backward(dx_ref, dw_ref, db_ref, dy, h_ref, w, mean_ref, rstd_ref);
        ops::add_inplace(dx_ref, res);
        // Fused.
        Tensor h = test::full({n, c}, dt, NAN), y = test::full({n, c}, dt, NAN);
        Tensor mean = test::full({n}, dt, NAN), rstd = test::full({n}, dt, NAN);
        ops::add_layer_norm_forward(h, y, mean, rstd, x, a, w, b, 1e-5);
        EXPECT_TRUE(same_bits(h, h_ref));
        EXPECT_TRUE(same_bits(y, y_ref));
        EXPECT_TRUE(same_bits(mean, mean_ref));
        EXPECT_TRUE(same_bits(rstd, rstd_ref));
        Tensor dx = test::full({n, c}, dt, NAN), dw = dw0.clone(), db = db0.clone();
        ops::layer_norm_backward(dx, dw, db, dy, h, w, mean, rstd, res);
        EXPECT_TRUE(same_bits(dx, dx_ref));
        EXPECT_TRUE(same_bits(dw, dw_ref));
        EXPECT_TRUE(same_bits(db, db_ref));
        // dx over dy, weight and bias frozen.
        Tensor inplace = dy.clone(), no_dw, no_db;
        ops::layer_norm_backward(inplace, no_dw, no_db, inplace, h, w, mean, rstd, res);
        EXPECT_TRUE(same_bits(inplace, dx_ref));
      }
    }
  }
}

TEST(OpsLayerNorm, ResidualFormsNameTheirArguments) {
  const Tensor x = Tensor::zeros({2, 3}, DType::f32), w = Tensor::zeros({3}, DType::f32);
  const Tensor b = Tensor::zeros({3}, DType::f32);
  Tensor h = Tensor::zeros({2, 3}, DType::f32), y = Tensor::zeros({2, 3}, DType::f32);
  Tensor mean = Tensor::zeros({2}, DType::f32), rstd = Tensor::zeros({2}, DType::f32), dw, db;
  const Tensor a = Tensor::zeros({2, 4}, DType::f32);
  EXPECT_EQ(error_of([&] { ops::add_layer_norm_forward(h, y, mean, rstd, x, a, w, b, 1e-5); }),
            "[add_layer_norm_forward] a has shape (2, 4) but x has shape (2, 3); expected a to be "
            "(2, 3)");
  const Tensor res64 = Tensor::zeros({2, 3}, DType::f64);
  EXPECT_TRUE(
      contains(error_of([&] { ops::layer_norm_backward(y, dw, db, h, x, w, mean, rstd, res64); }),
               "[layer_norm_backward] residual is f64 (2, 3)"));
  EXPECT_TRUE(
      contains(error_of([&] { ops::layer_norm_backward(y, dw, db, h, x, w, mean, rstd, y); }),
               "[layer_norm_backward] dx overlaps residual in memory"));
}

TEST(OpsLayerNorm, ShapeErrorsNameTheOp) {
  Tensor x = Tensor::zeros({3, 4}, DType::f32), y = Tensor::zeros({3, 4}, DType::f32);
  Tensor m = Tensor::zeros({3}, DType::f32), r = Tensor::zeros({3}, DType::f32);
  Tensor w = Tensor::zeros({4}, DType::f32), b = Tensor::zeros({5}, DType::f32);
  EXPECT_THROW(ops::layer_norm_forward(y, m, r, x, w, b, 1e-5), Error);
  EXPECT_TRUE(contains(error_of([&] { ops::layer_norm_forward(y, m, r, x, w, b, 1e-5); }),
                       "layer_norm_forward"));
}

// ---- GELU (tanh approximation) ----

double gelu_tanh_ref(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

TEST(OpsGeluTanh, ForwardMatchesLoop) {
  uint64_t seed = 1000;
  for (DType dt : kFloatTypes) {
    for (int64_t n : {1, 7, 31, 33}) {
      for (int64_t f : {1, 5, 67, 1001}) {
        const Tensor x = randn({n, f}, dt, seed++, 3.0);
        Tensor y = test::full({n, f}, dt, NAN);
        ops::gelu_tanh_forward(y, x);
        Tensor expected = Tensor::empty({n, f}, DType::f64);
        for (int64_t i = 0; i < n * f; ++i) expected.data<double>()[i] = gelu_tanh_ref(x.item(i));
        EXPECT_LT(rel_error(y, expected), tolerance(dt) * 2) << n << "x" << f;
      }
    }
  }
}

TEST(OpsGeluTanh, GradientsMatchFiniteDifferences) {
  for (int64_t n : {1, 7, 31, 33}) {
    Tensor x = randn({n, 5}, DType::f64, 1100 + n, 3.0);
    const Tensor dy = randn({n, 5}, DType::f64, 1200 + n);
    auto loss = [&] {
      Tensor y = Tensor::empty({n, 5}, DType::f64);
      ops::gelu_tanh_forward(y, x);
      return dot(dy, y);
    };
    Tensor dx = test::full({n, 5}, DType::f64, NAN);
    ops::gelu_tanh_backward(dx, dy, x);
    EXPECT_LT(rel_error(dx, fd_gradient(x, loss)), 1e-6) << n;
    // Written over dy: same values.
    Tensor inplace = dy.clone();
    ops::gelu_tanh_backward(inplace, inplace, x);
    EXPECT_EQ(rel_error(inplace, dx), 0.0);
  }
}

// ---- column blocks (GPT-2's fused q|k|v) ----

TEST(OpsColumns, SliceAndWriteAreInverse) {
  for (DType dt : kFloatTypes) {
    for (int64_t n : {1, 7, 33}) {
      const Tensor x = randn({n, 9}, dt, 1300 + n);
      Tensor back = test::full({n, 9}, dt, NAN);
      for (int64_t start : {0, 3, 6}) {
        Tensor part = test::full({n, 3}, dt, NAN);
        ops::slice_columns(part, x, start);
        for (int64_t r = 0; r < n; ++r)
          for (int64_t j = 0; j < 3; ++j)
            EXPECT_EQ(part.item(r * 3 + j), x.item(r * 9 + start + j));
        ops::write_columns(back, start, part);
      }
      EXPECT_EQ(rel_error(back, x), 0.0);
    }
  }
  Tensor x = Tensor::zeros({4, 9}, DType::f32), part = Tensor::zeros({4, 3}, DType::f32);
  EXPECT_TRUE(contains(error_of([&] { ops::slice_columns(part, x, 7); }), "slice_columns"));
}

// ---- cross-entropy ----

// Sum over counted rows of -log softmax(logits)[target], and its gradient, in f64.
double naive_cross_entropy(const Tensor& logits, const Tensor& targets, double grad_scale,
                           Tensor* dlogits) {
  const int64_t n = logits.size(0), v = logits.size(1);
  double total = 0;
  *dlogits = Tensor::zeros({n, v}, DType::f64);
  for (int64_t r = 0; r < n; ++r) {
    const auto t = static_cast<int64_t>(targets.item(r));
    if (t == -100) continue;
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < v; ++j) m = std::max(m, logits.item(r * v + j));
    for (int64_t j = 0; j < v; ++j) s += std::exp(logits.item(r * v + j) - m);
    const double lse = m + std::log(s);
    total += lse - logits.item(r * v + t);
    for (int64_t j = 0; j < v; ++j) {
      dlogits->data<double>()[r * v + j] =
          grad_scale * (std::exp(logits.item(r * v + j) - lse) - (j == t ? 1.0 : 0.0));
    }
  }
  return total;
}

TEST(OpsCrossEntropy, MatchesLoopWithIgnoredRows) {
  uint64_t seed = 700;
  for (DType dt : kFloatTypes) {
    for (DType it : {DType::i64, DType::i32}) {
      for (int64_t n : {1, 7, 31, 33}) {
        for (int64_t v : {1, 5, 67, 1000}) {
          const Tensor logits = randn({n, v}, dt, seed++, 4.0);
          Tensor targets = test::randint({n}, v, seed++);
          for (int64_t r = 1; r < n; r += 3) targets.data<int64_t>()[r] = -100;
          targets = targets.to(it);
          Tensor dlogits = test::full({n, v}, dt, NAN), expected;
          const double loss = ops::cross_entropy(dlogits, logits, targets, 0.25);
          const double expected_loss = naive_cross_entropy(logits, targets, 0.25, &expected);
          EXPECT_NEAR(loss, expected_loss, (dt == DType::f32 ? 1e-5 : 1e-12) * (1 + expected_loss))
              << n << "x" << v;
          EXPECT_LT(rel_error(dlogits, expected), dt == DType::f32 ? 1e-5 : 1e-12) << n << "x" << v;
          // Without dlogits only the loss is computed.
          Tensor none;
          EXPECT_EQ(ops::cross_entropy(none, logits, targets, 0.25), loss);
          // dlogits written over logits: same loss and gradient.
          Tensor inplace = logits.clone();
          EXPECT_EQ(ops::cross_entropy(inplace, inplace, targets, 0.25), loss);
          EXPECT_EQ(rel_error(inplace, dlogits), 0.0);
        }
      }
    }
  }
}

TEST(OpsCrossEntropy, GradientMatchesFiniteDifferences) {
  Tensor logits = randn({7, 11}, DType::f64, 800, 3.0);
  const Tensor targets = Tensor::from_i64({7}, {3, -100, 0, 10, -100, 5, 5});
  const double grad_scale = 1.0 / 5;  // 1 / count_targets, as a mean loss would use
  auto loss = [&] {
    Tensor none;
    return grad_scale * ops::cross_entropy(none, logits, targets, grad_scale);
  };
  Tensor dlogits = Tensor::empty({7, 11}, DType::f64);
  ops::cross_entropy(dlogits, logits, targets, grad_scale);
  EXPECT_LT(rel_error(dlogits, fd_gradient(logits, loss)), 1e-6);
  for (int64_t j = 0; j < 11; ++j) EXPECT_EQ(dlogits.item(11 + j), 0.0) << "ignored row";
}

TEST(OpsCrossEntropy, CountsTargetsAndRejectsBadOnes) {
  const Tensor targets = Tensor::from_i64({5}, {1, -100, 2, -100, 0});
  EXPECT_EQ(ops::count_targets(targets), 3);
  EXPECT_EQ(ops::count_targets(targets.to(DType::i32)), 3);
  const Tensor logits = Tensor::zeros({3, 4}, DType::f32);
  Tensor none;
  const std::string msg = error_of([&] {
    ops::cross_entropy(none, logits, Tensor::from_i64({3}, {0, 4, 1}), 1.0);
  });
  EXPECT_TRUE(contains(msg, "[cross_entropy] target 4 at row 1 is outside [0, 4)"));
  EXPECT_TRUE(contains(error_of([&] {
                         ops::cross_entropy(none, logits, Tensor::from_i64({3}, {0, -1, 1}), 1.0);
                       }),
                       "target -1 at row 1"));
  // Uniform logits: each counted row costs log(V).
  EXPECT_NEAR(ops::cross_entropy(none, logits, Tensor::from_i64({3}, {0, -100, 3}), 1.0),
              2 * std::log(4.0), 1e-6);
}

TEST(OpsCrossEntropy, InPlaceOrApartButNeverAPartialOverlap) {
  // dlogits may be logits itself (training saves the (N, V) buffer), not a shifted view of it.
  Tensor buf = Tensor::zeros({4 * 4}, DType::f32);
  Tensor logits = buf.narrow(0, 12).view({3, 4}), shifted = buf.narrow(4, 12).view({3, 4});
  const Tensor targets = Tensor::from_i64({3}, {0, 1, 2});
  EXPECT_TRUE(contains(error_of([&] { ops::cross_entropy(shifted, logits, targets, 1.0); }),
                       "[cross_entropy] dlogits overlaps logits"));
  EXPECT_NEAR(ops::cross_entropy(logits, logits, targets, 1.0), 3 * std::log(4.0), 1e-6);
}

}  // namespace
}  // namespace tune
