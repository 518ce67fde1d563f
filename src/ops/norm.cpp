// RMSNorm and LayerNorm forward and backward over the last dimension of (N, C) activations.
#include <utility>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cuda/norm_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

namespace {

// CUDA norms: the activation and weight tensors share one dtype (f32, bf16 or f16), computed
// in f32; rstd (and LayerNorm's mean) is f32 whatever that dtype is.
DType check_cuda_norm_dtypes(const char* op, std::initializer_list<Arg> args, const Arg& rstd) {
  const DType dt = detail::check_cuda_float(op, args);
  if (rstd.tensor.dtype() != DType::f32) {
    detail::fail(op, str(rstd.name, " is ", rstd.tensor.describe(), "; on CUDA it must be f32"));
  }
  return dt;
}

// A norm backward's optional tensors, each undefined or shaped like its reference (w for dw and
// db, x for the residual), on x's device and of x's dtype.
void check_optional(const char* op, std::initializer_list<std::pair<const Arg*, const Arg*>> args,
                    const Arg& xa, bool cuda) {
  for (const auto& [g, ref] : args) {
    if (!g->tensor.defined()) continue;
    detail::check_same_shape(op, *g, *ref);
    detail::check_device(op, {*g, xa});
    if (cuda) {
      detail::check_cuda_float(op, {*g, xa});
    } else {
      detail::check_float(op, {*g, xa});
    }
  }
}

}  // namespace

void rms_norm_forward(Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& w, double eps) {
  constexpr const char* op = "rms_norm_forward";
  const Arg ya{"y", y}, ra{"rstd", rstd}, xa{"x", x}, wa{"w", w};
  detail::check_rank(op, xa, 2);
  detail::check_shape(op, wa, {x.size(1)}, xa);
  detail::check_same_shape(op, ya, xa);
  detail::check_shape(op, ra, {x.size(0)}, xa);
  if (!(eps >= 0.0)) detail::fail(op, str("eps = ", eps, " must be >= 0"));
  if (detail::check_device(op, {ya, ra, xa, wa}) == Device::cuda) {
    const DType dt = check_cuda_norm_dtypes(op, {ya, xa, wa}, ra);
    cuda::rms_norm_forward(dt, y.raw(), static_cast<float*>(rstd.raw()), x.raw(), w.raw(),
                           x.size(0), x.size(1), static_cast<float>(eps));
    return;
  }
  const DType dt = detail::check_float(op, {ya, ra, xa, wa});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::rms_norm_forward<T>(y.data<T>(), rstd.data<T>(), x.data<T>(), w.data<T>(), x.size(0),
                             x.size(1), eps);
  });
}

void add_rms_norm_forward(Tensor& h, Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& a,
                          const Tensor& w, double eps) {
  constexpr const char* op = "add_rms_norm_forward";
  const Arg ha{"h", h}, ya{"y", y}, ra{"rstd", rstd}, xa{"x", x}, aa{"a", a}, wa{"w", w};
  detail::check_rank(op, xa, 2);
  detail::check_same_shape(op, aa, xa);
  detail::check_same_shape(op, ha, xa);
  detail::check_shape(op, wa, {x.size(1)}, xa);
  detail::check_same_shape(op, ya, xa);
  detail::check_shape(op, ra, {x.size(0)}, xa);
  if (!(eps >= 0.0)) detail::fail(op, str("eps = ", eps, " must be >= 0"));
  if (detail::check_device(op, {ha, ya, ra, xa, aa, wa}) == Device::cuda) {
    const DType dt = check_cuda_norm_dtypes(op, {ha, ya, xa, aa, wa}, ra);
    cuda::add_rms_norm_forward(dt, h.raw(), y.raw(), static_cast<float*>(rstd.raw()), x.raw(),
                               a.raw(), w.raw(), x.size(0), x.size(1), static_cast<float>(eps));
    return;
  }
  const DType dt = detail::check_float(op, {ha, ya, ra, xa, aa, wa});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::add_rms_norm_forward<T>(h.data<T>(), y.data<T>(), rstd.data<T>(), x.data<T>(), a.data<T>(),
                                 w.data<T>(), x.size(0), x.size(1), eps);
  });
}

void rms_norm_backward(Tensor& dx, Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                       const Tensor& rstd, const Tensor& residual) {
  constexpr const char* op = "rms_norm_backward";
  const Arg dxa{"dx", dx}, dwa{"dw", dw}, dya{"dy", dy}, xa{"x", x}, wa{"w", w}, ra{"rstd", rstd},
      resa{"residual", residual};
  detail::check_rank(op, xa, 2);
  detail::check_shape(op, wa, {x.size(1)}, xa);
  detail::check_shape(op, ra, {x.size(0)}, xa);
  detail::check_same_shape(op, dya, xa);
  detail::check_same_shape(op, dxa, xa);
  const bool cuda = detail::check_device(op, {dxa, dya, xa, wa, ra}) == Device::cuda;
  const DType dt = cuda ? check_cuda_norm_dtypes(op, {dxa, dya, xa, wa}, ra)
                        : detail::check_float(op, {dxa, dya, xa, wa, ra});
  // dw is undefined for a frozen weight, residual when there is nothing to add.
  check_optional(op, {{&dwa, &wa}, {&resa, &xa}}, xa, cuda);
  const bool with_dw = dw.defined(), with_res = residual.defined();
  if (with_res) detail::check_no_overlap(op, dxa, resa);  // dx may alias dy, not residual
  if (cuda) {
    cuda::rms_norm_backward(dt, dx.raw(), with_dw ? dw.raw() : nullptr, dy.raw(), x.raw(), w.raw(),
                            static_cast<const float*>(rstd.raw()),
                            with_res ? residual.raw() : nullptr, x.size(0), x.size(1));
    return;
  }
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::rms_norm_backward<T>(dx.data<T>(), with_dw ? dw.data<T>() : nullptr, dy.data<T>(),
                              x.data<T>(), w.data<T>(), rstd.data<T>(),
                              with_res ? residual.data<T>() : nullptr, x.size(0), x.size(1));
  });
}

void layer_norm_forward(Tensor& y, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& w,
                        const Tensor& b, double eps) {
  constexpr const char* op = "layer_norm_forward";
  const Arg ya{"y", y}, ma{"mean", mean}, ra{"rstd", rstd}, xa{"x", x}, wa{"w", w}, ba{"b", b};
  detail::check_rank(op, xa, 2);
  detail::check_shape(op, wa, {x.size(1)}, xa);
  detail::check_shape(op, ba, {x.size(1)}, xa);
  detail::check_same_shape(op, ya, xa);
  detail::check_shape(op, ma, {x.size(0)}, xa);
  detail::check_shape(op, ra, {x.size(0)}, xa);
  if (!(eps >= 0.0)) detail::fail(op, str("eps = ", eps, " must be >= 0"));
  if (detail::check_device(op, {ya, ma, ra, xa, wa, ba}) == Device::cuda) {
    const DType dt = check_cuda_norm_dtypes(op, {ya, xa, wa, ba}, ra);
    check_cuda_norm_dtypes(op, {xa}, ma);
    cuda::layer_norm_forward(dt, y.raw(), static_cast<float*>(mean.raw()),
                             static_cast<float*>(rstd.raw()), x.raw(), w.raw(), b.raw(), x.size(0),
                             x.size(1), static_cast<float>(eps));
    return;
  }
  const DType dt = detail::check_float(op, {ya, ma, ra, xa, wa, ba});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::layer_norm_forward<T>(y.data<T>(), mean.data<T>(), rstd.data<T>(), x.data<T>(),
                               w.data<T>(), b.data<T>(), x.size(0), x.size(1), eps);
  });
}

void add_layer_norm_forward(Tensor& h, Tensor& y, Tensor& mean, Tensor& rstd, const Tensor& x,
                            const Tensor& a, const Tensor& w, const Tensor& b, double eps) {
  constexpr const char* op = "add_layer_norm_forward";
  const Arg ha{"h", h}, ya{"y", y}, ma{"mean", mean}, ra{"rstd", rstd}, xa{"x", x}, aa{"a", a},
      wa{"w", w}, ba{"b", b};
  detail::check_rank(op, xa, 2);
  detail::check_same_shape(op, aa, xa);
  detail::check_same_shape(op, ha, xa);
  detail::check_shape(op, wa, {x.size(1)}, xa);
  detail::check_shape(op, ba, {x.size(1)}, xa);
  detail::check_same_shape(op, ya, xa);
  detail::check_shape(op, ma, {x.size(0)}, xa);
  detail::check_shape(op, ra, {x.size(0)}, xa);
  if (!(eps >= 0.0)) detail::fail(op, str("eps = ", eps, " must be >= 0"));
  if (detail::check_device(op, {ha, ya, ma, ra, xa, aa, wa, ba}) == Device::cuda) {
    const DType dt = check_cuda_norm_dtypes(op, {ha, ya, xa, aa, wa, ba}, ra);
    check_cuda_norm_dtypes(op, {xa}, ma);
    cuda::add_layer_norm_forward(dt, h.raw(), y.raw(), static_cast<float*>(mean.raw()),
                                 static_cast<float*>(rstd.raw()), x.raw(), a.raw(), w.raw(),
                                 b.raw(), x.size(0), x.size(1), static_cast<float>(eps));
    return;
  }
  const DType dt = detail::check_float(op, {ha, ya, ma, ra, xa, aa, wa, ba});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::add_layer_norm_forward<T>(h.data<T>(), y.data<T>(), mean.data<T>(), rstd.data<T>(),
                                   x.data<T>(), a.data<T>(), w.data<T>(), b.data<T>(), x.size(0),
                                   x.size(1), eps);
  });
}

void layer_norm_backward(Tensor& dx, Tensor& dw, Tensor& db, const Tensor& dy, const Tensor& x,
                         const Tensor& w, const Tensor& mean, const Tensor& rstd,
                         const Tensor& residual) {
  constexpr const char* op = "layer_norm_backward";
  const Arg dxa{"dx", dx}, dwa{"dw", dw}, dba{"db", db}, dya{"dy", dy}, xa{"x", x}, wa{"w", w},
      ma{"mean", mean}, ra{"rstd", rstd}, resa{"residual", residual};
  detail::check_rank(op, xa, 2);
  detail::check_shape(op, wa, {x.size(1)}, xa);
  detail::check_shape(op, ma, {x.size(0)}, xa);
  detail::check_shape(op, ra, {x.size(0)}, xa);
  detail::check_same_shape(op, dya, xa);
  detail::check_same_shape(op, dxa, xa);
  const bool cuda = detail::check_device(op, {dxa, dya, xa, wa, ma, ra}) == Device::cuda;
  const DType dt = cuda ? check_cuda_norm_dtypes(op, {dxa, dya, xa, wa}, ra)
                        : detail::check_float(op, {dxa, dya, xa, wa, ma, ra});
  if (cuda) check_cuda_norm_dtypes(op, {xa}, ma);
  // dw, db are undefined for a frozen weight or bias, residual when there is nothing to add.
  check_optional(op, {{&dwa, &wa}, {&dba, &wa}, {&resa, &xa}}, xa, cuda);
  const bool with_res = residual.defined();
  if (with_res) detail::check_no_overlap(op, dxa, resa);  // dx may alias dy, not residual
  if (cuda) {
    cuda::layer_norm_backward(dt, dx.raw(), dw.defined() ? dw.raw() : nullptr,
                              db.defined() ? db.raw() : nullptr, dy.raw(), x.raw(), w.raw(),
                              static_cast<const float*>(mean.raw()),
                              static_cast<const float*>(rstd.raw()),
                              with_res ? residual.raw() : nullptr, x.size(0), x.size(1));
    return;
  }
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::layer_norm_backward<T>(dx.data<T>(), dw.defined() ? dw.data<T>() : nullptr,
                                db.defined() ? db.data<T>() : nullptr, dy.data<T>(), x.data<T>(),
                                w.data<T>(), mean.data<T>(), rstd.data<T>(),
                                with_res ? residual.data<T>() : nullptr, x.size(0), x.size(1));
  });
}

}  // namespace tune::ops
