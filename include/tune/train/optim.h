// Optimizers over a ParamStore's flat trainable buffer, matching torch.optim's single-tensor path
// (foreach=False, fused=False) bit for bit where torch's kernels fuse multiply-adds (AVX2 CPUs,
// GPUs) and within one rounding elsewhere, and gradient-norm clipping matching
// torch.nn.utils.clip_grad_norm_.
//
// State (exp_avg, exp_avg_sq, the momentum buffer) has the trainable buffer's layout, so an update
// is one elementwise loop per run of parameters, a ZeRO shard is an offset range of it, and a
// checkpoint stores it next to the weights under the same names and offsets. The padding between
// parameters has gradient 0 and therefore stays 0 in weights and state alike.
//
// The learning rate is an argument of step(), not state: the scheduler decides it each step, so
// the config's lr is only the base value a scheduler starts from.
#pragma once

#include <cstdint>
#include <vector>

#include "tune/core/tensor.h"
#include "tune/nn/params.h"

namespace tune::train {

// A maximal range [begin, end) of the trainable buffer holding adjacent parameters with the same
// decay flag, the padding after each included. An optimizer updates each run as one view, so a
// model with interleaved decayed and undecayed parameters costs a few loops, not one per tensor.
struct DecayRun {
  int64_t begin = 0, end = 0;
  nn::Decay decay = nn::Decay::yes;
};
// The runs covering [0, trainable_numel) in order; empty when nothing is trainable.
std::vector<DecayRun> decay_runs(const nn::ParamStore& params);

struct AdamWConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // applied only to parameters whose Decay is yes
};

// torch.optim.AdamW with two parameter groups: Decay::yes parameters get cfg.weight_decay,
// Decay::no parameters (norms, biases, by the model's choice) get 0.
class AdamW {
 public:
  // `params` must be allocated and outlive the optimizer. Throws on out-of-range settings, as
  // torch does (lr, eps, weight_decay >= 0; betas in [0, 1)).
  AdamW(nn::ParamStore& params, AdamWConfig cfg);

  // One update of every trainable parameter from params.grads() with this step's learning rate.
  void step(double lr);
  int64_t steps_taken() const { return steps_; }
  const AdamWConfig& config() const { return cfg_; }

  // State for checkpoints: first and second moments (the trainable buffer's layout, zeros at
  // first) and the number of updates done, which sets the next bias correction.
  Tensor& exp_avg() { return m_; }
  Tensor& exp_avg_sq() { return v_; }
  void set_steps_taken(int64_t steps);

 private:
  nn::ParamStore& params_;
  AdamWConfig cfg_;
  std::vector<DecayRun> runs_;
  Tensor m_, v_;  // [trainable_numel]
  int64_t steps_ = 0;
};

struct SgdConfig {
  double lr = 1e-2;
  double momentum = 0.0;
  double weight_decay = 0.0;  // L2 added to the gradient, only for Decay::yes parameters
};

// torch.optim.SGD (dampening 0, not Nesterov), with the same two groups as AdamW.
class Sgd {
 public:
  Sgd(nn::ParamStore& params, SgdConfig cfg);

  void step(double lr);
  int64_t steps_taken() const { return steps_; }
  const SgdConfig& config() const { return cfg_; }

  // State for checkpoints. The buffer is undefined when momentum is 0 (torch keeps none either);
  // it is taken as-is after set_steps_taken(k >= 1), and overwritten by the first step otherwise.
  Tensor& momentum_buffer() { return buf_; }
  void set_steps_taken(int64_t steps);

 private:
  nn::ParamStore& params_;
  SgdConfig cfg_;
  std::vector<DecayRun> runs_;
  Tensor buf_;  // [trainable_numel], or undefined without momentum
  int64_t steps_ = 0;
};

// The L2 norm of all trainable gradients together, as if concatenated: sqrt of their sum of
// squares accumulated in double. 0 when nothing is trainable.
double grad_norm(const nn::ParamStore& params);

// torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2): returns the norm before clipping and,
// when max_norm > 0 and max_norm / (norm + 1e-6) < 1, scales every gradient by that factor
// (computed in the gradients' dtype, as torch does, so the scaled gradients match its bits).
// max_norm <= 0 only measures. A NaN or infinite norm throws tune::Error whatever max_norm is
// (torch's error_if_nonfinite=True): an update from such a gradient would ruin the weights.
double clip_grad_norm(nn::ParamStore& params, double max_norm);

}  // namespace tune::train
