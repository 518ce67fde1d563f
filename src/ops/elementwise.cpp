// Elementwise ops, bias add and its backward, sum of squares, dropout. Elementwise tensors must
// have equal shapes (no broadcasting; views are free, so callers reshape instead).
#include "backend/cpu/cpu_kernels.h"
#include "backend/cuda/elementwise_kernels.h"
#include "backend/cuda/optim_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

namespace {

// Device and dtype checks common to every op here; returns the float dtype.
DType check_cpu_float(const char* op, std::initializer_list<Arg> args) {
  if (detail::check_device(op, args) == Device::cuda) detail::no_cuda_kernel(op);
  return detail::check_float(op, args);
}

// True when the tensors are on CUDA, after checking that they share one dtype the CUDA kernels
// take (f32, bf16, f16); false on the CPU, where the caller's CPU checks follow.
bool on_cuda(const char* op, std::initializer_list<Arg> args) {
  if (detail::check_device(op, args) != Device::cuda) return false;
  detail::check_cuda_float(op, args);
  return true;
}

}  // namespace

void fill(Tensor& x, double value) {
  if (on_cuda("fill", {{"x", x}})) return cuda::fill(x.dtype(), x.raw(), x.numel(), value);
  const DType dt = check_cpu_float("fill", {{"x", x}});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::fill<T>(x.data<T>(), x.numel(), static_cast<T>(value));
  });
}

void copy(Tensor& dst, const Tensor& src) {
  const Arg da{"dst", dst}, sa{"src", src};
  detail::check_same_shape("copy", da, sa);
  if (on_cuda("copy", {da, sa})) return cuda::copy(dst.dtype(), dst.raw(), src.raw(), dst.numel());
  const DType dt = check_cpu_float("copy", {da, sa});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::copy<T>(dst.data<T>(), src.data<T>(), dst.numel());
  });
}

void add(Tensor& out, const Tensor& a, const Tensor& b) {
  const Arg oa{"out", out}, aa{"a", a}, ba{"b", b};
  detail::check_same_shape("add", ba, aa);
  detail::check_same_shape("add", oa, aa);
  if (on_cuda("add", {oa, aa, ba})) {
    return cuda::add(out.dtype(), out.raw(), a.raw(), b.raw(), out.numel());
  }
  const DType dt = check_cpu_float("add", {oa, aa, ba});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::add<T>(out.data<T>(), a.data<T>(), b.data<T>(), out.numel());
  });
}

void add_inplace(Tensor& y, const Tensor& x, double alpha) {
  const Arg ya{"y", y}, xa{"x", x};
  detail::check_same_shape("add_inplace", xa, ya);
  if (on_cuda("add_inplace", {ya, xa})) {
    return cuda::add_inplace(y.dtype(), y.raw(), x.raw(), y.numel(), alpha);
  }
  const DType dt = check_cpu_float("add_inplace", {ya, xa});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::add_inplace<T>(y.data<T>(), x.data<T>(), y.numel(), static_cast<T>(alpha));
  });
}

void scale_inplace(Tensor& y, double alpha) {
  if (on_cuda("scale_inplace", {{"y", y}})) {
    return cuda::scale_inplace(y.dtype(), y.raw(), y.numel(), alpha);
  }
  const DType dt = check_cpu_float("scale_inplace", {{"y", y}});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::scale_inplace<T>(y.data<T>(), y.numel(), static_cast<T>(alpha));
  });
}

namespace {
// The column block [start, start + narrow.size(1)) of wide must exist, with as many rows.
void check_column_block(const char* op, const Arg& narrow, const Arg& wide, int64_t start) {
  detail::check_rank(op, narrow, 2);
  detail::check_rank(op, wide, 2);
  const Tensor &n = narrow.tensor, &w = wide.tensor;
  if (n.size(0) != w.size(0) || start < 0 || start + n.size(1) > w.size(1))
    detail::fail(op,
                 str("columns [", start, ", ", start + n.size(1), ") of ", wide.name, " ",
                     shape_str(w.shape()), " do not fit ", narrow.name, " ", shape_str(n.shape())));
}
}  // namespace

void slice_columns(Tensor& out, const Tensor& x, int64_t start) {
  constexpr const char* op = "slice_columns";
  const Arg oa{"out", out}, xa{"x", x};
  check_column_block(op, oa, xa, start);
  detail::check_no_overlap(op, oa, xa);
  if (on_cuda(op, {oa, xa})) {
    const size_t offset = static_cast<size_t>(start) * dtype_size(x.dtype());
    return cuda::copy_2d(x.dtype(), out.raw(), out.size(1),
                         static_cast<const char*>(x.raw()) + offset, x.size(1), x.size(0),
                         out.size(1));
  }
  const DType dt = check_cpu_float(op, {oa, xa});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::copy_2d<T>(out.data<T>(), out.size(1), x.data<T>() + start, x.size(1), x.size(0),
                    out.size(1));
  });
}

void write_columns(Tensor& out, int64_t start, const Tensor& x) {
  constexpr const char* op = "write_columns";
  const Arg oa{"out", out}, xa{"x", x};
  check_column_block(op, xa, oa, start);
  detail::check_no_overlap(op, oa, xa);
  if (on_cuda(op, {oa, xa})) {
    const size_t offset = static_cast<size_t>(start) * dtype_size(out.dtype());
    return cuda::copy_2d(out.dtype(), static_cast<char*>(out.raw()) + offset, out.size(1), x.raw(),
                         x.size(1), x.size(0), x.size(1));
  }
  const DType dt = check_cpu_float(op, {oa, xa});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::copy_2d<T>(out.data<T>() + start, out.size(1), x.data<T>(), x.size(1), x.size(0),
                    x.size(1));
  });
}

void add_bias(Tensor& y, const Tensor& b) {
  constexpr const char* op = "add_bias";
  const Arg ya{"y", y}, ba{"b", b};
  detail::check_rank(op, ya, 2);
  detail::check_shape(op, ba, {y.size(1)}, ya);
  if (on_cuda(op, {ya, ba}))
    return cuda::add_bias(y.dtype(), y.raw(), b.raw(), y.size(0), y.size(1));
  const DType dt = check_cpu_float(op, {ya, ba});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::add_bias<T>(y.data<T>(), b.data<T>(), y.size(0), y.size(1));
  });
}

void bias_backward(Tensor& db, const Tensor& dy) {
  constexpr const char* op = "bias_backward";
  const Arg da{"db", db}, ya{"dy", dy};
  detail::check_rank(op, ya, 2);
  detail::check_shape(op, da, {dy.size(1)}, ya);
  if (on_cuda(op, {da, ya})) {
    return cuda::bias_backward(db.dtype(), db.raw(), dy.raw(), dy.size(0), dy.size(1));
  }
  const DType dt = check_cpu_float(op, {da, ya});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::bias_backward<T>(db.data<T>(), dy.data<T>(), dy.size(0), dy.size(1));
  });
}

double sum_squares(const Tensor& x) {
  if (on_cuda("sum_squares", {{"x", x}})) return cuda::sum_squares(x.dtype(), x.raw(), x.numel());
  const DType dt = check_cpu_float("sum_squares", {{"x", x}});
  double total = 0;
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    total = cpu::sum_squares<T>(x.data<T>(), x.numel());
  });
  return total;
}

void dropout(Tensor& out, const Tensor& x, double p, uint64_t seed, uint64_t stream) {
  constexpr const char* op = "dropout";
  const Arg oa{"out", out}, xa{"x", x};
  detail::check_same_shape(op, oa, xa);
  if (!(p >= 0.0 && p < 1.0)) detail::fail(op, str("p = ", p, " is outside [0, 1)"));
  if (on_cuda(op, {oa, xa})) {
    if (p == 0.0) return cuda::copy(x.dtype(), out.raw(), x.raw(), x.numel());
    // The threshold and scale as the CPU kernel casts them (backend/cpu/elementwise.cpp).
    return cuda::dropout(x.dtype(), out.raw(), x.raw(), x.numel(), static_cast<float>(p),
                         static_cast<float>(1.0 / (1.0 - p)), seed, stream);
  }
  const DType dt = check_cpu_float(op, {oa, xa});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    if (p == 0.0) {
      cpu::copy<T>(out.data<T>(), x.data<T>(), x.numel());
    } else {
      cpu::dropout<T>(out.data<T>(), x.data<T>(), x.numel(), p, seed, stream);
    }
  });
}

}  // namespace tune::ops
