// Optimizers walk the trainable buffer run by run (see decay_runs) and hand each run to one op
// call on narrow() views of the weights, the gradients and their own state.
#include "tune/train/optim.h"

#include <algorithm>
#include <cmath>

#include "tune/ops/ops.h"

namespace tune::train {

namespace {

void check_allocated(const char* who, const nn::ParamStore& params) {
  TUNE_CHECK(params.allocated(), who, ": the ParamStore is not allocated yet; declare every ",
             "parameter and call allocate() before building the optimizer");
}

void check_lr(const char* who, double lr) {
  TUNE_CHECK(std::isfinite(lr) && lr >= 0.0, who, ": invalid learning rate ", lr,
             " (must be finite and >= 0)");
}

void check_steps(const char* who, int64_t steps) {
  TUNE_CHECK(steps >= 0, who, ": steps taken must be >= 0, got ", steps);
}

// torch's max_norm / (total_norm + 1e-6), where total_norm is a tensor of the gradients' dtype:
// computed in T, it scales the gradients by the same factor as torch, bit for bit.
template <typename T>
double clip_coef(double max_norm, double total) {
  return static_cast<double>(static_cast<T>(max_norm) /
                             (static_cast<T>(total) + static_cast<T>(1e-6)));
}

}  // namespace

std::vector<DecayRun> decay_runs(const nn::ParamStore& params) {
  std::vector<DecayRun> runs;
  // Trainable offsets grow in declaration order; a run ends where the next run's first
  // parameter starts, so the padding between parameters rides along with the one before it.
  for (const nn::ParamInfo& p : params.infos()) {
    if (p.role != nn::Role::trainable) continue;
    if (!runs.empty() && runs.back().decay == p.decay) continue;
    if (!runs.empty()) runs.back().end = p.offset;
    runs.push_back({p.offset, 0, p.decay});
  }
  if (!runs.empty()) runs.back().end = params.trainable_numel();
  return runs;
}

AdamW::AdamW(nn::ParamStore& params, AdamWConfig cfg) : params_(params), cfg_(cfg) {
  check_allocated("AdamW", params);
  check_lr("AdamW", cfg.lr);
  TUNE_CHECK(cfg.beta1 >= 0.0 && cfg.beta1 < 1.0, "AdamW: beta1 must be in [0, 1), got ",
             cfg.beta1);
  TUNE_CHECK(cfg.beta2 >= 0.0 && cfg.beta2 < 1.0, "AdamW: beta2 must be in [0, 1), got ",
             cfg.beta2);
  TUNE_CHECK(cfg.eps >= 0.0, "AdamW: eps must be >= 0, got ", cfg.eps);
  TUNE_CHECK(cfg.weight_decay >= 0.0, "AdamW: weight_decay must be >= 0, got ", cfg.weight_decay);
  runs_ = decay_runs(params);
  const bool mixed = params.dtype() == DType::bf16 || params.dtype() == DType::f16;
  const DType state = mixed ? DType::f32 : params.dtype();
  m_ = Tensor::zeros({params.trainable_numel()}, state, params.device());
  v_ = Tensor::zeros({params.trainable_numel()}, state, params.device());
  if (mixed) {
    // The masters start as the parameters' values (converted on the host: this happens once).
    master_ = params.trainable().to(Device::cpu).to(DType::f32).to(params.device());
  }
}

void AdamW::step(double lr, double grad_scale) {
  check_lr("AdamW::step", lr);
  TUNE_CHECK(std::isfinite(grad_scale), "AdamW::step: gradient scale ", grad_scale,
             " is not finite");
  ++steps_;
  Tensor& weights = params_.trainable();
  Tensor& grads = params_.grads();
  if (!master_.defined() && grad_scale != 1.0) ops::scale_inplace(grads, grad_scale);
  for (const DecayRun& r : runs_) {
    const int64_t n = r.end - r.begin;
    Tensor p = weights.narrow(r.begin, n), m = m_.narrow(r.begin, n), v = v_.narrow(r.begin, n);
    const Tensor g = grads.narrow(r.begin, n);
    const double wd = r.decay == nn::Decay::yes ? cfg_.weight_decay : 0.0;
    if (master_.defined()) {
      Tensor w = master_.narrow(r.begin, n);
      ops::adamw_update_mixed(w, p, g, m, v, lr, cfg_.beta1, cfg_.beta2, cfg_.eps, wd, steps_,
                              grad_scale);
    } else {
      ops::adamw_update(p, g, m, v, lr, cfg_.beta1, cfg_.beta2, cfg_.eps, wd, steps_);
    }
  }
}

void AdamW::weights_changed() {
  if (master_.defined()) params_.trainable().copy_from(master_.to(Device::cpu));
}

void AdamW::set_steps_taken(int64_t steps) {
  check_steps("AdamW", steps);
  steps_ = steps;
}

Sgd::Sgd(nn::ParamStore& params, SgdConfig cfg) : params_(params), cfg_(cfg) {
  check_allocated("Sgd", params);
  check_lr("Sgd", cfg.lr);
  TUNE_CHECK(cfg.momentum >= 0.0, "Sgd: momentum must be >= 0, got ", cfg.momentum);
  TUNE_CHECK(cfg.weight_decay >= 0.0, "Sgd: weight_decay must be >= 0, got ", cfg.weight_decay);
  runs_ = decay_runs(params);
  if (cfg.momentum != 0.0)
    buf_ = Tensor::zeros({params.trainable_numel()}, params.dtype(), params.device());
}

void Sgd::step(double lr) {
  check_lr("Sgd::step", lr);
  ++steps_;
  Tensor& weights = params_.trainable();
  Tensor& grads = params_.grads();
  for (const DecayRun& r : runs_) {
    const int64_t n = r.end - r.begin;
    Tensor p = weights.narrow(r.begin, n);
    Tensor buf = buf_.defined() ? buf_.narrow(r.begin, n) : Tensor();
    const double wd = r.decay == nn::Decay::yes ? cfg_.weight_decay : 0.0;
    ops::sgd_update(p, grads.narrow(r.begin, n), buf, lr, cfg_.momentum, wd, steps_);
  }
}

void Sgd::set_steps_taken(int64_t steps) {
  check_steps("Sgd", steps);
  steps_ = steps;
}

double grad_norm(const nn::ParamStore& params) {
  if (params.trainable_numel() == 0) return 0.0;
  // The padding is zero, so the flat buffer's sum of squares is the sum over parameters.
  return std::sqrt(ops::sum_squares(params.grads()));
}

double clip_grad_norm(nn::ParamStore& params, double max_norm) {
  const double total = grad_norm(params);
  TUNE_CHECK(std::isfinite(total), "clip_grad_norm: the gradient norm is ", total,
             " (NaN or inf), so this step's update would ruin the weights; lower the learning ",
             "rate (or raise warmup), or check the data for empty or broken examples");
  if (max_norm > 0.0) {
    const double coef = params.dtype() == DType::f32 ? clip_coef<float>(max_norm, total)
                                                     : clip_coef<double>(max_norm, total);
    if (coef < 1.0) ops::scale_inplace(params.grads(), coef);
  }
  return total;
}

double clip_factor(double norm, double max_norm) {
  if (max_norm <= 0.0) return 1.0;
  return std::min(1.0, clip_coef<float>(max_norm, norm));
}

LossScaler::LossScaler(double initial_scale, int64_t growth_interval)
    : scale_(initial_scale), growth_interval_(growth_interval) {
  TUNE_CHECK(initial_scale > 0 && growth_interval > 0, "LossScaler: bad settings ", initial_scale,
             ", ", growth_interval);
}

bool LossScaler::update(bool finite) {
  if (!finite) {
    scale_ = std::max(scale_ * 0.5, 1.0);  // below 1 would only make underflow worse
    finite_steps_ = 0;
    return false;
  }
  if (++finite_steps_ == growth_interval_) {
    scale_ *= 2.0;
    finite_steps_ = 0;
  }
  return true;
}

void LossScaler::restore(double scale, int64_t finite_steps) {
  TUNE_CHECK(scale > 0 && finite_steps >= 0, "LossScaler: bad state ", scale, ", ", finite_steps);
  scale_ = scale;
  finite_steps_ = finite_steps;
}

}  // namespace tune::train
