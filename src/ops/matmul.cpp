// matmul: c = alpha * op(a) @ op(b) + beta * c (+ bias) on 2-D tensors; BLAS does the work.
#include <climits>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cuda/cuda_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

namespace {

constexpr const char* kOp = "matmul";

cpu::Trans to_cpu(Transpose t) {
  return t == Transpose::yes ? cpu::Trans::yes : cpu::Trans::no;
}

}  // namespace

void matmul(Tensor& c, const Tensor& a, Transpose ta, const Tensor& b, Transpose tb, double alpha,
            double beta, const Tensor& bias) {
  const Arg ca{"c", c}, aa{"a", a}, ba{"b", b};
  detail::check_rank(kOp, aa, 2);
  detail::check_rank(kOp, ba, 2);
  detail::check_rank(kOp, ca, 2);
  // op(a) is (m, k), op(b) is (k, n).
  const char* op_a = ta == Transpose::yes ? "a^T" : "a";
  const char* op_b = tb == Transpose::yes ? "b^T" : "b";
  const int64_t m = ta == Transpose::no ? a.size(0) : a.size(1);
  const int64_t k = ta == Transpose::no ? a.size(1) : a.size(0);
  const int64_t kb = tb == Transpose::no ? b.size(0) : b.size(1);
  const int64_t n = tb == Transpose::no ? b.size(1) : b.size(0);
  if (k != kb) {
    detail::fail(kOp, str("inner dimensions differ: ", op_a, " is ", shape_str({m, k}),
                          " (a has shape ", shape_str(a.shape()), ") but ", op_b, " is ",
                          shape_str({kb, n}), " (b has shape ", shape_str(b.shape()), ")"));
  }
  if (c.shape() != Shape{m, n}) {
    detail::fail(kOp, str("c has shape ", shape_str(c.shape()), " but ", op_a, " @ ", op_b,
                          " has shape ", shape_str({m, n}), " (a has shape ", shape_str(a.shape()),
                          ", b has shape ", shape_str(b.shape()), ")"));
  }
  for (int64_t d : {m, n, k}) {
    if (d > INT_MAX) {
      detail::fail(kOp, str("dimension ", d, " exceeds the BLAS limit of ", INT_MAX,
                            " (a has shape ", shape_str(a.shape()), ", b has shape ",
                            shape_str(b.shape()), "); split the product"));
    }
  }
  const bool on_cuda = detail::check_device(kOp, {ca, aa, ba}) == Device::cuda;
  detail::check_no_overlap(kOp, ca, aa);
  detail::check_no_overlap(kOp, ca, ba);
  if (bias.defined()) {
    const Arg bias_arg{"bias", bias};
    detail::check_shape(kOp, bias_arg, {n}, ca);
    detail::check_device(kOp, {ca, bias_arg});
    if (bias.dtype() != c.dtype()) {
      detail::fail(kOp, str("bias is ", dtype_name(bias.dtype()), " but c is ",
                            dtype_name(c.dtype()), "; the bias takes c's dtype"));
    }
  }
  if (on_cuda) {
    // c may be f32 when a and b are bf16 or f16: full-precision results of low-precision inputs.
    const DType ab = detail::check_cuda_float(kOp, {aa, ba});
    if (c.dtype() != DType::f32 || ab == DType::f32) detail::check_cuda_float(kOp, {ca, aa, ba});
    cuda::gemm(ab, c.dtype(), ta == Transpose::yes ? cuda::Trans::yes : cuda::Trans::no,
               tb == Transpose::yes ? cuda::Trans::yes : cuda::Trans::no, m, n, k,
               static_cast<float>(alpha), a.raw(), a.size(1), b.raw(), b.size(1),
               static_cast<float>(beta), c.raw(), n, bias.defined() ? bias.raw() : nullptr);
    return;
  }
  const DType dt = detail::check_float(kOp, {ca, aa, ba});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::gemm<T>(to_cpu(ta), to_cpu(tb), m, n, k, static_cast<T>(alpha), a.data<T>(), a.size(1),
                 b.data<T>(), b.size(1), static_cast<T>(beta), c.data<T>(), n);
    if (bias.defined()) cpu::add_bias<T>(c.data<T>(), bias.data<T>(), m, n);
  });
}

}  // namespace tune::ops
