// The CUDA elementwise ops (fill, copy, add, add_inplace, scale_inplace, add_bias, bias_backward)
// and SwiGLU forward/backward against the CPU ops in f64 on the same rounded inputs, at awkward
// sizes. Every device tensor sits inside a larger buffer of sentinels that must survive: at an
// offset of 64 elements (16-byte aligned: the vectorised path) and of 37 (misaligned: the scalar
// path). f32 must match to 1e-6 (relative, whole tensor), bf16 and f16 to 1e-2.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "test_util.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

constexpr double kSentinel = 7.0;
const int64_t kSizes[] = {1, 7, 33, 257, 4097, (int64_t{1} << 20) + 3};
const int64_t kPads[] = {64, 37};
const DType kDtypes[] = {DType::f32, DType::bf16, DType::f16};

double tolerance(DType dtype) {
  return dtype == DType::f32 ? 1e-6 : 1e-2;
}

// A random f64 tensor holding values exactly representable in dtype.
Tensor rounded_randn(const Shape& shape, DType dtype, uint64_t seed) {
  return test::randn(shape, DType::f32, seed).to(dtype).to(DType::f64);
}

// A device tensor of dtype holding `host`, inside a buffer with `pad` sentinels on each side.
struct Placed {
  Tensor buffer, view;
  int64_t pad, n;
};

Placed place(const Tensor& host, DType dtype, int64_t pad) {
  const int64_t n = host.numel();
  Tensor host_buffer = test::full({n + 2 * pad}, DType::f32, kSentinel).to(dtype);
  host_buffer.narrow(pad, n).copy_from(host.view({n}).to(dtype));
  Tensor buffer = Tensor::empty(host_buffer.shape(), dtype, Device::cuda);
  buffer.copy_from(host_buffer);
  return {buffer, buffer.narrow(pad, n).view(host.shape()), pad, n};
}

// The device tensor back in f64, after checking the sentinels on both sides.
Tensor fetch(const Placed& p) {
  Tensor back = Tensor::empty(p.buffer.shape(), p.buffer.dtype());
  back.copy_from(p.buffer);
  for (int64_t i = 0; i < p.pad; ++i) {
    EXPECT_EQ(back.item(i), kSentinel) << "sentinel before the tensor overwritten at " << i;
    EXPECT_EQ(back.item(p.pad + p.n + i), kSentinel) << "sentinel after overwritten at " << i;
  }
  return back.narrow(p.pad, p.n).to(DType::f64).view(p.view.shape());
}

TEST(CudaElementwise, MatchesCpu) {
  for (DType dtype : kDtypes) {
    const double tol = tolerance(dtype);
    for (int64_t pad : kPads) {
      for (int64_t n : kSizes) {
        SCOPED_TRACE(str(dtype_name(dtype), " n=", n, " pad=", pad));
        const uint64_t seed = static_cast<uint64_t>(n * 31 + pad);
        const Tensor a = rounded_randn({n}, dtype, seed), b = rounded_randn({n}, dtype, seed + 1);
        const Tensor y0 = rounded_randn({n}, dtype, seed + 2);
        {
          SCOPED_TRACE("fill");
          Placed x = place(y0, dtype, pad);
          ops::fill(x.view, 0.3);
          Tensor ref = y0.clone();
          ops::fill(ref, test::full({1}, DType::f32, 0.3).to(dtype).item(0));
          EXPECT_LE(test::rel_error(fetch(x), ref), tol);
        }
        {
          SCOPED_TRACE("copy");
          Placed dst = place(y0, dtype, pad), src = place(a, dtype, pad);
          ops::copy(dst.view, src.view);
          EXPECT_EQ(test::max_abs_diff(fetch(dst), a), 0.0);
        }
        {
          SCOPED_TRACE("add");
          Placed out = place(y0, dtype, pad), da = place(a, dtype, pad), db = place(b, dtype, pad);
          ops::add(out.view, da.view, db.view);
          Tensor ref = y0.clone();
          ops::add(ref, a, b);
          EXPECT_LE(test::rel_error(fetch(out), ref), tol);
        }
        {
          SCOPED_TRACE("add_inplace");
          Placed y = place(y0, dtype, pad), x = place(a, dtype, pad);
          ops::add_inplace(y.view, x.view, -0.75);
          Tensor ref = y0.clone();
          ops::add_inplace(ref, a, -0.75);
          EXPECT_LE(test::rel_error(fetch(y), ref), tol);
        }
        {
          SCOPED_TRACE("scale_inplace");
          Placed y = place(y0, dtype, pad);
          ops::scale_inplace(y.view, 0.125);
          Tensor ref = y0.clone();
          ops::scale_inplace(ref, 0.125);
          EXPECT_LE(test::rel_error(fetch(y), ref), tol);
        }
        if (testing::Test::HasFailure()) return;
      }
    }
  }
}

TEST(CudaElementwise, BiasMatchesCpu) {
  const int64_t rows_list[] = {1, 7, 33, 257, 4097};
  const int64_t cols_list[] = {1, 64, 80, 257};
  for (DType dtype : kDtypes) {
    const double tol = tolerance(dtype);
    for (int64_t pad : kPads) {
      for (int64_t rows : rows_list) {
        for (int64_t cols : cols_list) {
          SCOPED_TRACE(str(dtype_name(dtype), " rows=", rows, " cols=", cols, " pad=", pad));
          const uint64_t seed = static_cast<uint64_t>(rows * 1009 + cols * 7 + pad);
          const Tensor y0 = rounded_randn({rows, cols}, dtype, seed);
          const Tensor bias = rounded_randn({cols}, dtype, seed + 1);
          {
            SCOPED_TRACE("add_bias");
            Placed y = place(y0, dtype, pad), b = place(bias, dtype, pad);
            ops::add_bias(y.view, b.view);
            Tensor ref = y0.clone();
            ops::add_bias(ref, bias);
            EXPECT_LE(test::rel_error(fetch(y), ref), tol);
          }
          {
            SCOPED_TRACE("bias_backward");
            Placed db = place(bias, dtype, pad), dy = place(y0, dtype, pad);
            ops::bias_backward(db.view, dy.view);
            Tensor ref = bias.clone();
            ops::bias_backward(ref, y0);
            EXPECT_LE(test::rel_error(fetch(db), ref), tol);
          }
          if (testing::Test::HasFailure()) return;
        }
      }
    }
  }
}

// The column sums come in a fixed order: two runs give the same bits.
TEST(CudaElementwise, BiasBackwardIsDeterministic) {
  for (DType dtype : kDtypes) {
    const Tensor dy = rounded_randn({16384, 768}, dtype, 5);
    const Tensor d_dy = place(dy, dtype, 0).view;
    std::vector<Tensor> runs;
    for (int r = 0; r < 2; ++r) {
      Placed db = place(Tensor::zeros({768}, DType::f64), dtype, 0);
      ops::bias_backward(db.view, d_dy);
      runs.push_back(Tensor::empty({768}, dtype));
      runs.back().copy_from(db.view);
    }
    EXPECT_EQ(std::memcmp(runs[0].raw(), runs[1].raw(), runs[0].nbytes()), 0) << dtype_name(dtype);
  }
}

TEST(CudaSwiglu, MatchesCpu) {
  for (DType dtype : kDtypes) {
    const double tol = tolerance(dtype);
    for (int64_t pad : kPads) {
      for (int64_t n : kSizes) {
        SCOPED_TRACE(str(dtype_name(dtype), " n=", n, " pad=", pad));
        const uint64_t seed = static_cast<uint64_t>(n * 17 + pad);
        // (1, n) and, when n splits, (n / 7, 7): SwiGLU takes 2-D activations.
        const Shape shape = n % 7 == 0 ? Shape{n / 7, 7} : Shape{1, n};
        const Tensor gate = rounded_randn(shape, dtype, seed);
        const Tensor up = rounded_randn(shape, dtype, seed + 1);
        const Tensor dh = rounded_randn(shape, dtype, seed + 2);
        const Tensor junk = rounded_randn(shape, dtype, seed + 3);
        Placed dg = place(gate, dtype, pad), du = place(up, dtype, pad),
               ddh = place(dh, dtype, pad);
        {
          SCOPED_TRACE("swiglu_forward");
          Placed h = place(junk, dtype, pad);
          ops::swiglu_forward(h.view, dg.view, du.view);
          Tensor ref = junk.clone();
          ops::swiglu_forward(ref, gate, up);
          EXPECT_LE(test::rel_error(fetch(h), ref), tol);
        }
        {
          SCOPED_TRACE("swiglu_backward");
          Placed dgate = place(junk, dtype, pad), dup = place(junk, dtype, pad);
          ops::swiglu_backward(dgate.view, dup.view, ddh.view, dg.view, du.view);
          Tensor ref_dgate = junk.clone(), ref_dup = junk.clone();
          ops::swiglu_backward(ref_dgate, ref_dup, dh, gate, up);
          EXPECT_LE(test::rel_error(fetch(dgate), ref_dgate), tol);
          EXPECT_LE(test::rel_error(fetch(dup), ref_dup), tol);
        }
        if (testing::Test::HasFailure()) return;
      }
    }
  }
}

TEST(CudaElementwise, RejectsMixedDtypesAndDevices) {
  Tensor a = Tensor::zeros({4, 4}, DType::f32, Device::cuda);
  Tensor b = Tensor::zeros({4, 4}, DType::bf16, Device::cuda);
  Tensor host = Tensor::zeros({4, 4}, DType::f32);
  EXPECT_THROW(ops::add_inplace(a, b), Error);
  EXPECT_THROW(ops::add_inplace(a, host), Error);
  EXPECT_THROW(ops::swiglu_forward(a, a, b), Error);
}

}  // namespace
}  // namespace tune
