// RMSNorm then a product with a Linear's weight, for decoding (see ops.h). The CUDA path for a few
// rows is one kernel (cuda::gemv with a norm weight); everything else composes the two ops.
#include "backend/cuda/gemv_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

void rms_norm_matmul(Tensor& y, const Tensor& x, const Tensor& norm_w, double eps, const Tensor& w,
                     double alpha, double beta) {
  constexpr const char* op = "rms_norm_matmul";
  const Arg ya{"y", y}, xa{"x", x}, na{"norm_w", norm_w}, wa{"w", w};
  detail::check_rank(op, xa, 2);
  detail::check_rank(op, wa, 2);
  detail::check_shape(op, na, {x.size(1)}, xa);
  detail::check_shape(op, wa, {w.size(0), x.size(1)}, xa);
  detail::check_shape(op, ya, {x.size(0), w.size(0)}, xa);
  if (!(eps >= 0.0)) detail::fail(op, str("eps = ", eps, " must be >= 0"));
  const Device device = detail::check_device(op, {ya, xa, na, wa});
  if (device == Device::cuda && x.size(0) <= cuda::kGemvMaxRows) {
    const DType dt = detail::check_cuda_float(op, {ya, xa, na, wa});
    cuda::gemv(dt, x.size(0), w.size(0), x.size(1), static_cast<float>(alpha), x.raw(), x.size(1),
               w.raw(), w.size(1), static_cast<float>(beta), y.raw(), y.size(1), norm_w.raw(),
               static_cast<float>(eps));
    return;
  }
  Tensor xn = Tensor::empty(x.shape(), x.dtype(), device);
  Tensor rstd = Tensor::empty({x.size(0)}, device == Device::cuda ? DType::f32 : x.dtype(), device);
  rms_norm_forward(xn, rstd, x, norm_w, eps);
  matmul(y, xn, Transpose::no, w, Transpose::yes, alpha, beta);
}

}  // namespace tune::ops
