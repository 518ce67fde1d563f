// SwiGLU forward and backward on (N, F) activations, and GELU (tanh) on any shape.
#include "backend/cpu/cpu_kernels.h"
#include "backend/cuda/elementwise_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

void swiglu_forward(Tensor& h, const Tensor& gate, const Tensor& up) {
  constexpr const char* op = "swiglu_forward";
  const Arg ha{"h", h}, ga{"gate", gate}, ua{"up", up};
  detail::check_rank(op, ga, 2);
  detail::check_same_shape(op, ua, ga);
  detail::check_same_shape(op, ha, ga);
  if (detail::check_device(op, {ha, ga, ua}) == Device::cuda) {
    detail::check_cuda_float(op, {ha, ga, ua});
    cuda::swiglu_forward(h.dtype(), h.raw(), gate.raw(), up.raw(), gate.numel());
    return;
  }
  const DType dt = detail::check_float(op, {ha, ga, ua});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::swiglu_forward<T>(h.data<T>(), gate.data<T>(), up.data<T>(), gate.numel());
  });
}

void swiglu_backward(Tensor& dgate, Tensor& dup, const Tensor& dh, const Tensor& gate,
                     const Tensor& up) {
  constexpr const char* op = "swiglu_backward";
  const Arg dga{"dgate", dgate}, dua{"dup", dup}, dha{"dh", dh}, ga{"gate", gate}, ua{"up", up};
  detail::check_rank(op, ga, 2);
  detail::check_same_shape(op, ua, ga);
  detail::check_same_shape(op, dha, ga);
  detail::check_same_shape(op, dga, ga);
  detail::check_same_shape(op, dua, ga);
  detail::check_no_overlap(op, dga, dua);
  if (detail::check_device(op, {dga, dua, dha, ga, ua}) == Device::cuda) {
    detail::check_cuda_float(op, {dga, dua, dha, ga, ua});
    cuda::swiglu_backward(dgate.dtype(), dgate.raw(), dup.raw(), dh.raw(), gate.raw(), up.raw(),
                          gate.numel());
    return;
  }
  const DType dt = detail::check_float(op, {dga, dua, dha, ga, ua});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::swiglu_backward<T>(dgate.data<T>(), dup.data<T>(), dh.data<T>(), gate.data<T>(),
                            up.data<T>(), gate.numel());
  });
}

void gelu_tanh_forward(Tensor& y, const Tensor& x) {
  constexpr const char* op = "gelu_tanh_forward";
  const Arg ya{"y", y}, xa{"x", x};
  detail::check_same_shape(op, ya, xa);
  if (detail::check_device(op, {ya, xa}) == Device::cuda) {
    detail::check_cuda_float(op, {ya, xa});
    cuda::gelu_tanh_forward(y.dtype(), y.raw(), x.raw(), x.numel());
    return;
  }
  const DType dt = detail::check_float(op, {ya, xa});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::gelu_tanh_forward<T>(y.data<T>(), x.data<T>(), x.numel());
  });
}

void gelu_tanh_backward(Tensor& dx, const Tensor& dy, const Tensor& x) {
  constexpr const char* op = "gelu_tanh_backward";
  const Arg dxa{"dx", dx}, dya{"dy", dy}, xa{"x", x};
  detail::check_same_shape(op, dya, xa);
  detail::check_same_shape(op, dxa, xa);
  if (detail::check_device(op, {dxa, dya, xa}) == Device::cuda) {
    detail::check_cuda_float(op, {dxa, dya, xa});
    cuda::gelu_tanh_backward(dx.dtype(), dx.raw(), dy.raw(), x.raw(), x.numel());
    return;
  }
  const DType dt = detail::check_float(op, {dxa, dya, xa});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::gelu_tanh_backward<T>(dx.data<T>(), dy.data<T>(), x.data<T>(), x.numel());
  });
}

}  // namespace tune::ops
