// Optimizer kernels. Every scalar is cast to T once before the loop, as torch casts a Python
// scalar to the tensor's type inside its kernels. Where torch computes `a + s * b` (add_ with
// alpha, addcmul_, lerp_), its CPU kernels on AVX2/AVX-512 machines and its CUDA kernels round
// once, as a fused multiply-add, so we call fma there: that reproduces torch 2.x bit for bit
// (tests/unit/optim_test.cpp), and fma is correctly rounded on every CPU, so the result does
// not depend on the machine or on -march. The loops are elementwise, so splitting them over
// threads or shards changes nothing in the result.
//
// The default build targets baseline x86-64, which has no FMA instruction: there fma is a
// call to libm's fmaf per element, and a loop with a call does not vectorize. So each loop is
// also compiled for AVX2 + FMA (a target attribute, not a global -march: the binary still runs
// on any x86-64) and picked at run time. Both variants inline the same per-element function, and
// the FMA instruction rounds exactly as the libm call does, so the choice never changes a bit.
#include "backend/cpu/optim_kernels.h"

#include <cmath>

// Everything else must round as torch does: a separate op per multiply and add. Compilers fuse
// a * b + c into an FMA by default when the target has one (-march=native, TUNE_NATIVE, and the
// AVX2 + FMA variants below), which would fuse e.g. buf * momentum + d where torch rounds the
// product first.
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

// A loop calling sqrtf vectorizes only if the call cannot set errno: otherwise GCC keeps a
// branch to libm for negative arguments. -fno-math-errno would say so, but GCC reads it for the
// whole build only (an optimize pragma or attribute does not reach the builtin's declaration),
// so this declaration says it for sqrtf here. Nothing here reads errno, and a square root is
// the same correctly rounded IEEE operation with or without it. (Double is left alone: it is
// for the gradient checks, not for speed.)
extern "C" float sqrtf(float) noexcept __attribute__((const));

namespace tune::cpu {

namespace {
// Below this many elements a parallel region costs more than the loop.
constexpr int64_t kParallelMin = 1 << 15;

// The step's scalars in T, and the branches they decide, fixed before the loop.
template <typename T>
struct AdamWCoeffs {
  T decay, lerp_coeff, v_weight, beta2, bc2_sqrt, eps, neg_step_size;
  bool small_weight;
};

template <typename T>
struct SgdCoeffs {
  T neg_lr, mu, wd;
  bool decay, use_momentum, first;
};

// fma and sqrt through the builtins: std::fma and std::sqrt are defined in <cmath>, before the
// pragma above, and GCC does not inline a function compiled with other optimize options, which
// would leave a call in the loop. always_inline: each loop variant below must inline these, so
// that fma compiles for that variant's target (an instruction with FMA, a libm call without).
[[gnu::always_inline]] inline float fma(float a, float b, float c) {
  return __builtin_fmaf(a, b, c);
}
[[gnu::always_inline]] inline double fma(double a, double b, double c) {
  return __builtin_fma(a, b, c);
}
[[gnu::always_inline]] inline float sqrt(float x) {
  return ::sqrtf(x);
}
[[gnu::always_inline]] inline double sqrt(double x) {
  return __builtin_sqrt(x);
}

template <typename T>
[[gnu::always_inline]] inline void adamw_element(T* param, const T* grad, T* m, T* v, int64_t i,
                                                 const AdamWCoeffs<T>& c) {
  const T g = grad[i];
  const T p = param[i] * c.decay;
  const T mi = fma(c.lerp_coeff, g - m[i], c.small_weight ? m[i] : g);
  const T vi = fma(c.v_weight * g, g, v[i] * c.beta2);  // addcmul_: self + (s * t1) * t2
  const T denom = sqrt(vi) / c.bc2_sqrt + c.eps;
  m[i] = mi;
  v[i] = vi;
  param[i] = p + c.neg_step_size * mi / denom;  // addcdiv_: self + (s * t1) / t2, no fma
}

template <typename T>
[[gnu::always_inline]] inline void sgd_element(T* param, const T* grad, T* momentum_buf, int64_t i,
                                               const SgdCoeffs<T>& c) {
  T d = grad[i];
  if (c.decay) d = fma(c.wd, param[i], d);  // grad.add(param, alpha=weight_decay)
  if (c.use_momentum) {
    // buf.mul_(momentum).add_(d_p, alpha=1 - dampening): with dampening 0, alpha 1 is exact,
    // so the fused and the plain sum agree.
    d = c.first ? d : momentum_buf[i] * c.mu + d;
    momentum_buf[i] = d;
  }
  param[i] = fma(c.neg_lr, d, param[i]);  // param.add_(d_p, alpha=-lr)
}

// The loops, once per target. The parallel-for sits inside each variant so that OpenMP's
// outlined body inherits the variant's target; firstprivate gives each thread its own copy of
// the coefficients, which the compiler then knows no store through param can change.
template <typename T>
void adamw_loop(T* param, const T* grad, T* m, T* v, int64_t n, AdamWCoeffs<T> c) {
#pragma omp parallel for schedule(static) firstprivate(c) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) adamw_element(param, grad, m, v, i, c);
}

template <typename T>
void sgd_loop(T* param, const T* grad, T* momentum_buf, int64_t n, SgdCoeffs<T> c) {
#pragma omp parallel for schedule(static) firstprivate(c) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) sgd_element(param, grad, momentum_buf, i, c);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TUNE_OPTIM_AVX2 1

template <typename T>
__attribute__((target("avx2,fma"))) void adamw_loop_avx2(T* param, const T* grad, T* m, T* v,
                                                         int64_t n, AdamWCoeffs<T> c) {
#pragma omp parallel for schedule(static) firstprivate(c) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) adamw_element(param, grad, m, v, i, c);
}

template <typename T>
__attribute__((target("avx2,fma"))) void sgd_loop_avx2(T* param, const T* grad, T* momentum_buf,
                                                       int64_t n, SgdCoeffs<T> c) {
#pragma omp parallel for schedule(static) firstprivate(c) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) sgd_element(param, grad, momentum_buf, i, c);
}

bool cpu_has_avx2_fma() {
  static const bool yes = [] {
    __builtin_cpu_init();  // required if first called before libgcc's constructors have run
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}
#endif

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
  const T m_weight = static_cast<T>(s.m_weight);
  // torch's lerp switches formula at weight 0.5 so that both ends stay exact (ATen Lerp.h); its
  // vectorized form is fma(w, end - self, self) or fma(w - 1, end - self, end).
  const bool small_weight = std::abs(m_weight) < T(0.5);
  const AdamWCoeffs<T> c{
      .decay = static_cast<T>(s.decay),
      .lerp_coeff = small_weight ? m_weight : m_weight - T(1),
      .v_weight = static_cast<T>(s.v_weight),
      .beta2 = static_cast<T>(s.beta2),
      .bc2_sqrt = static_cast<T>(s.bias_correction2_sqrt),
      .eps = static_cast<T>(s.eps),
      .neg_step_size = static_cast<T>(s.neg_step_size),
      .small_weight = small_weight,
  };
#ifdef TUNE_OPTIM_AVX2
  if (cpu_has_avx2_fma()) return adamw_loop_avx2(param, grad, m, v, n, c);
#endif
  adamw_loop(param, grad, m, v, n, c);
}

template <typename T>
void sgd_update(T* param, const T* grad, T* momentum_buf, int64_t n, double lr, double momentum,
                double weight_decay, FirstStep first_step) {
  // torch skips the decay term when weight_decay == 0 (so an inf parameter stays inf, not NaN)
  // and touches the buffer only with momentum.
  const SgdCoeffs<T> c{
      .neg_lr = static_cast<T>(-lr),
      .mu = static_cast<T>(momentum),
      .wd = static_cast<T>(weight_decay),
      .decay = weight_decay != 0.0,
      .use_momentum = momentum != 0.0,
      .first = first_step == FirstStep::yes,
  };
#ifdef TUNE_OPTIM_AVX2
  if (cpu_has_avx2_fma()) return sgd_loop_avx2(param, grad, momentum_buf, n, c);
#endif
  sgd_loop(param, grad, momentum_buf, n, c);
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
