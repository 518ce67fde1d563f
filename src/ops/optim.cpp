// Optimizer updates: argument checks, then dispatch to the backend kernel. The kernels are
// elementwise, so the tensors need only the same number of elements (flat buffers or views of one
// parameter alike), not the same shape; one float dtype; one device; and no two of them may share
// memory, since each is read and written in the same pass.
#include <cmath>
#include <iterator>

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
  const bool cuda = device == Device::cuda;
  const DType dt = cuda ? (use_buf ? detail::check_cuda_float(kOp, {pa, ga, ba})
                                   : detail::check_cuda_float(kOp, {pa, ga}))
                        : (use_buf ? detail::check_float(kOp, {pa, ga, ba})
                                   : detail::check_float(kOp, {pa, ga}));
  if (cuda && dt != DType::f32)
    detail::fail(kOp, str("param is ", param.describe(), "; on CUDA SGD updates f32 buffers"));
  check_numel(kOp, ga, pa);
  detail::check_no_overlap(kOp, pa, ga);
  if (use_buf) {
    check_numel(kOp, ba, pa);
    detail::check_no_overlap(kOp, pa, ba);
    detail::check_no_overlap(kOp, ba, ga);
  }
  check_step(kOp, step);
  const cpu::FirstStep first = step == 1 ? cpu::FirstStep::yes : cpu::FirstStep::no;
  if (cuda) {
    cuda::sgd_update(param.data<float>(), grad.data<float>(),
                     use_buf ? momentum_buf.data<float>() : nullptr, param.numel(), lr, momentum,
                     weight_decay, first);
    return;
  }
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    T* buf = use_buf ? momentum_buf.data<T>() : nullptr;
    cpu::sgd_update<T>(param.data<T>(), grad.data<T>(), buf, param.numel(), lr, momentum,
                       weight_decay, first);
  });
}

void adamw_update_mixed(Tensor& master, Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                        double lr, double beta1, double beta2, double eps, double weight_decay,
                        int64_t step, double grad_scale) {
  constexpr const char* kOp = "adamw_update_mixed";
  const Arg sa{"master", master}, pa{"param", param}, ga{"grad", grad}, ma{"exp_avg", m},
      va{"exp_avg_sq", v};
  const bool cuda = detail::check_device(kOp, {sa, pa, ga, ma, va}) == Device::cuda;
  for (const Arg& a : {sa, ma, va}) {
    if (a.tensor.dtype() != DType::f32)
      detail::fail(kOp, str(a.name, " is ", a.tensor.describe(), "; it must be f32"));
  }
  // grad and param: the compute dtype, one of f32, bf16, f16 on either device.
  const DType dt = param.dtype();
  if (dt != DType::f32 && dt != DType::bf16 && dt != DType::f16)
    detail::fail(kOp, str("param is ", param.describe(), "; the compute copy is f32, bf16 or f16"));
  if (grad.dtype() != dt) {
    detail::fail(kOp, str("grad is ", grad.describe(), " but param is ", param.describe(),
                          "; the gradient comes in the compute dtype"));
  }
  for (const Arg& a : {pa, ga, ma, va}) check_numel(kOp, a, sa);
  const Arg all[] = {sa, pa, ga, ma, va};
  for (size_t i = 0; i < std::size(all); ++i) {
    for (size_t j = i + 1; j < std::size(all); ++j) detail::check_no_overlap(kOp, all[i], all[j]);
  }
  check_step(kOp, step);
  if (!std::isfinite(grad_scale))
    detail::fail(kOp, str("grad_scale = ", grad_scale, " is not finite"));
  const cpu::AdamWScalars s = cpu::adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
  const auto scale = static_cast<float>(grad_scale);
  if (cuda) {
    cuda::adamw_update_mixed(dt, master.data<float>(), param.raw(), grad.raw(), m.data<float>(),
                             v.data<float>(), master.numel(), s, scale);
    return;
  }
  // The CPU composes the f32 kernel: g = scale * grad in f32 (rounded once, as on CUDA), the
  // update of the master, then param = the master rounded to the compute dtype.
  Tensor g = grad;
  if (dt != DType::f32 || scale != 1.0f) {
    g = grad.to(DType::f32);  // a copy
    float* gp = g.data<float>();
    for (int64_t i = 0; i < g.numel(); ++i) gp[i] = gp[i] * scale;
  }
  cpu::adamw_update<float>(master.data<float>(), g.data<float>(), m.data<float>(), v.data<float>(),
                           master.numel(), s);
  param.copy_from(master);
}

}  // namespace tune::ops
