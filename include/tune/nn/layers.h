// The small layers: token embedding, RMSNorm, LayerNorm and rotary position embedding. Like every
// nn layer they save what their backward needs and accumulate (+=) into parameter gradients.
#pragma once

#include <string>

#include "tune/nn/context.h"
#include "tune/nn/params.h"
#include "tune/ops/ops.h"

namespace tune::nn {

class Embedding {
 public:
  Embedding() = default;
  Embedding(ParamStore& params, const std::string& module, int64_t vocab, int64_t dim, Role role);
  // ids [N] (i64) -> [N, dim]
  Tensor forward(Context& ctx, const Tensor& ids);
  void backward(Context& ctx, const Tensor& dy);
  int weight_index() const { return weight_; }

 private:
  ParamStore* params_ = nullptr;
  int weight_ = -1;
  int64_t dim_ = 0;
  Tensor ids_;
};

class RMSNorm {
 public:
  RMSNorm() = default;
  RMSNorm(ParamStore& params, const std::string& module, int64_t dim, double eps, Role role);
  // x [N, dim] -> [N, dim]
  Tensor forward(Context& ctx, const Tensor& x);
  // A block's residual add and this norm in one pass (ops::add_rms_norm_forward): h = x + a is
  // written ([N, dim], the caller's), the norm of h returned.
  Tensor add_forward(Context& ctx, const Tensor& x, const Tensor& a, Tensor& h);
  // With residual defined, returns dx + residual, added in the same pass (the gradient of a
  // residual stream that bypasses the norm).
  Tensor backward(Context& ctx, const Tensor& dy, const Tensor& residual = Tensor());
  // The same written into dx [N, dim].
  void backward(const Tensor& dy, const Tensor& residual, Tensor& dx);
  // For kernels that fuse the norm into what follows (ops::rms_norm_matmul).
  Tensor weight() const { return params_->param(weight_); }
  double eps() const { return eps_; }

 private:
  ParamStore* params_ = nullptr;
  int weight_ = -1;
  double eps_ = 1e-6;
  Tensor x_, rstd_;
};

// LayerNorm with weight and bias (GPT-2): y = (x - mean) * rstd * w + b.
class LayerNorm {
 public:
  LayerNorm() = default;
  LayerNorm(ParamStore& params, const std::string& module, int64_t dim, double eps, Role role);
  // x [N, dim] -> [N, dim]
  Tensor forward(Context& ctx, const Tensor& x);
  // GPT-2's residual add and this norm in one pass (ops::add_layer_norm_forward): h = x + a is
  // written ([N, dim], the caller's), the norm of h returned.
  Tensor add_forward(Context& ctx, const Tensor& x, const Tensor& a, Tensor& h);
  // With residual defined, returns dx + residual, added in the same pass.
  Tensor backward(Context& ctx, const Tensor& dy, const Tensor& residual = Tensor());
  // The same written into dx [N, dim].
  void backward(const Tensor& dy, const Tensor& residual, Tensor& dx);

 private:
  ParamStore* params_ = nullptr;
  int weight_ = -1, bias_ = -1;
  double eps_ = 1e-5;
  Tensor x_, mean_, rstd_;
};

enum class NormKind : uint8_t { rms, layer };

// The norm a transformer block uses: RMSNorm (Llama) or LayerNorm (GPT-2).
class Norm {
 public:
  Norm() = default;
  Norm(ParamStore& params, const std::string& module, int64_t dim, double eps, NormKind kind,
       Role role);
  Tensor forward(Context& ctx, const Tensor& x) {
    return kind_ == NormKind::rms ? rms_.forward(ctx, x) : layer_.forward(ctx, x);
  }
  // h = x + a (written), returns norm(h), in one fused pass.
  Tensor add_forward(Context& ctx, const Tensor& x, const Tensor& a, Tensor& h) {
    return kind_ == NormKind::rms ? rms_.add_forward(ctx, x, a, h)
                                  : layer_.add_forward(ctx, x, a, h);
  }
  // dx, plus residual when defined (fused into the norm's backward).
  Tensor backward(Context& ctx, const Tensor& dy, const Tensor& residual = Tensor()) {
    return kind_ == NormKind::rms ? rms_.backward(ctx, dy, residual)
                                  : layer_.backward(ctx, dy, residual);
  }
  // The same written into dx.
  void backward(const Tensor& dy, const Tensor& residual, Tensor& dx) {
    kind_ == NormKind::rms ? rms_.backward(dy, residual, dx) : layer_.backward(dy, residual, dx);
  }
  const RMSNorm* rms() const { return kind_ == NormKind::rms ? &rms_ : nullptr; }

 private:
  NormKind kind_ = NormKind::rms;
  RMSNorm rms_;
  LayerNorm layer_;
};

enum class RopeType : uint8_t { standard, linear, llama3 };

// Rotary embedding parameters as Hugging Face names them (rope_theta, rope_type, factor, ...).
struct RopeConfig {
  RopeType type = RopeType::standard;
  double theta = 10000.0;
  double factor = 1.0;                    // linear, llama3
  double low_freq_factor = 1.0;           // llama3
  double high_freq_factor = 4.0;          // llama3
  int64_t original_max_positions = 8192;  // llama3
};

// Precomputed cos/sin tables [max_positions, head_dim / 2], computed as transformers does (the
// inverse frequencies in f32 when the model runs in f32, so the tables match to the last bit
// wherever the math libraries agree).
class RotaryEmbedding {
 public:
  RotaryEmbedding() = default;
  // The tables are computed on the host and stored in `dtype` on `device`.
  RotaryEmbedding(const RopeConfig& config, int64_t head_dim, int64_t max_positions, DType dtype,
                  Device device = Device::cpu);
  // x [B, T, H, D] in place; positions [B, T] (i64), checked against the tables unless the
  // caller checked them (ops::rope_forward says what that saves on CUDA).
  void forward(Tensor& x, const Tensor& positions,
               ops::Checked positions_checked = ops::Checked::no) const;
  void backward(Tensor& dx, const Tensor& positions,
                ops::Checked positions_checked = ops::Checked::no) const;
  const Tensor& cos() const { return cos_; }
  const Tensor& sin() const { return sin_; }

 private:
  Tensor cos_, sin_;
};

}  // namespace tune::nn
