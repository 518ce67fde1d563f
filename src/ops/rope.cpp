// Rotary position embedding, in place on (B, T, H, D), and its transpose for backward.
#include "backend/cpu/cpu_kernels.h"
#include "backend/cuda/embedding_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

namespace {

void rope(const char* op, Tensor& x, const char* x_name, const Tensor& cos, const Tensor& sin,
          const Tensor& positions, cpu::RopeDirection direction, Checked positions_checked) {
  const Arg xa{x_name, x}, ca{"cos", cos}, sa{"sin", sin}, pa{"positions", positions};
  detail::check_rank(op, xa, 4);
  const int64_t b = x.size(0), t = x.size(1), h = x.size(2), d = x.size(3);
  if (d % 2 != 0) {
    detail::fail(op, str(x_name, " has shape ", shape_str(x.shape()),
                         "; the head dimension must be even to rotate pairs"));
  }
  detail::check_rank(op, ca, 2);
  detail::check_shape(op, ca, {cos.size(0), d / 2}, xa);
  detail::check_same_shape(op, sa, ca);
  detail::check_shape(op, pa, {b, t}, xa);
  detail::check_index(op, pa);
  const int64_t table = cos.size(0);
  auto report = [&](int64_t bad, const Tensor& host_positions) {
    detail::fail(op,
                 str("position ", static_cast<int64_t>(host_positions.item(bad)), " at (b, t) = (",
                     bad / t, ", ", bad % t, ") is outside the cos/sin tables, which have ", table,
                     " rows (shape ", shape_str(cos.shape()), "); build them for more positions"));
  };
  if (detail::check_device(op, {xa, ca, sa, pa}) == Device::cuda) {
    // Positions stay on the device: the kernel checks them (backend/cuda/embedding_kernels.h).
    const DType dt = detail::check_cuda_float(op, {xa, ca, sa});
    const int64_t bad = cuda::rope(
        dt, positions.dtype(), x.raw(), cos.raw(), sin.raw(), positions.raw(), b, t, h, d, table,
        direction == cpu::RopeDirection::forward ? cuda::RopeDirection::forward
                                                 : cuda::RopeDirection::backward,
        positions_checked == Checked::no);
    if (bad >= 0) {
      Tensor host = Tensor::empty(positions.shape(), positions.dtype());
      host.copy_from(positions);
      report(bad, host);
    }
    return;
  }
  const DType dt = detail::check_float(op, {xa, ca, sa});
  const int64_t bad = detail::first_out_of_range(positions, table);
  if (bad >= 0) report(bad, positions);
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    detail::dispatch_index(positions.dtype(), [&](auto itag) {
      using I = decltype(itag);
      cpu::rope<T, I>(x.data<T>(), cos.data<T>(), sin.data<T>(), positions.data<I>(), b, t, h, d,
                      direction);
    });
  });
}

}  // namespace

void rope_forward(Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& positions,
                  Checked positions_checked) {
  rope("rope_forward", x, "x", cos, sin, positions, cpu::RopeDirection::forward, positions_checked);
}

void rope_backward(Tensor& dx, const Tensor& cos, const Tensor& sin, const Tensor& positions,
                   Checked positions_checked) {
  rope("rope_backward", dx, "dx", cos, sin, positions, cpu::RopeDirection::backward,
       positions_checked);
}

}  // namespace tune::ops
