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
//
// Mixed precision: when the parameters are bf16 or f16 (training on CUDA), the optimizer keeps
// f32 master weights of the trainable parameters and f32 moments, on the parameters' device; each
// step updates the masters from the low-precision gradients and rounds them into the parameters
// (ops::adamw_update_mixed). Small updates then accumulate in the masters instead of being lost
// to bf16's 8-bit mantissa. Frozen parameters have no master: they never change.
class AdamW {
 public:
  // `params` must be allocated and outlive the optimizer. Throws on out-of-range settings, as
  // torch does (lr, eps, weight_decay >= 0; betas in [0, 1)).
  AdamW(nn::ParamStore& params, AdamWConfig cfg);

  // One update of every trainable parameter from grad_scale * params.grads() with this step's
  // learning rate. grad_scale folds gradient clipping and f16's loss-scale unscaling into the
  // update (1: the gradients as they are).
  void step(double lr, double grad_scale = 1.0);
  int64_t steps_taken() const { return steps_; }
  const AdamWConfig& config() const { return cfg_; }
  bool mixed_precision() const { return master_.defined(); }

  // State for checkpoints, in the trainable buffer's layout: the weights the optimizer updates
  // (the f32 masters under mixed precision, else the trainable buffer itself), first and second
  // moments (zeros at first) and the number of updates done, which sets the next bias correction.
  Tensor& weights() { return master_.defined() ? master_ : params_.trainable(); }
  Tensor& exp_avg() { return m_; }
  Tensor& exp_avg_sq() { return v_; }
  void set_steps_taken(int64_t steps);
  // After weights() was written (a checkpoint restored): the parameters = the masters, rounded.
  void weights_changed();

 private:
  nn::ParamStore& params_;
  AdamWConfig cfg_;
  std::vector<DecayRun> runs_;
  Tensor master_;  // [trainable_numel] f32 under mixed precision, else undefined
  Tensor m_, v_;   // [trainable_numel]
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

// The factor clip_grad_norm scales by for a gradient norm `norm` (computed in f32, as torch does
// for f32 gradients): min(1, max_norm / (norm + 1e-6)); 1 when max_norm <= 0. Mixed-precision
// training passes it to AdamW::step instead of scaling the gradients in a pass of their own.
double clip_factor(double norm, double max_norm);

// f16's dynamic loss scaling, with torch.amp.GradScaler's defaults: backward runs on the loss
// times scale() so that small gradients do not flush to zero in f16; a step whose gradients are
// not finite is skipped and the scale halved; after `growth_interval` finite steps in a row the
// scale doubles. Its state travels in checkpoints, so a resumed run scales exactly as before.
class LossScaler {
 public:
  explicit LossScaler(double initial_scale = 65536.0, int64_t growth_interval = 2000);
  double scale() const { return scale_; }
  // After backward, with whether the (scaled) gradients were all finite: true when the step
  // may update the weights. Adjusts the scale either way.
  bool update(bool finite);
  int64_t finite_steps() const { return finite_steps_; }
  void restore(double scale, int64_t finite_steps);

 private:
  double scale_;
  int64_t growth_interval_, finite_steps_ = 0;
};

}  // namespace tune::train
