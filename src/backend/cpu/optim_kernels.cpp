// Optimizer kernels. Every scalar is cast to T once before the loop, as torch casts a Python
// scalar to the tensor's type inside its kernels. Where torch computes `a + s * b` (add_ with
// alpha, addcmul_, lerp_), its CPU kernels on AVX2/AVX-512 machines and its CUDA kernels round
// once, as a fused multiply-add, so we call std::fma there: that reproduces torch 2.x bit for bit
// (tests/unit/optim_test.cpp), and std::fma is correctly rounded on every CPU, so the result does
// not depend on the machine or on -march. The loops are elementwise, so splitting them over
// threads or shards changes nothing in the result.
#include "backend/cpu/optim_kernels.h"

#include <cmath>

// Everything else must round as torch does: a separate op per multiply and add. Compilers fuse
// a * b + c into an FMA by default when the target has one (-march=native, TUNE_NATIVE),
// which would fuse e.g. buf * momentum + d where torch rounds the product first.
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace tune::cpu {

namespace {
// Below this many elements a parallel region costs more than the loop.
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

AdamWScalars adamw_scalars(double lr, double beta1, double beta2, double eps, double weight_decay,
                           int64_t step) {
  // Python floats are doubles: these lines are torch/optim/adamw.py's, in its order.
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const double step_size = lr / bias_correction1;
  return AdamWScalars{
      .decay = 1.0 - lr * weight_decay,
      .m_weight = 1.0 - beta1,
      .beta2 = beta2,
      .v_weight = 1.0 - beta2,
      .bias_correction2_sqrt = std::sqrt(bias_correction2),
      .eps = eps,
      .neg_step_size = -step_size,
  };
}

template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWScalars& s) {
  const T decay = static_cast<T>(s.decay);
  const T m_weight = static_cast<T>(s.m_weight);
  const T beta2 = static_cast<T>(s.beta2);
  const T v_weight = static_cast<T>(s.v_weight);
  const T bc2_sqrt = static_cast<T>(s.bias_correction2_sqrt);
  const T eps = static_cast<T>(s.eps);
  const T neg_step_size = static_cast<T>(s.neg_step_size);
  // torch's lerp switches formula at weight 0.5 so that both ends stay exact (ATen Lerp.h); its
  // vectorized form is fma(w, end - self, self) or fma(w - 1, end - self, end).
  const bool small_weight = std::abs(m_weight) < T(0.5);
  const T lerp_coeff = small_weight ? m_weight : m_weight - T(1);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i];
    const T p = param[i] * decay;
    const T mi = std::fma(lerp_coeff, g - m[i], small_weight ? m[i] : g);
    const T vi = std::fma(v_weight * g, g, v[i] * beta2);  // addcmul_: self + (s * t1) * t2
    const T denom = std::sqrt(vi) / bc2_sqrt + eps;
    m[i] = mi;
    v[i] = vi;
    param[i] = p + neg_step_size * mi / denom;  // addcdiv_: self + (s * t1) / t2, no fma
  }
}

template <typename T>
void sgd_update(T* param, const T* grad, T* momentum_buf, int64_t n, double lr, double momentum,
                double weight_decay, FirstStep first_step) {
  const T neg_lr = static_cast<T>(-lr);
  const T mu = static_cast<T>(momentum);
  const T wd = static_cast<T>(weight_decay);
  // torch skips the decay term when weight_decay == 0 (so an inf parameter stays inf, not NaN)
  // and touches the buffer only with momentum.
  const bool decay = weight_decay != 0.0;
  const bool use_momentum = momentum != 0.0;
  const bool first = first_step == FirstStep::yes;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    T d = grad[i];
    if (decay) d = std::fma(wd, param[i], d);  // grad.add(param, alpha=weight_decay)
    if (use_momentum) {
      // buf.mul_(momentum).add_(d_p, alpha=1 - dampening): with dampening 0, alpha 1 is exact,
      // so the fused and the plain sum agree.
      d = first ? d : momentum_buf[i] * mu + d;
      momentum_buf[i] = d;
    }
    param[i] = std::fma(neg_lr, d, param[i]);  // param.add_(d_p, alpha=-lr)
  }
}

template void adamw_update<float>(float*, const float*, float*, float*, int64_t,
                                  const AdamWScalars&);
template void adamw_update<double>(double*, const double*, double*, double*, int64_t,
                                   const AdamWScalars&);
template void sgd_update<float>(float*, const float*, float*, int64_t, double, double, double,
                                FirstStep);
template void sgd_update<double>(double*, const double*, double*, int64_t, double, double, double,
                                 FirstStep);

}  // namespace tune::cpu
