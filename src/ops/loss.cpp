// Cross-entropy over rows of logits with integer targets (-100 ignored), and the target count
// callers divide by.
#include "backend/cpu/cpu_kernels.h"
#include "backend/cuda/loss_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

namespace {
constexpr int64_t kIgnoreIndex = -100;
}  // namespace

double cross_entropy(Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                     double grad_scale) {
  constexpr const char* op = "cross_entropy";
  const Arg da{"dlogits", dlogits}, la{"logits", logits}, ta{"targets", targets};
  detail::check_rank(op, la, 2);
  detail::check_shape(op, ta, {logits.size(0)}, la);
  const int64_t n = logits.size(0), v = logits.size(1);
  if (v == 0) detail::fail(op, str("logits has shape ", shape_str(logits.shape()), "; V is 0"));
  const bool with_grad = dlogits.defined();  // undefined: loss only (evaluation)
  if (with_grad) {
    detail::check_same_shape(op, da, la);
    // In place (dlogits is logits, to save an (N, V) buffer) or apart; never a partial overlap.
    if (dlogits.raw() != logits.raw()) detail::check_no_overlap(op, da, la);
  }
  const Device dev =
      with_grad ? detail::check_device(op, {da, la, ta}) : detail::check_device(op, {la, ta});
  if (dev == Device::cuda) {
    // f32 logits may hand back a bf16/f16 gradient (the output head of low-precision training).
    const DType dt = detail::check_cuda_float(op, {la});
    const bool mixed = with_grad && dt == DType::f32 && dlogits.dtype() != DType::f32;
    if (with_grad) detail::check_cuda_float(op, {da});
    if (with_grad && !mixed) detail::check_cuda_float(op, {da, la});
    if (mixed && dlogits.raw() == logits.raw())
      detail::fail(op, "an in-place gradient needs dlogits of the logits' dtype");
    detail::check_index(op, ta);
    // Targets stay on the device; the kernel reports the first bad row, read back here.
    const cuda::CrossEntropyResult res = cuda::cross_entropy(
        dt, with_grad ? dlogits.dtype() : dt, targets.dtype(), with_grad ? dlogits.raw() : nullptr,
        logits.raw(), targets.raw(), n, v, grad_scale);
    if (res.bad_row >= 0) {
      Tensor one = Tensor::empty({1}, targets.dtype());
      one.copy_from(targets.narrow(res.bad_row, 1));
      detail::fail(op, str("target ", static_cast<int64_t>(one.item(0)), " at row ", res.bad_row,
                           " is outside [0, ", v, ") for logits with shape ",
                           shape_str(logits.shape()), "; use -100 to ignore a row"));
    }
    return res.loss;
  }
  const DType dt = with_grad ? detail::check_float(op, {da, la}) : detail::check_float(op, {la});
  detail::check_index(op, ta);
  const int64_t bad = detail::first_out_of_range(targets, v, kIgnoreIndex);
  if (bad >= 0) {
    detail::fail(op, str("target ", static_cast<int64_t>(targets.item(bad)), " at row ", bad,
                         " is outside [0, ", v, ") for logits with shape ",
                         shape_str(logits.shape()), "; use -100 to ignore a row"));
  }
  double loss = 0;
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    detail::dispatch_index(targets.dtype(), [&](auto itag) {
      using I = decltype(itag);
      loss = cpu::cross_entropy<T, I>(with_grad ? dlogits.data<T>() : nullptr, logits.data<T>(),
                                      targets.data<I>(), n, v, grad_scale);
    });
  });
  return loss;
}

int64_t count_targets(const Tensor& targets) {
  constexpr const char* op = "count_targets";
  const Arg ta{"targets", targets};
  const bool cuda = detail::check_device(op, {ta}) == Device::cuda;
  detail::check_index(op, ta);
  // On CUDA: counted on the host (a copy of N ids, once per batch).
  const Tensor host = cuda ? targets.to(Device::cpu) : targets;
  int64_t count = 0;
  detail::dispatch_index(targets.dtype(), [&](auto itag) {
    using I = decltype(itag);
    const I* p = host.data<I>();
    for (int64_t i = 0; i < targets.numel(); ++i) count += p[i] != kIgnoreIndex;
  });
  return count;
}

}  // namespace tune::ops
