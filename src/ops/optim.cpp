// Optimizer updates: argument checks, then dispatch to the backend kernel. The kernels are
// elementwise, so the tensors need only the same number of elements (flat buffers or views of one
// parameter alike), not the same shape; one float dtype; one device; and no two of them may share
// memory, since each is read and written in the same pass.
#include "backend/cpu/optim_kernels.h"
#include "backend/cuda/optim_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

namespace {

void check_numel(const char* op, const Arg& a, const Arg& param) {
  if (a.tensor.numel() != param.tensor.numel()) {
    detail::fail(op, str(a.name, " has ", a.tensor.numel(), " elements but ", param.name, " has ",
                         param.tensor.numel(), " (", a.name, " ", a.tensor.describe(), ", ",
                         param.name, " ", param.tensor.describe(), ")"));
  }
}

void check_step(const char* op, int64_t step) {
  if (step < 1) detail::fail(op, str("step must be >= 1 (the first update is step 1), got ", step));
}

}  // namespace

void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, double lr, double beta1,
                  double beta2, double eps, double weight_decay, int64_t step) {
  constexpr const char* kOp = "adamw_update";
  const Arg pa{"param", param}, ga{"grad", grad}, ma{"exp_avg", m}, va{"exp_avg_sq", v};
  const bool cuda = detail::check_device(kOp, {pa, ga, ma, va}) == Device::cuda;
  // On CUDA: f32 only (master weights, gradients and moments are f32 there).
  const DType dt = cuda ? detail::check_cuda_float(kOp, {pa, ga, ma, va})
                        : detail::check_float(kOp, {pa, ga, ma, va});
  if (cuda && dt != DType::f32)
    detail::fail(kOp, str("param is ", param.describe(), "; on CUDA AdamW updates f32 buffers"));
  for (const Arg& a : {ga, ma, va}) check_numel(kOp, a, pa);
  for (const Arg& a : {ga, ma, va}) detail::check_no_overlap(kOp, pa, a);
  detail::check_no_overlap(kOp, ma, ga);
  detail::check_no_overlap(kOp, va, ga);
  detail::check_no_overlap(kOp, ma, va);
  check_step(kOp, step);
  const cpu::AdamWScalars s = cpu::adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
  if (cuda) {
    cuda::adamw_update(param.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(),
                       param.numel(), s);
    return;
  }
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::adamw_update<T>(param.data<T>(), grad.data<T>(), m.data<T>(), v.data<T>(), param.numel(),
                         s);
  });
}

void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, double lr, double momentum,
                double weight_decay, int64_t step) {
  constexpr const char* kOp = "sgd_update";
  const Arg pa{"param", param}, ga{"grad", grad}, ba{"momentum_buf", momentum_buf};
  // Without momentum torch keeps no buffer, so ours may be undefined and is never read.
  const bool use_buf = momentum != 0.0;
  const Device device =
      use_buf ? detail::check_device(kOp, {pa, ga, ba}) : detail::check_device(kOp, {pa, ga});
  if (device == Device::cuda) detail::no_cuda_kernel(kOp);
  const DType dt =
      use_buf ? detail::check_float(kOp, {pa, ga, ba}) : detail::check_float(kOp, {pa, ga});
  check_numel(kOp, ga, pa);
  detail::check_no_overlap(kOp, pa, ga);
  if (use_buf) {
    check_numel(kOp, ba, pa);
    detail::check_no_overlap(kOp, pa, ba);
    detail::check_no_overlap(kOp, ba, ga);
  }
  check_step(kOp, step);
  const cpu::FirstStep first = step == 1 ? cpu::FirstStep::yes : cpu::FirstStep::no;
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    T* buf = use_buf ? momentum_buf.data<T>() : nullptr;
    cpu::sgd_update<T>(param.data<T>(), grad.data<T>(), buf, param.numel(), lr, momentum,
                       weight_decay, first);
  });
}

}  // namespace tune::ops
