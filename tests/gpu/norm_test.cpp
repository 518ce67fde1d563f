// ops::rms_norm_*, add_rms_norm_forward, layer_norm_* and add_layer_norm_forward on the GPU
// against the CPU op in f64 on the same rounded inputs, at awkward sizes, with every output placed
// inside a larger device buffer whose sentinels must survive (a pad of 37 elements leaves the
// outputs misaligned for 128-bit access, 64 keeps them aligned, so both the scalar and the
// vectorised kernels are exercised). f32 must match to 1e-5 (relative, whole tensor), bf16 and f16
// to 2e-2.
#include <gtest/gtest.h>

#include "gpu/gpu_test_util.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using test::fetch;
using test::place;
using test::Placed;
using test::rounded;
using test::to_device;

Tensor to_host_f64(const Tensor& device) {
  Tensor h = Tensor::empty(device.shape(), device.dtype());
  h.copy_from(device);
  return h.to(DType::f64);
}

// A device tensor of `shape` in the middle of a buffer of sentinels, holding `init` if defined.
// The placed tensor back on the host in f64, after checking its sentinels.
void check(DType dtype, int64_t n, int64_t c, int64_t pad) {
  SCOPED_TRACE(str(dtype_name(dtype), " n=", n, " c=", c, " pad=", pad));
  const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
  const double eps = 1e-5;
  const uint64_t seed = static_cast<uint64_t>(n * 1000003 + c * 1009 + pad);
  const Tensor x = rounded({n, c}, dtype, seed), w = rounded({c}, dtype, seed + 1);
  const Tensor dy = rounded({n, c}, dtype, seed + 2), dw0 = rounded({c}, dtype, seed + 3);

  // Forward.
  Tensor y_ref = Tensor::empty({n, c}, DType::f64), rstd_ref = Tensor::empty({n}, DType::f64);
  ops::rms_norm_forward(y_ref, rstd_ref, x, w, eps);
  const Tensor dx_dev = to_device(x, dtype), dw_dev = to_device(w, dtype);
  Placed y = place({n, c}, dtype, pad), rstd = place({n}, DType::f32, pad);
  ops::rms_norm_forward(y.view, rstd.view, dx_dev, dw_dev, eps);
  EXPECT_LE(test::rel_error(fetch(y, {n, c}, "y"), y_ref), tol);
  EXPECT_LE(test::rel_error(fetch(rstd, {n}, "rstd"), rstd_ref), dtype == DType::f32 ? 1e-5 : 1e-4);

  // Backward, both sides from the f32-rounded rstd the GPU keeps.
  const Tensor rstd32 = rstd_ref.to(DType::f32).to(DType::f64);
  Tensor dx_ref = Tensor::empty({n, c}, DType::f64), dw_ref = dw0.clone();
  ops::rms_norm_backward(dx_ref, dw_ref, dy, x, w, rstd32);
  const Tensor dy_dev = to_device(dy, dtype), rstd_dev = to_device(rstd32, DType::f32);
  Placed dx = place({n, c}, dtype, pad), dw = place({c}, dtype, pad, dw0);
  ops::rms_norm_backward(dx.view, dw.view, dy_dev, dx_dev, dw_dev, rstd_dev);
  EXPECT_LE(test::rel_error(fetch(dx, {n, c}, "dx"), dx_ref), tol);
  EXPECT_LE(test::rel_error(fetch(dw, {c}, "dw"), dw_ref), tol);
}

TEST(CudaRmsNorm, MatchesCpuAtAwkwardSizes) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (int64_t n : {1, 7, 33, 257, 4097}) {
      for (int64_t c : {64, 80, 128, 256}) {
        check(dtype, n, c, 37);
        check(dtype, n, c, 64);
      }
    }
    check(dtype, 4097, 4096, 64);
    check(dtype, 33, 4096, 37);
  }
}

TEST(CudaRmsNorm, BackwardInPlaceFrozenAndDeterministic) {
  const int64_t n = 1031, c = 256;
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
    const Tensor x = rounded({n, c}, dtype, 1), w = rounded({c}, dtype, 2);
    const Tensor dy = rounded({n, c}, dtype, 3), dw0 = rounded({c}, dtype, 4);
    Tensor rstd = Tensor::empty({n}, DType::f64), y = Tensor::empty({n, c}, DType::f64);
    ops::rms_norm_forward(y, rstd, x, w, 1e-6);
    rstd = rstd.to(DType::f32).to(DType::f64);
    Tensor dx_ref = Tensor::empty({n, c}, DType::f64), dw_ref = dw0.clone();
    ops::rms_norm_backward(dx_ref, dw_ref, dy, x, w, rstd);

    const Tensor xd = to_device(x, dtype), wd = to_device(w, dtype);
    const Tensor rd = to_device(rstd, DType::f32);
    // dx aliasing dy, weight frozen (dw undefined).
    Tensor inplace = to_device(dy, dtype);
    Tensor no_dw;
    ops::rms_norm_backward(inplace, no_dw, inplace, xd, wd, rd);
    EXPECT_LE(test::rel_error(to_host_f64(inplace), dx_ref), tol);
    // dw bitwise the same on every run.
    const Tensor dyd = to_device(dy, dtype);
    Tensor dx = Tensor::empty({n, c}, dtype, Device::cuda);
    Tensor dw1 = to_device(dw0, dtype), dw2 = to_device(dw0, dtype);
    ops::rms_norm_backward(dx, dw1, dyd, xd, wd, rd);
    ops::rms_norm_backward(dx, dw2, dyd, xd, wd, rd);
    const Tensor h1 = to_host_f64(dw1);
    const Tensor h2 = to_host_f64(dw2);
    EXPECT_EQ(test::max_abs_diff(h1, h2), 0.0);
    EXPECT_LE(test::rel_error(h1, dw_ref), tol);
  }
}

TEST(CudaRmsNorm, RejectsNonF32RstdAndMixedDtypes) {
  Tensor x = Tensor::zeros({4, 8}, DType::bf16, Device::cuda);
  Tensor w = Tensor::zeros({8}, DType::bf16, Device::cuda);
  Tensor y = Tensor::zeros({4, 8}, DType::bf16, Device::cuda);
  Tensor rstd_bf16 = Tensor::zeros({4}, DType::bf16, Device::cuda);
  EXPECT_THROW(ops::rms_norm_forward(y, rstd_bf16, x, w, 1e-5), Error);
  Tensor rstd = Tensor::zeros({4}, DType::f32, Device::cuda);
  Tensor w32 = Tensor::zeros({8}, DType::f32, Device::cuda);
  EXPECT_THROW(ops::rms_norm_forward(y, rstd, x, w32, 1e-5), Error);
  EXPECT_NO_THROW(ops::rms_norm_forward(y, rstd, x, w, 1e-5));
}

// Elements that differ (NaN counts as differing): the fused forms must reproduce the unfused
// sequence bit for bit.
int64_t differences(const Tensor& a, const Tensor& b) {
  int64_t n = 0;
  for (int64_t i = 0; i < a.numel(); ++i) n += !(a.item(i) == b.item(i));
  return n;
}

// The residual forms (add_rms_norm_forward; rms_norm_backward with a residual) as check() above,
// against the CPU's unfused sequence in f64 (h = x + a rounded to dtype as the device rounds it),
// and against the device's own unfused sequence (add, norm; norm backward, add_inplace) into
// buffers placed alike, so that the same kernels run: that must match bit for bit.
void check_residual(DType dtype, int64_t n, int64_t c, int64_t pad) {
  SCOPED_TRACE(str("residual ", dtype_name(dtype), " n=", n, " c=", c, " pad=", pad));
  const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
  const double eps = 1e-5;
  const uint64_t seed = static_cast<uint64_t>(n * 1000003 + c * 1009 + pad + 29);
  const Tensor x = rounded({n, c}, dtype, seed), a = rounded({n, c}, dtype, seed + 1);
  const Tensor w = rounded({c}, dtype, seed + 2), dy = rounded({n, c}, dtype, seed + 3);
  const Tensor res = rounded({n, c}, dtype, seed + 4), dw0 = rounded({c}, dtype, seed + 5);

  // Forward. x + a is exact in f64; rounded to f32, then to dtype, it is the device's sum.
  Tensor h_ref = Tensor::empty({n, c}, DType::f64);
  ops::add(h_ref, x, a);
  h_ref = h_ref.to(DType::f32).to(dtype).to(DType::f64);
  Tensor y_ref = Tensor::empty({n, c}, DType::f64), rstd_ref = Tensor::empty({n}, DType::f64);
  ops::rms_norm_forward(y_ref, rstd_ref, h_ref, w, eps);
  const Tensor xd = to_device(x, dtype), ad = to_device(a, dtype), wd = to_device(w, dtype);
  Placed h = place({n, c}, dtype, pad), y = place({n, c}, dtype, pad),
         rstd = place({n}, DType::f32, pad);
  ops::add_rms_norm_forward(h.view, y.view, rstd.view, xd, ad, wd, eps);
  const Tensor h_got = fetch(h, {n, c}, "h"), y_got = fetch(y, {n, c}, "y");
  const Tensor rstd_got = fetch(rstd, {n}, "rstd");
  EXPECT_EQ(differences(h_got, h_ref), 0);
  EXPECT_LE(test::rel_error(y_got, y_ref), tol);
  EXPECT_LE(test::rel_error(rstd_got, rstd_ref), dtype == DType::f32 ? 1e-5 : 1e-4);
  Placed hu = place({n, c}, dtype, pad), yu = place({n, c}, dtype, pad),
         ru = place({n}, DType::f32, pad);
  ops::add(hu.view, xd, ad);
  ops::rms_norm_forward(yu.view, ru.view, hu.view, wd, eps);
  EXPECT_EQ(differences(fetch(hu, {n, c}, "h unfused"), h_got), 0);
  EXPECT_EQ(differences(fetch(yu, {n, c}, "y unfused"), y_got), 0);
  EXPECT_EQ(differences(fetch(ru, {n}, "rstd unfused"), rstd_got), 0);

  // Backward, both sides from the f32-rounded rstd the GPU keeps.
  const Tensor rstd32 = rstd_ref.to(DType::f32).to(DType::f64);
  Tensor dx_ref = Tensor::empty({n, c}, DType::f64), dw_ref = dw0.clone();
  ops::rms_norm_backward(dx_ref, dw_ref, dy, h_ref, w, rstd32, res);
  const Tensor dyd = to_device(dy, dtype), hd = to_device(h_ref, dtype);
  const Tensor resd = to_device(res, dtype), rd = to_device(rstd32, DType::f32);
  Placed dx = place({n, c}, dtype, pad), dw = place({c}, dtype, pad, dw0);
  ops::rms_norm_backward(dx.view, dw.view, dyd, hd, wd, rd, resd);
  const Tensor dx_got = fetch(dx, {n, c}, "dx"), dw_got = fetch(dw, {c}, "dw");
  EXPECT_LE(test::rel_error(dx_got, dx_ref), tol);
  EXPECT_LE(test::rel_error(dw_got, dw_ref), tol);
  Placed dxu = place({n, c}, dtype, pad), dwu = place({c}, dtype, pad, dw0);
  ops::rms_norm_backward(dxu.view, dwu.view, dyd, hd, wd, rd);
  ops::add_inplace(dxu.view, resd);
  EXPECT_EQ(differences(fetch(dxu, {n, c}, "dx unfused"), dx_got), 0);
  EXPECT_EQ(differences(fetch(dwu, {c}, "dw unfused"), dw_got), 0);
}

TEST(CudaRmsNorm, ResidualFormsMatchCpuAndUnfusedAtAwkwardSizes) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (int64_t n : {1, 7, 33, 257, 4097}) {
      for (int64_t c : {64, 80, 128, 256, 1000}) {
        check_residual(dtype, n, c, 37);
        check_residual(dtype, n, c, 64);
      }
    }
    check_residual(dtype, 4097, 4096, 64);
    check_residual(dtype, 33, 4096, 37);
    check_residual(dtype, 33, 4099, 64);  // odd: the scalar kernels, a block per row
  }
}

// LayerNorm, as check() above: the CPU op in f64 on the same rounded inputs; the backward on both
// sides from the f32-rounded mean and rstd the GPU keeps. x gets an offset so that the mean
// matters.
void check_layer_norm(DType dtype, int64_t n, int64_t c, int64_t pad) {
  SCOPED_TRACE(str("layer_norm ", dtype_name(dtype), " n=", n, " c=", c, " pad=", pad));
  const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
  const double eps = 1e-5;
  const uint64_t seed = static_cast<uint64_t>(n * 1000003 + c * 1009 + pad + 17);
  Tensor xs = test::randn({n, c}, DType::f64, seed);
  for (int64_t i = 0; i < xs.numel(); ++i) xs.data<double>()[i] = 2.0 + 0.5 * xs.data<double>()[i];
  const Tensor xr = xs.to(DType::f32).to(dtype).to(DType::f64);
  const Tensor w = rounded({c}, dtype, seed + 1), b = rounded({c}, dtype, seed + 4);
  const Tensor dy = rounded({n, c}, dtype, seed + 2), dw0 = rounded({c}, dtype, seed + 3);
  const Tensor db0 = rounded({c}, dtype, seed + 5);

  Tensor y_ref = Tensor::empty({n, c}, DType::f64), mean_ref = Tensor::empty({n}, DType::f64),
         rstd_ref = Tensor::empty({n}, DType::f64);
  ops::layer_norm_forward(y_ref, mean_ref, rstd_ref, xr, w, b, eps);
  const Tensor xd = to_device(xr, dtype), wd = to_device(w, dtype), bd = to_device(b, dtype);
  Placed y = place({n, c}, dtype, pad), mean = place({n}, DType::f32, pad),
         rstd = place({n}, DType::f32, pad);
  ops::layer_norm_forward(y.view, mean.view, rstd.view, xd, wd, bd, eps);
  EXPECT_LE(test::rel_error(fetch(y, {n, c}, "y"), y_ref), tol);
  EXPECT_LE(test::rel_error(fetch(mean, {n}, "mean"), mean_ref), 1e-5);
  EXPECT_LE(test::rel_error(fetch(rstd, {n}, "rstd"), rstd_ref), 1e-5);

  const Tensor mean32 = mean_ref.to(DType::f32).to(DType::f64);
  const Tensor rstd32 = rstd_ref.to(DType::f32).to(DType::f64);
  Tensor dx_ref = Tensor::empty({n, c}, DType::f64), dw_ref = dw0.clone(), db_ref = db0.clone();
  ops::layer_norm_backward(dx_ref, dw_ref, db_ref, dy, xr, w, mean32, rstd32);
  const Tensor dyd = to_device(dy, dtype), md = to_device(mean32, DType::f32),
               rd = to_device(rstd32, DType::f32);
  Placed dx = place({n, c}, dtype, pad), dw = place({c}, dtype, pad, dw0),
         db = place({c}, dtype, pad, db0);
  ops::layer_norm_backward(dx.view, dw.view, db.view, dyd, xd, wd, md, rd);
  EXPECT_LE(test::rel_error(fetch(dx, {n, c}, "dx"), dx_ref), tol);
  EXPECT_LE(test::rel_error(fetch(dw, {c}, "dw"), dw_ref), tol);
  EXPECT_LE(test::rel_error(fetch(db, {c}, "db"), db_ref), tol);
}

TEST(CudaLayerNorm, MatchesCpuAtAwkwardSizes) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (int64_t n : {1, 7, 33, 257, 4097}) {
      for (int64_t c : {64, 80, 768, 1600}) {
        check_layer_norm(dtype, n, c, 37);
        check_layer_norm(dtype, n, c, 64);
        if (testing::Test::HasFailure()) return;
      }
    }
    check_layer_norm(dtype, 33, 8192, 64);  // dw, db partials in global memory
    check_layer_norm(dtype, 7, 1, 64);
  }
}

TEST(CudaLayerNorm, BackwardInPlaceFrozenAndDeterministic) {
  const int64_t n = 1031, c = 768;
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
    const Tensor x = rounded({n, c}, dtype, 11), w = rounded({c}, dtype, 12);
    const Tensor b = rounded({c}, dtype, 13), dy = rounded({n, c}, dtype, 14);
    const Tensor dw0 = rounded({c}, dtype, 15), db0 = rounded({c}, dtype, 16);
    Tensor mean = Tensor::empty({n}, DType::f64), rstd = Tensor::empty({n}, DType::f64),
           y = Tensor::empty({n, c}, DType::f64);
    ops::layer_norm_forward(y, mean, rstd, x, w, b, 1e-5);
    mean = mean.to(DType::f32).to(DType::f64);
    rstd = rstd.to(DType::f32).to(DType::f64);
    Tensor dx_ref = Tensor::empty({n, c}, DType::f64), dw_ref = dw0.clone(), db_ref = db0.clone();
    ops::layer_norm_backward(dx_ref, dw_ref, db_ref, dy, x, w, mean, rstd);

    const Tensor xd = to_device(x, dtype), wd = to_device(w, dtype);
    const Tensor md = to_device(mean, DType::f32), rd = to_device(rstd, DType::f32);
    // dx aliasing dy; weight and bias frozen.
    Tensor inplace = to_device(dy, dtype);
    Tensor none_w, none_b;
    ops::layer_norm_backward(inplace, none_w, none_b, inplace, xd, wd, md, rd);
    EXPECT_LE(test::rel_error(to_host_f64(inplace), dx_ref), tol);
    // Only the bias trainable.
    const Tensor dyd = to_device(dy, dtype);
    Tensor dx = Tensor::empty({n, c}, dtype, Device::cuda);
    Tensor db_only = to_device(db0, dtype);
    ops::layer_norm_backward(dx, none_w, db_only, dyd, xd, wd, md, rd);
    EXPECT_LE(test::rel_error(to_host_f64(db_only), db_ref), tol);
    // dw, db bitwise the same on every run.
    Tensor dw1 = to_device(dw0, dtype), dw2 = to_device(dw0, dtype);
    Tensor db1 = to_device(db0, dtype), db2 = to_device(db0, dtype);
    ops::layer_norm_backward(dx, dw1, db1, dyd, xd, wd, md, rd);
    ops::layer_norm_backward(dx, dw2, db2, dyd, xd, wd, md, rd);
    EXPECT_EQ(test::max_abs_diff(to_host_f64(dw1), to_host_f64(dw2)), 0.0);
    EXPECT_EQ(test::max_abs_diff(to_host_f64(db1), to_host_f64(db2)), 0.0);
    EXPECT_LE(test::rel_error(to_host_f64(dw1), dw_ref), tol);
    EXPECT_LE(test::rel_error(to_host_f64(db1), db_ref), tol);
  }
}

// LayerNorm's residual forms (add_layer_norm_forward; layer_norm_backward with a residual) as
// check_residual: against the CPU's unfused sequence in f64, and bit for bit against the device's
// own unfused sequence into buffers placed alike. pad_in places x, a and the residual too (37:
// misaligned, which must not change the outputs' pack width and so their bits).
void check_layer_norm_residual(DType dtype, int64_t n, int64_t c, int64_t pad, int64_t pad_in) {
  SCOPED_TRACE(str("layer_norm residual ", dtype_name(dtype), " n=", n, " c=", c, " pad=", pad,
                   " pad_in=", pad_in));
  const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
  const double eps = 1e-5;
  const uint64_t seed = static_cast<uint64_t>(n * 1000003 + c * 1009 + pad + 31);
  Tensor xs = test::randn({n, c}, DType::f64, seed);
  for (int64_t i = 0; i < xs.numel(); ++i) xs.data<double>()[i] = 2.0 + 0.5 * xs.data<double>()[i];
  const Tensor x = xs.to(DType::f32).to(dtype).to(DType::f64);
  const Tensor a = rounded({n, c}, dtype, seed + 1);
  const Tensor w = rounded({c}, dtype, seed + 2), b = rounded({c}, dtype, seed + 3);
  const Tensor dy = rounded({n, c}, dtype, seed + 4), res = rounded({n, c}, dtype, seed + 5);
  const Tensor dw0 = rounded({c}, dtype, seed + 6), db0 = rounded({c}, dtype, seed + 7);

  // Forward. x + a is exact in f64; rounded to f32, then to dtype, it is the device's sum.
  Tensor h_ref = Tensor::empty({n, c}, DType::f64);
  ops::add(h_ref, x, a);
  h_ref = h_ref.to(DType::f32).to(dtype).to(DType::f64);
  Tensor y_ref = Tensor::empty({n, c}, DType::f64), mean_ref = Tensor::empty({n}, DType::f64),
         rstd_ref = Tensor::empty({n}, DType::f64);
  ops::layer_norm_forward(y_ref, mean_ref, rstd_ref, h_ref, w, b, eps);
  Placed xp = place({n, c}, dtype, pad_in, x), ap = place({n, c}, dtype, pad_in, a);
  const Tensor wd = to_device(w, dtype), bd = to_device(b, dtype);
  Placed h = place({n, c}, dtype, pad), y = place({n, c}, dtype, pad),
         mean = place({n}, DType::f32, pad), rstd = place({n}, DType::f32, pad);
  ops::add_layer_norm_forward(h.view, y.view, mean.view, rstd.view, xp.view, ap.view, wd, bd, eps);
  const Tensor h_got = fetch(h, {n, c}, "h"), y_got = fetch(y, {n, c}, "y");
  const Tensor mean_got = fetch(mean, {n}, "mean"), rstd_got = fetch(rstd, {n}, "rstd");
  EXPECT_EQ(differences(h_got, h_ref), 0);
  EXPECT_LE(test::rel_error(y_got, y_ref), tol);
  EXPECT_LE(test::rel_error(mean_got, mean_ref), 1e-5);
  EXPECT_LE(test::rel_error(rstd_got, rstd_ref), 1e-5);
  Placed hu = place({n, c}, dtype, pad), yu = place({n, c}, dtype, pad),
         mu = place({n}, DType::f32, pad), ru = place({n}, DType::f32, pad);
  ops::add(hu.view, xp.view, ap.view);
  ops::layer_norm_forward(yu.view, mu.view, ru.view, hu.view, wd, bd, eps);
  EXPECT_EQ(differences(fetch(hu, {n, c}, "h unfused"), h_got), 0);
  EXPECT_EQ(differences(fetch(yu, {n, c}, "y unfused"), y_got), 0);
  EXPECT_EQ(differences(fetch(mu, {n}, "mean unfused"), mean_got), 0);
  EXPECT_EQ(differences(fetch(ru, {n}, "rstd unfused"), rstd_got), 0);

  // Backward, both sides from the f32-rounded mean and rstd the GPU keeps.
  const Tensor mean32 = mean_ref.to(DType::f32).to(DType::f64);
  const Tensor rstd32 = rstd_ref.to(DType::f32).to(DType::f64);
  Tensor dx_ref = Tensor::empty({n, c}, DType::f64), dw_ref = dw0.clone(), db_ref = db0.clone();
  ops::layer_norm_backward(dx_ref, dw_ref, db_ref, dy, h_ref, w, mean32, rstd32, res);
  const Tensor dyd = to_device(dy, dtype), hd = to_device(h_ref, dtype);
  const Tensor md = to_device(mean32, DType::f32), rd = to_device(rstd32, DType::f32);
  Placed resp = place({n, c}, dtype, pad_in, res);
  Placed dx = place({n, c}, dtype, pad), dw = place({c}, dtype, pad, dw0),
         db = place({c}, dtype, pad, db0);
  ops::layer_norm_backward(dx.view, dw.view, db.view, dyd, hd, wd, md, rd, resp.view);
  const Tensor dx_got = fetch(dx, {n, c}, "dx"), dw_got = fetch(dw, {c}, "dw"),
               db_got = fetch(db, {c}, "db");
  EXPECT_LE(test::rel_error(dx_got, dx_ref), tol);
  EXPECT_LE(test::rel_error(dw_got, dw_ref), tol);
  EXPECT_LE(test::rel_error(db_got, db_ref), tol);
  Placed dxu = place({n, c}, dtype, pad), dwu = place({c}, dtype, pad, dw0),
         dbu = place({c}, dtype, pad, db0);
  ops::layer_norm_backward(dxu.view, dwu.view, dbu.view, dyd, hd, wd, md, rd);
  ops::add_inplace(dxu.view, resp.view);
  EXPECT_EQ(differences(fetch(dxu, {n, c}, "dx unfused"), dx_got), 0);
  EXPECT_EQ(differences(fetch(dwu, {c}, "dw unfused"), dw_got), 0);
  EXPECT_EQ(differences(fetch(dbu, {c}, "db unfused"), db_got), 0);
  // dx written over dy (aligned as dx is), parameters frozen: the same dx.
  Placed inplace = place({n, c}, dtype, pad, dy);
  Tensor none_w, none_b;
  ops::layer_norm_backward(inplace.view, none_w, none_b, inplace.view, hd, wd, md, rd, resp.view);
  EXPECT_EQ(differences(fetch(inplace, {n, c}, "dx over dy"), dx_got), 0);
}

TEST(CudaLayerNorm, ResidualFormsMatchCpuAndUnfusedAtAwkwardSizes) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (int64_t n : {1, 7, 33, 257, 4097}) {
      for (int64_t c : {64, 80, 768, 1000, 1600}) {
        check_layer_norm_residual(dtype, n, c, 37, 64);
        check_layer_norm_residual(dtype, n, c, 64, 64);
        check_layer_norm_residual(dtype, n, c, 64, 37);  // x, a, residual misaligned
        if (testing::Test::HasFailure()) return;
      }
    }
    check_layer_norm_residual(dtype, 33, 8192, 64, 64);  // dw, db partials in global memory
    check_layer_norm_residual(dtype, 33, 4099, 64, 64);  // odd: the scalar kernels
    check_layer_norm_residual(dtype, 7, 1, 64, 64);
  }
}

TEST(CudaLayerNorm, RejectsNonF32StatsAndMixedDtypes) {
  Tensor x = Tensor::zeros({4, 8}, DType::bf16, Device::cuda);
  Tensor w = Tensor::zeros({8}, DType::bf16, Device::cuda);
  Tensor b = Tensor::zeros({8}, DType::bf16, Device::cuda);
  Tensor y = Tensor::zeros({4, 8}, DType::bf16, Device::cuda);
  Tensor stat16 = Tensor::zeros({4}, DType::bf16, Device::cuda);
  Tensor mean = Tensor::zeros({4}, DType::f32, Device::cuda);
  Tensor rstd = Tensor::zeros({4}, DType::f32, Device::cuda);
  EXPECT_THROW(ops::layer_norm_forward(y, stat16, rstd, x, w, b, 1e-5), Error);
  EXPECT_THROW(ops::layer_norm_forward(y, mean, stat16, x, w, b, 1e-5), Error);
  Tensor b32 = Tensor::zeros({8}, DType::f32, Device::cuda);
  EXPECT_THROW(ops::layer_norm_forward(y, mean, rstd, x, w, b32, 1e-5), Error);
  EXPECT_NO_THROW(ops::layer_norm_forward(y, mean, rstd, x, w, b, 1e-5));
}

}  // namespace
}  // namespace tune
