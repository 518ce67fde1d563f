#include "tune/nn/layers.h"

#include <cmath>
#include <vector>

#include "tune/ops/ops.h"

namespace tune::nn {

Embedding::Embedding(ParamStore& params, const std::string& module, int64_t vocab, int64_t dim,
                     Role role)
    : params_(&params), dim_(dim) {
  // Embeddings are decayed by torch's AdamW default (one group); the trainer decides groups.
  weight_ = params.add(module + ".weight", {vocab, dim}, role, Decay::yes);
}

Tensor Embedding::forward(Context& ctx, const Tensor& ids) {
  Tensor out = ctx.arena.alloc({ids.numel(), dim_}, ctx.dtype);
  ops::embedding_forward(out, ids.view({-1}), params_->param(weight_));
  ids_ = ids.view({-1});
  return out;
}

void Embedding::backward(Context&, const Tensor& dy) {
  Tensor dw = params_->grad(weight_);
  if (dw.defined()) ops::embedding_backward(dw, dy, ids_);
}

RMSNorm::RMSNorm(ParamStore& params, const std::string& module, int64_t dim, double eps, Role role)
    : params_(&params), eps_(eps) {
  weight_ = params.add(module + ".weight", {dim}, role, Decay::no);
}

Tensor RMSNorm::forward(Context& ctx, const Tensor& x) {
  Tensor y = ctx.arena.alloc(x.shape(), x.dtype());
  // CUDA keeps rstd in f32 whatever the activation dtype; the CPU in the activation dtype.
  rstd_ = ctx.arena.alloc({x.size(0)}, x.device() == Device::cpu ? x.dtype() : DType::f32);
  ops::rms_norm_forward(y, rstd_, x, params_->param(weight_), eps_);
  x_ = x;
  return y;
}

Tensor RMSNorm::add_forward(Context& ctx, const Tensor& x, const Tensor& a, Tensor& h) {
  Tensor y = ctx.arena.alloc(x.shape(), x.dtype());
  rstd_ = ctx.arena.alloc({x.size(0)}, x.device() == Device::cpu ? x.dtype() : DType::f32);
  ops::add_rms_norm_forward(h, y, rstd_, x, a, params_->param(weight_), eps_);
  x_ = h;
  return y;
}

Tensor RMSNorm::backward(Context& ctx, const Tensor& dy, const Tensor& residual) {
  Tensor dx = ctx.arena.alloc(dy.shape(), dy.dtype());
  backward(dy, residual, dx);
  return dx;
}

void RMSNorm::backward(const Tensor& dy, const Tensor& residual, Tensor& dx) {
  Tensor dw = params_->grad(weight_);
  ops::rms_norm_backward(dx, dw, dy, x_, params_->param(weight_), rstd_, residual);
}

LayerNorm::LayerNorm(ParamStore& params, const std::string& module, int64_t dim, double eps,
                     Role role)
    : params_(&params), eps_(eps) {
  weight_ = params.add(module + ".weight", {dim}, role, Decay::no);
  bias_ = params.add(module + ".bias", {dim}, role, Decay::no);
}

Tensor LayerNorm::forward(Context& ctx, const Tensor& x) {
  Tensor y = ctx.arena.alloc(x.shape(), x.dtype());
  // As for RMSNorm: the statistics are f32 on CUDA, the activation dtype on the CPU.
  const DType stats = x.device() == Device::cpu ? x.dtype() : DType::f32;
  mean_ = ctx.arena.alloc({x.size(0)}, stats);
  rstd_ = ctx.arena.alloc({x.size(0)}, stats);
  ops::layer_norm_forward(y, mean_, rstd_, x, params_->param(weight_), params_->param(bias_), eps_);
  x_ = x;
  return y;
}

Tensor LayerNorm::add_forward(Context& ctx, const Tensor& x, const Tensor& a, Tensor& h) {
  Tensor y = ctx.arena.alloc(x.shape(), x.dtype());
  const DType stats = x.device() == Device::cpu ? x.dtype() : DType::f32;
  mean_ = ctx.arena.alloc({x.size(0)}, stats);
  rstd_ = ctx.arena.alloc({x.size(0)}, stats);
  ops::add_layer_norm_forward(h, y, mean_, rstd_, x, a, params_->param(weight_),
                              params_->param(bias_), eps_);
  x_ = h;
  return y;
}

Tensor LayerNorm::backward(Context& ctx, const Tensor& dy, const Tensor& residual) {
  Tensor dx = ctx.arena.alloc(dy.shape(), dy.dtype());
  backward(dy, residual, dx);
  return dx;
}

void LayerNorm::backward(const Tensor& dy, const Tensor& residual, Tensor& dx) {
  Tensor dw = params_->grad(weight_), db = params_->grad(bias_);
  ops::layer_norm_backward(dx, dw, db, dy, x_, params_->param(weight_), mean_, rstd_, residual);
}

Norm::Norm(ParamStore& params, const std::string& module, int64_t dim, double eps, NormKind kind,
           Role role)
    : kind_(kind) {
  if (kind == NormKind::rms)
    rms_ = RMSNorm(params, module, dim, eps, role);
  else
    layer_ = LayerNorm(params, module, dim, eps, role);
}

namespace {

// inv_freq[i] = 1 / theta^(2i / D), then rescaled per rope type — transformers'
// _compute_default_rope_parameters / _compute_llama3_parameters, in the precision T.
template <typename T>
std::vector<T> inverse_frequencies(const RopeConfig& c, int64_t head_dim) {
  std::vector<T> inv(static_cast<size_t>(head_dim / 2));
  for (size_t i = 0; i < inv.size(); ++i) {
    T exponent = static_cast<T>(static_cast<T>(2 * i) / static_cast<T>(head_dim));
    inv[i] = static_cast<T>(T(1) / std::pow(static_cast<T>(c.theta), exponent));
  }
  if (c.type == RopeType::linear) {
    for (T& f : inv) f = static_cast<T>(f / static_cast<T>(c.factor));
  } else if (c.type == RopeType::llama3) {
    const T factor = static_cast<T>(c.factor), lo = static_cast<T>(c.low_freq_factor),
            hi = static_cast<T>(c.high_freq_factor);
    const T old_len = static_cast<T>(c.original_max_positions);
    const T low_freq_wavelen = old_len / lo, high_freq_wavelen = old_len / hi;
    const T two_pi = static_cast<T>(2 * M_PI);
    for (T& f : inv) {
      T wavelen = two_pi / f;
      T scaled = wavelen > low_freq_wavelen ? f / factor : f;
      bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      if (medium) {
        T smooth = (old_len / wavelen - lo) / (hi - lo);
        scaled = (T(1) - smooth) * scaled / factor + smooth * scaled;
      }
      f = scaled;
    }
  }
  return inv;
}

template <typename T>
void fill_tables(const RopeConfig& c, int64_t head_dim, int64_t max_positions, Tensor& cos,
                 Tensor& sin) {
  std::vector<T> inv = inverse_frequencies<T>(c, head_dim);
  const int64_t half = head_dim / 2;
  T* pc = cos.data<T>();
  T* ps = sin.data<T>();
  for (int64_t p = 0; p < max_positions; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      T angle = static_cast<T>(static_cast<T>(p) * inv[static_cast<size_t>(i)]);
      pc[p * half + i] = static_cast<T>(std::cos(static_cast<double>(angle)));
      ps[p * half + i] = static_cast<T>(std::sin(static_cast<double>(angle)));
    }
  }
}

}  // namespace

RotaryEmbedding::RotaryEmbedding(const RopeConfig& config, int64_t head_dim, int64_t max_positions,
                                 DType dtype, Device device) {
  TUNE_CHECK(head_dim % 2 == 0, "rotary embedding needs an even head_dim, got ", head_dim);
  cos_ = Tensor::empty({max_positions, head_dim / 2}, dtype);
  sin_ = Tensor::empty({max_positions, head_dim / 2}, dtype);
  if (dtype == DType::f64) {
    fill_tables<double>(config, head_dim, max_positions, cos_, sin_);
  } else {
    Tensor c = Tensor::empty(cos_.shape(), DType::f32), s = Tensor::empty(sin_.shape(), DType::f32);
    fill_tables<float>(config, head_dim, max_positions, c, s);
    cos_.copy_from(c);
    sin_.copy_from(s);
  }
  cos_ = cos_.to(device);
  sin_ = sin_.to(device);
}

void RotaryEmbedding::forward(Tensor& x, const Tensor& positions,
                              ops::Checked positions_checked) const {
  ops::rope_forward(x, cos_, sin_, positions, positions_checked);
}

void RotaryEmbedding::backward(Tensor& dx, const Tensor& positions,
                               ops::Checked positions_checked) const {
  ops::rope_backward(dx, cos_, sin_, positions, positions_checked);
}

}  // namespace tune::nn
