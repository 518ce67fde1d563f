// SwiGLU forward and backward on (N, F) activations.
#include "backend/cpu/cpu_kernels.h"
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
  if (detail::check_device(op, {ha, ga, ua}) == Device::cuda) detail::no_cuda_kernel(op);
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
  if (detail::check_device(op, {dga, dua, dha, ga, ua}) == Device::cuda) {
    detail::no_cuda_kernel(op);
  }
  const DType dt = detail::check_float(op, {dga, dua, dha, ga, ua});
  detail::check_no_overlap(op, dga, dua);
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::swiglu_backward<T>(dgate.data<T>(), dup.data<T>(), dh.data<T>(), gate.data<T>(),
                            up.data<T>(), gate.numel());
  });
}

}  // namespace tune::ops
