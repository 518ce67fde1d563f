// ops::matmul on the GPU (cuBLASLt) against the CPU in f64: every transpose, alpha and beta, at
// awkward sizes, with c placed inside a larger buffer whose sentinels must survive untouched.
// f32 must match to 1e-5 (relative, whole tensor), bf16 and f16 to 2e-2. With a bias: the
// epilogue's (a 16-byte aligned bias), the separate pass's (misaligned) and the gemv path's. And
// matmul_add, whose source the epilogue reads.
#include <gtest/gtest.h>

#include <cmath>

#include "gpu/gpu_test_util.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using test::to_device;

using ops::Transpose;

// bias_offset >= 0: a bias [n] at that element offset of a device buffer (offset 8 or more
// elements: 16-byte aligned for 2-byte dtypes; 1: misaligned). With `add`, ops::matmul_add from
// a source tensor of its own (beta is then 1, the source's).
void check(DType dtype, int64_t m, int64_t n, int64_t k, Transpose ta, Transpose tb, double alpha,
           double beta, double tolerance, int64_t bias_offset = -1, bool add = false) {
  SCOPED_TRACE(str(dtype_name(dtype), " m=", m, " n=", n, " k=", k, " ta=", ta == Transpose::yes,
                   " tb=", tb == Transpose::yes, " alpha=", alpha, " beta=", beta,
                   " bias_offset=", bias_offset, " add=", add));
  const uint64_t seed = static_cast<uint64_t>(m * 1000003 + n * 1009 + k);
  // Inputs rounded to the test dtype first, so the reference sees exactly what the GPU sees.
  const Tensor a = test::randn(ta == Transpose::no ? Shape{m, k} : Shape{k, m}, DType::f32, seed)
                       .to(dtype)
                       .to(DType::f64);
  const Tensor b =
      test::randn(tb == Transpose::no ? Shape{k, n} : Shape{n, k}, DType::f32, seed + 1)
          .to(dtype)
          .to(DType::f64);
  const Tensor c0 = test::randn({m, n}, DType::f32, seed + 2).to(dtype).to(DType::f64);
  const Tensor src = test::randn({m, n}, DType::f32, seed + 4).to(dtype).to(DType::f64);
  Tensor ref = add ? src.clone() : c0.clone();
  const Tensor bias = test::randn({n}, DType::f32, seed + 3).to(dtype).to(DType::f64);
  ops::matmul(ref, a, ta, b, tb, alpha, add ? 1.0 : beta, bias_offset >= 0 ? bias : Tensor());
  Tensor bias_buffer;
  if (bias_offset >= 0) {
    bias_buffer = Tensor::empty({bias_offset + n}, dtype);
    bias_buffer.narrow(bias_offset, n).copy_from(bias.to(dtype));
    bias_buffer = to_device(bias_buffer, dtype);
  }

  // c sits in the middle of a buffer of sentinels.
  const int64_t pad = 37;
  Tensor host_buffer = test::full({m * n + 2 * pad}, DType::f32, 7.0).to(dtype);
  host_buffer.narrow(pad, m * n).copy_from(c0.view({m * n}).to(dtype));
  Tensor buffer = to_device(host_buffer, dtype);
  Tensor c = buffer.narrow(pad, m * n).view({m, n});
  Tensor da = to_device(a, dtype), db = to_device(b, dtype);
  const Tensor dbias = bias_offset >= 0 ? bias_buffer.narrow(bias_offset, n) : Tensor();
  if (add)
    ops::matmul_add(c, da, ta, db, tb, to_device(src, dtype), alpha, dbias);
  else
    ops::matmul(c, da, ta, db, tb, alpha, beta, dbias);

  Tensor back = Tensor::empty(buffer.shape(), dtype);
  back.copy_from(buffer);
  for (int64_t i = 0; i < pad; ++i) {
    ASSERT_EQ(back.item(i), 7.0) << "sentinel before c overwritten at " << i;
    ASSERT_EQ(back.item(pad + m * n + i), 7.0) << "sentinel after c overwritten at " << i;
  }
  const Tensor got = back.narrow(pad, m * n).to(DType::f64).view({m, n});
  EXPECT_LE(test::rel_error(got, ref), tolerance);
}

TEST(CudaMatmul, MatchesCpuAtAwkwardSizes) {
  const int64_t sizes[][3] = {{1, 1, 1},     {7, 33, 5},    {33, 7, 257},   {257, 33, 64},
                              {4097, 7, 33}, {5, 4097, 33}, {64, 80, 4097}, {33, 257, 1}};
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
    for (const auto& s : sizes) {
      for (Transpose ta : {Transpose::no, Transpose::yes}) {
        for (Transpose tb : {Transpose::no, Transpose::yes}) {
          check(dtype, s[0], s[1], s[2], ta, tb, 1.0, 0.0, tol);
          check(dtype, s[0], s[1], s[2], ta, tb, 0.5, 0.25, tol);
        }
      }
    }
  }
}

TEST(CudaMatmul, BiasMatchesCpu) {
  const int64_t sizes[][3] = {{7, 33, 5}, {257, 64, 33}, {4097, 80, 64}, {3, 1031, 64}};
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
    for (const auto& s : sizes) {
      for (int64_t offset : {int64_t{0}, int64_t{8}, int64_t{1}}) {
        check(dtype, s[0], s[1], s[2], Transpose::no, Transpose::yes, 1.0, 0.0, tol, offset);
        check(dtype, s[0], s[1], s[2], Transpose::no, Transpose::no, 0.5, 1.0, tol, offset);
      }
    }
  }
}

// ops::matmul_add: the source read in cuBLASLt's epilogue (C apart from D), and copied into c
// first where the product falls back to passes of its own (a misaligned bias) or to the gemv
// kernel (3 rows times W^T).
TEST(CudaMatmul, AddFromASourceMatchesCpu) {
  const int64_t sizes[][3] = {{7, 33, 5}, {257, 64, 33}, {3, 1031, 64}};
  for (DType dtype : {DType::f32, DType::bf16}) {
    const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
    for (const auto& s : sizes) {
      for (int64_t offset : {int64_t{-1}, int64_t{8}, int64_t{1}}) {
        check(dtype, s[0], s[1], s[2], Transpose::no, Transpose::yes, 1.0, 0.0, tol, offset, true);
        check(dtype, s[0], s[1], s[2], Transpose::yes, Transpose::no, 0.5, 0.0, tol, offset, true);
      }
    }
  }
}

// Decoding's products (a few rows times a Linear's weight, W [n, k] transposed) take the
// warp-per-column kernel in gemv.cu: its vector path (k a multiple of the 16-byte pack, with an
// unrolled body and a remainder) and its scalar path (k = 4097, 7, 1).
TEST(CudaMatmul, SkinnyProductsMatchCpu) {
  const int64_t ns[] = {1, 7, 1031};
  const int64_t ks[] = {1, 7, 8, 33, 1024, 4097};
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
    for (int64_t m = 1; m <= 5; ++m) {
      for (int64_t n : ns) {
        for (int64_t k : ks) {
          check(dtype, m, n, k, Transpose::no, Transpose::yes, 1.0, 0.0, tol);
          check(dtype, m, n, k, Transpose::no, Transpose::yes, 0.5, 1.0, tol);
        }
      }
    }
    check(dtype, 1, 4096, 14336, Transpose::no, Transpose::yes, 1.0, 1.0, tol);
  }
}

// ops::matmul_gelu and its backward (GPT-2's MLP): cuBLASLt's GELU epilogues where n is a
// multiple of 8, the product then the activation's kernel otherwise (n = 33) and for a few rows
// (the gemv path); against the CPU's composition in f64. f32 at 1e-5 also pins the activation to
// the tanh approximation (the erf form differs by ~1e-3).
TEST(CudaMatmul, GeluProductsMatchCpu) {
  const int64_t sizes[][3] = {{257, 64, 33}, {4097, 80, 64}, {33, 33, 64}, {3, 1032, 64}};
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
    for (const auto& s : sizes) {
      for (bool with_bias : {false, true}) {
        const int64_t m = s[0], n = s[1], k = s[2];
        SCOPED_TRACE(str(dtype_name(dtype), " m=", m, " n=", n, " k=", k, " bias=", with_bias));
        const uint64_t seed = static_cast<uint64_t>(m * 31 + n * 7 + k);
        auto rounded = [&](const Shape& shape, uint64_t s) {
          return test::randn(shape, DType::f32, s).to(dtype).to(DType::f64);
        };
        const Tensor x = rounded({m, k}, seed), w = rounded({n, k}, seed + 1),
                     bias = with_bias ? rounded({n}, seed + 2) : Tensor(),
                     dy = rounded({m, k}, seed + 3);
        Tensor h_ref = Tensor::empty({m, n}, DType::f64), pre_ref = h_ref.clone();
        ops::matmul_gelu(h_ref, pre_ref, x, Transpose::no, w, Transpose::yes, bias);
        Tensor h = Tensor::empty({m, n}, dtype).to(Device::cuda);
        Tensor pre = Tensor::empty({m, n}, dtype).to(Device::cuda);
        ops::matmul_gelu(h, pre, to_device(x, dtype), Transpose::no, to_device(w, dtype),
                         Transpose::yes, with_bias ? to_device(bias, dtype) : Tensor());
        auto host = [&](const Tensor& t) { return t.to(Device::cpu).to(DType::f64); };
        EXPECT_LE(test::rel_error(host(pre), pre_ref), tol);
        EXPECT_LE(test::rel_error(host(h), h_ref), tol);
        Tensor dpre = Tensor::empty({m, n}, dtype).to(Device::cuda);
        // Backward through the next product, dpre = (dy w) * gelu'(pre) with w [n, k] as the next
        // Linear's weight read transposed, from the device's own pre (its rounding counts once).
        Tensor dpre_own_ref = Tensor::empty({m, n}, DType::f64);
        ops::matmul_gelu_backward(dpre_own_ref, dy, Transpose::no, w, Transpose::yes, host(pre));
        ops::matmul_gelu_backward(dpre, to_device(dy, dtype), Transpose::no, to_device(w, dtype),
                                  Transpose::yes, pre);
        EXPECT_LE(test::rel_error(host(dpre), dpre_own_ref), tol);
      }
    }
  }
}

// ops::rms_norm_matmul: one kernel for a few rows on CUDA (the norm in f32, never written), the
// composition of the two ops for more rows; against the CPU's composition in f64.
TEST(CudaMatmul, RmsNormThenProductMatchesCpu) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
    for (int64_t m : {1, 2, 4, 5, 33}) {
      for (int64_t n : {7, 1031}) {
        for (int64_t k : {7, 64, 4096, 4097}) {
          SCOPED_TRACE(str(dtype_name(dtype), " m=", m, " n=", n, " k=", k));
          const uint64_t seed = static_cast<uint64_t>(m * 31 + n * 7 + k);
          auto rounded = [&](const Shape& shape, uint64_t s) {
            return test::randn(shape, DType::f32, s).to(dtype).to(DType::f64);
          };
          const Tensor x = rounded({m, k}, seed), nw = rounded({k}, seed + 1),
                       w = rounded({n, k}, seed + 2), y0 = rounded({m, n}, seed + 3);
          Tensor ref = y0.clone();
          ops::rms_norm_matmul(ref, x, nw, 1e-5, w, 0.5, 1.0);
          Tensor y = to_device(y0, dtype);
          Tensor dx = to_device(x, dtype), dn = to_device(nw, dtype), dw = to_device(w, dtype);
          ops::rms_norm_matmul(y, dx, dn, 1e-5, dw, 0.5, 1.0);
          Tensor back = Tensor::empty(y.shape(), dtype);
          back.copy_from(y);
          EXPECT_LE(test::rel_error(back.to(DType::f64), ref), tol);
        }
      }
    }
  }
}

// ops::matmul_pair: one strided-batch launch where each operand's second member lies past its
// first (members of one buffer, a gap between them; or one tensor shared by both), two launches
// where one lies before (c1 ahead of c0); either way the two products that matmul gives, and the
// sentinels around and between the outputs untouched.
TEST(CudaMatmul, PairsMatchTwoProducts) {
  const int64_t m = 257, n = 33, k = 48, gap = 8;
  for (DType dtype : {DType::f32, DType::bf16}) {
    const double tol = dtype == DType::f32 ? 1e-5 : 2e-2;
    for (Transpose ta : {Transpose::no, Transpose::yes}) {
      for (Transpose tb : {Transpose::no, Transpose::yes}) {
        for (int layout = 0; layout < 3; ++layout) {  // 0 ascending, 1 c1 first, 2 a shared
          SCOPED_TRACE(str(dtype_name(dtype), " ta=", ta == Transpose::yes,
                           " tb=", tb == Transpose::yes, " layout=", layout));
          const Shape sa = ta == Transpose::no ? Shape{m, k} : Shape{k, m};
          const Shape sb = tb == Transpose::no ? Shape{k, n} : Shape{n, k};
          const Tensor a0 = test::rounded(sa, dtype, 1), b0 = test::rounded(sb, dtype, 3);
          const Tensor a1 = layout == 2 ? a0 : test::rounded(sa, dtype, 2);
          const Tensor b1 = test::rounded(sb, dtype, 4);
          const Tensor c0 = test::rounded({m, n}, dtype, 5), c1 = test::rounded({m, n}, dtype, 6);
          Tensor ref0 = c0.clone(), ref1 = c1.clone();
          ops::matmul(ref0, a0, ta, b0, tb, 0.5, 1.0);
          ops::matmul(ref1, a1, ta, b1, tb, 0.5, 1.0);
          // Both members of each operand in one device buffer, `gap` elements apart.
          auto pair_in = [&](const Tensor& x0, const Tensor& x1) {
            const int64_t size = x0.numel();
            Tensor host = Tensor::zeros({2 * size + gap}, DType::f64);
            host.narrow(0, size).copy_from(x0.view({size}));
            host.narrow(size + gap, size).copy_from(x1.view({size}));
            Tensor d = test::to_device(host, dtype);
            return std::pair{d.narrow(0, size).view(x0.shape()),
                             d.narrow(size + gap, size).view(x0.shape())};
          };
          auto [da0, da1] = pair_in(a0, a1);
          if (layout == 2) da1 = da0;
          auto [db0, db1] = pair_in(b0, b1);
          Tensor cs = Tensor::zeros({2 * m * n + gap}, DType::f64);
          cs.narrow(0, m * n).copy_from((layout == 1 ? c1 : c0).view({m * n}));
          Tensor between = cs.narrow(m * n, gap);
          ops::fill(between, test::kSentinel);
          cs.narrow(m * n + gap, m * n).copy_from((layout == 1 ? c0 : c1).view({m * n}));
          test::Placed out = test::place({2 * m * n + gap}, dtype, 37, cs);
          Tensor first = out.view.narrow(0, m * n).view({m, n});
          Tensor second = out.view.narrow(m * n + gap, m * n).view({m, n});
          Tensor& dc0 = layout == 1 ? second : first;
          Tensor& dc1 = layout == 1 ? first : second;
          ops::matmul_pair(dc0, dc1, da0, da1, ta, db0, db1, tb, 0.5, 1.0);
          const Tensor got = test::fetch(out, {2 * m * n + gap});
          const Tensor got0 = got.narrow(layout == 1 ? m * n + gap : 0, m * n).view({m, n});
          const Tensor got1 = got.narrow(layout == 1 ? 0 : m * n + gap, m * n).view({m, n});
          EXPECT_LE(test::rel_error(got0, ref0), tol);
          EXPECT_LE(test::rel_error(got1, ref1), tol);
          for (int64_t i = 0; i < gap; ++i)
            EXPECT_EQ(got.item(m * n + i), test::kSentinel) << "between the outputs at " << i;
        }
      }
    }
  }
}

TEST(CudaMatmul, RejectsMixedDtypesAndDevices) {
  Tensor a = Tensor::zeros({4, 4}, DType::f32, Device::cuda);
  Tensor b = Tensor::zeros({4, 4}, DType::bf16, Device::cuda);
  Tensor c = Tensor::zeros({4, 4}, DType::f32, Device::cuda);
  EXPECT_THROW(ops::matmul(c, a, Transpose::no, b, Transpose::no, 1.0, 0.0), Error);
  Tensor host = Tensor::zeros({4, 4}, DType::f32);
  EXPECT_THROW(ops::matmul(c, a, Transpose::no, host, Transpose::no, 1.0, 0.0), Error);
}

}  // namespace
}  // namespace tune
