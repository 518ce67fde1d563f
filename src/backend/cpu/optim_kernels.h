// CPU kernels of the optimizer updates: elementwise over flat buffers, so a run is one loop, the
// result does not depend on the thread count, and a ZeRO shard is just a shorter range.
//
// The per-step scalars are computed once in double, exactly as torch's Python code computes them,
// and cast to the tensor's type; the elementwise math then runs in that type (float for f32) in
// torch's order of operations and with its roundings, so an update matches torch.optim bit for
// bit (torch 2.x on an AVX2 CPU; within one rounding of any other torch build). The callers
// (src/ops/optim.cpp) have checked sizes, dtypes and devices.
#pragma once

#include <cstdint>

namespace tune::cpu {

// torch.optim.AdamW's single-tensor step (foreach=False, fused=False), per element, where
// fma(a, b, c) = a * b + c rounded once, as torch's kernels round on AVX2 CPUs and on GPUs:
//   p = p * decay                           param.mul_(1 - lr * weight_decay)
//   m = fma(m_weight, g - m, m)             exp_avg.lerp_(grad, 1 - beta1)
//   v = fma(v_weight * g, g, v * beta2)     exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
//   d = sqrt(v) / bias_correction2_sqrt + eps
//   p = p + (neg_step_size * m) / d         param.addcdiv_(exp_avg, denom, value=-step_size)
// (lerp with a weight >= 0.5 is fma(m_weight - 1, g - m, g), as in torch.)
struct AdamWScalars {
  double decay;     // 1 - lr * weight_decay
  double m_weight;  // 1 - beta1
  double beta2;
  double v_weight;               // 1 - beta2
  double bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  double eps;
  double neg_step_size;  // -lr / (1 - beta1^step)
};
AdamWScalars adamw_scalars(double lr, double beta1, double beta2, double eps, double weight_decay,
                           int64_t step);

// param, grad, m, v: n elements each. T is float or double.
template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWScalars& s);

// torch.optim.SGD's single-tensor step (dampening 0, not Nesterov), per element:
//   d = weight_decay != 0 ? fma(weight_decay, p, g) : g    grad.add(param, alpha=weight_decay)
//   with momentum: buf = first_step ? d : buf * momentum + d;  d = buf
//   p = fma(-lr, d, p)                                     param.add_(d_p, alpha=-lr)
// momentum_buf is unused (may be null) when momentum is 0.
enum class FirstStep : uint8_t { no, yes };
template <typename T>
void sgd_update(T* param, const T* grad, T* momentum_buf, int64_t n, double lr, double momentum,
                double weight_decay, FirstStep first_step);

}  // namespace tune::cpu
