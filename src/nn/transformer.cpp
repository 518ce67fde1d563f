// The decoder of the Llama family and GPT-2. Every layer's backward mirrors its forward line by
// line, in reverse; activations come from the step's arena; parameter gradients accumulate.
#include "tune/nn/transformer.h"

#include <cmath>
#include <cstdio>

#include "tune/core/device.h"
#include "tune/ops/ops.h"

namespace tune::nn {

std::string TensorNames::at(const std::string& pattern, int64_t layer) {
  std::string out = pattern;
  size_t pos = out.find("%d");
  if (pos != std::string::npos) out.replace(pos, 2, std::to_string(layer));
  return out;
}

namespace {

Linear make_linear(ParamStore& params, const std::string& module, int64_t in, int64_t out,
                   bool bias, const BuildOptions& options, bool conv1d = false) {
  return Linear(params, module, in, out, bias ? Bias::yes : Bias::no, options.base_role, Decay::yes,
                conv1d ? Layout::in_out : Layout::out_in);
}

// The adapters of the Linears the LoRA config targets among `members` (each with its dropout
// stream): a group that reads one input (q, k, v; gate, up) declares them together, so that
// their A's lie stacked (Linear::add_lora_group).
void add_adapters(const BuildOptions& options,
                  std::initializer_list<std::pair<Linear*, uint64_t>> members) {
  if (!options.lora) return;
  std::vector<std::pair<Linear*, uint64_t>> targeted;
  for (const auto& m : members)
    if (options.lora->targets_module(m.first->module())) targeted.push_back(m);
  Linear::add_lora_group(*options.lora, targeted);
}

// Positions [B, T] (i64, on the host) inside the model's tables, [0, max_positions): checked
// here once, each layer's RoPE skips its check, which on CUDA waits for the stream
// (ops::rope_forward), four times a layer in training.
void check_positions(const Tensor& positions, int64_t max_positions) {
  const int64_t T = positions.size(1);
  const int64_t* p = positions.data<int64_t>();
  for (int64_t i = 0; i < positions.numel(); ++i) {
    TUNE_CHECK(p[i] >= 0 && p[i] < max_positions, "CausalLM::forward: position ", p[i],
               " at (b, t) = (", i / T, ", ", i % T, ") is outside [0, ", max_positions,
               "), the model's max_position_embeddings; split the sequence or use a model "
               "configured for longer ones");
  }
}

// A distinct dropout stream for each Linear: (layer, which projection).
uint64_t stream_id(int64_t layer, int which) {
  return static_cast<uint64_t>(layer) * 16 + which;
}

}  // namespace

// ---- KV cache ----

KvCache::KvCache(const TransformerConfig& c, int64_t capacity, DType dtype, Device device)
    : capacity_(capacity) {
  TUNE_CHECK(capacity > 0, "KvCache: capacity must be positive, got ", capacity);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    k_.push_back(Tensor::empty({capacity, c.num_kv_heads, c.head_dim}, dtype, device));
    v_.push_back(Tensor::empty({capacity, c.num_kv_heads, c.head_dim}, dtype, device));
  }
}

void KvCache::truncate(int64_t n) {
  TUNE_ASSERT(n >= 0 && n <= length_, "KvCache::truncate(", n, ") with length ", length_);
  length_ = n;
}

void KvCache::advance(int64_t n) {
  TUNE_ASSERT(n >= 0 && length_ + n <= capacity_, "KvCache::advance(", n, ") at ", length_, "/",
              capacity_);
  length_ += n;
}

KvCache KvCache::grown(int64_t capacity) const {
  TUNE_CHECK(capacity >= length_, "KvCache::grown: ", capacity, " < the ", length_,
             " positions held");
  KvCache out;
  out.capacity_ = capacity;
  out.length_ = length_;
  for (size_t l = 0; l < k_.size(); ++l) {
    const Shape& s = k_[l].shape();
    out.k_.push_back(Tensor::empty({capacity, s[1], s[2]}, k_[l].dtype(), k_[l].device()));
    out.v_.push_back(Tensor::empty({capacity, s[1], s[2]}, v_[l].dtype(), v_[l].device()));
    if (length_ == 0) continue;
    Tensor kd = out.k_[l].narrow(0, length_), vd = out.v_[l].narrow(0, length_);
    ops::copy(kd, k_[l].narrow(0, length_));
    ops::copy(vd, v_[l].narrow(0, length_));
  }
  return out;
}

KvCache KvCache::slice(int64_t start, int64_t capacity) const {
  TUNE_ASSERT(start >= 0 && capacity > 0 && start + capacity <= capacity_, "KvCache::slice(", start,
              ", ", capacity, ") of a cache of ", capacity_, " positions");
  KvCache out;
  out.capacity_ = capacity;
  for (size_t l = 0; l < k_.size(); ++l) {
    out.k_.push_back(k_[l].narrow(start, capacity));
    out.v_.push_back(v_[l].narrow(start, capacity));
  }
  return out;
}

// ---- Attention ----

Attention::Attention(ParamStore& params, const TransformerConfig& c, const TensorNames& names,
                     int64_t layer, const BuildOptions& options)
    : heads_(c.num_heads), kv_heads_(c.num_kv_heads), head_dim_(c.head_dim) {
  const int64_t C = c.hidden_size, D = c.head_dim;
  fused_ = c.fused_qkv;
  use_rope_ = c.positions == PositionKind::rope;
  if (fused_) {
    TUNE_CHECK(kv_heads_ == heads_, "a fused q|k|v projection needs as many kv heads (", kv_heads_,
               ") as heads (", heads_, ")");
    qkv_ = make_linear(params, TensorNames::at(names.qkv, layer), C, 3 * heads_ * D, c.qkv_bias,
                       options, c.conv1d);
    add_adapters(options, {{&qkv_, stream_id(layer, 0)}});
  } else {
    q_ = make_linear(params, TensorNames::at(names.q, layer), C, heads_ * D, c.qkv_bias, options,
                     c.conv1d);
    k_ = make_linear(params, TensorNames::at(names.k, layer), C, kv_heads_ * D, c.qkv_bias, options,
                     c.conv1d);
    v_ = make_linear(params, TensorNames::at(names.v, layer), C, kv_heads_ * D, c.qkv_bias, options,
                     c.conv1d);
    add_adapters(
        options,
        {{&q_, stream_id(layer, 0)}, {&k_, stream_id(layer, 1)}, {&v_, stream_id(layer, 2)}});
  }
  o_ = make_linear(params, TensorNames::at(names.o, layer), heads_ * D, C, c.o_bias, options,
                   c.conv1d);
  add_adapters(options, {{&o_, stream_id(layer, 3)}});
  if (c.qk_norm) {
    q_norm_ = std::make_unique<RMSNorm>(params, TensorNames::at(names.q_norm, layer), D,
                                        c.rms_norm_eps, options.base_role);
    k_norm_ = std::make_unique<RMSNorm>(params, TensorNames::at(names.k_norm, layer), D,
                                        c.rms_norm_eps, options.base_role);
  }
  if (!c.sliding_window.empty()) window_ = c.sliding_window[static_cast<size_t>(layer)];
}

void Attention::project(Context& ctx, const Tensor& x, Tensor& q, Tensor& k, Tensor& v) {
  if (!fused_) {
    const std::vector<Tensor> qkv = Linear::forward_group(ctx, x, {&q_, &k_, &v_});
    q = qkv[0];
    k = qkv[1];
    v = qkv[2];
    return;
  }
  const int64_t N = x.size(0), width = heads_ * head_dim_;
  Tensor qkv = qkv_.forward(ctx, x);  // (N, 3 * H*D): q | k | v
  q = ctx.arena.alloc({N, width}, x.dtype());
  k = ctx.arena.alloc({N, width}, x.dtype());
  v = ctx.arena.alloc({N, width}, x.dtype());
  ops::slice_columns(q, qkv, 0);
  ops::slice_columns(k, qkv, width);
  ops::slice_columns(v, qkv, 2 * width);
}

Tensor Attention::forward(Context& ctx, const Tensor& x, const Tensor& positions,
                          const Tensor& key_start, const RotaryEmbedding& rope, KeptAttention* kept,
                          Kept use) {
  const int64_t B = positions.size(0), T = positions.size(1), N = B * T, D = head_dim_;
  Tensor q, k, v;  // (N, Hq*D), (N, Hkv*D), (N, Hkv*D)
  project(ctx, x, q, k, v);
  if (q_norm_) {
    q = q_norm_->forward(ctx, q.view({N * heads_, D}));
    k = k_norm_->forward(ctx, k.view({N * kv_heads_, D}));
  }
  // RoPE rotates in place: the projections saved their inputs, not these outputs.
  q_rot_ = q.view({B, T, heads_, D});
  k_rot_ = k.view({B, T, kv_heads_, D});
  v_saved_ = v.view({B, T, kv_heads_, D});
  if (use_rope_) {
    rope.forward(q_rot_, positions, ops::Checked::yes);  // by CausalLM::forward_hidden
    rope.forward(k_rot_, positions, ops::Checked::yes);
  }
  positions_ = positions;
  key_start_ = key_start;

  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  Tensor out;  // (B, T, Hq, D)
  if (x.device() == Device::cuda) {
    // Flash attention: the [B, H, T, T] probabilities never exist; backward recomputes them
    // from q, k and each row's logsumexp.
    if (kept) {
      TUNE_ASSERT(kept->out.shape() == Shape({B, T, heads_, D}) && kept->out.dtype() == x.dtype() &&
                      kept->lse.shape() == Shape({B, heads_, T}) && kept->lse.dtype() == DType::f32,
                  "Attention::forward: kept out ", shape_str(kept->out.shape()), " and lse ",
                  shape_str(kept->lse.shape()), " for B ", B, " T ", T, " heads ", heads_, " D ",
                  D);
      out = kept->out;
      lse_ = kept->lse;
    } else {
      out = ctx.arena.alloc({B, T, heads_, D}, x.dtype());
      lse_ = ctx.arena.alloc({B, heads_, T}, DType::f32);
    }
    out_ = out;
    // Reuse: the block's first forward computed these from the same q, k and v.
    if (!kept || use == Kept::fill)
      ops::attention_forward_lse(out, lse_, q_rot_, k_rot_, v_saved_, scale, window_, key_start);
  } else {
    // The CPU's backward reads the probabilities, O(T^2) per layer: nothing is kept across a
    // recomputation, which runs this again.
    TUNE_ASSERT(!kept, "Attention::forward: attention is kept on CUDA only");
    out = ctx.arena.alloc({B, T, heads_, D}, x.dtype());
    probs_ = ctx.arena.alloc({B, heads_, T, T}, x.dtype());
    ops::attention_forward(out, probs_, q_rot_, k_rot_, v_saved_, scale, window_, key_start);
  }
  return o_.forward(ctx, out.view({N, heads_ * D}));
}

void Attention::backward(Context& ctx, const Tensor& dy, Tensor& dx, const RotaryEmbedding& rope) {
  const int64_t B = q_rot_.size(0), T = q_rot_.size(1), N = B * T, D = head_dim_;
  Tensor dout = ctx.arena.alloc({N, heads_ * D}, dy.dtype());
  o_.backward(ctx, dy, dout, Accumulate::no);

  Tensor dq = ctx.arena.alloc(q_rot_.shape(), dy.dtype());
  Tensor dk = ctx.arena.alloc(k_rot_.shape(), dy.dtype());
  Tensor dv = ctx.arena.alloc(v_saved_.shape(), dy.dtype());
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  if (dy.device() == Device::cuda) {
    ops::attention_backward_lse(dq, dk, dv, dout.view({B, T, heads_, D}), q_rot_, k_rot_, v_saved_,
                                out_, lse_, scale, window_, key_start_);
  } else {
    ops::attention_backward(dq, dk, dv, dout.view({B, T, heads_, D}), q_rot_, k_rot_, v_saved_,
                            probs_, scale);
  }
  if (use_rope_) {
    rope.backward(dq, positions_, ops::Checked::yes);
    rope.backward(dk, positions_, ops::Checked::yes);
  }

  Tensor dq_flat = dq.view({N, heads_ * D}), dk_flat = dk.view({N, kv_heads_ * D});
  if (q_norm_) {
    dq_flat = q_norm_->backward(ctx, dq.view({N * heads_, D})).view({N, heads_ * D});
    dk_flat = k_norm_->backward(ctx, dk.view({N * kv_heads_, D})).view({N, kv_heads_ * D});
  }
  Tensor dv_flat = dv.view({N, kv_heads_ * D});
  if (fused_) {
    const int64_t width = heads_ * D;
    Tensor dqkv = ctx.arena.alloc({N, 3 * width}, dy.dtype());
    ops::write_columns(dqkv, 0, dq_flat);
    ops::write_columns(dqkv, width, dk_flat);
    ops::write_columns(dqkv, 2 * width, dv_flat);
    qkv_.backward(ctx, dqkv, dx, Accumulate::no);
    return;
  }
  Linear::backward_group(ctx, {&q_, &k_, &v_}, {dq_flat, dk_flat, dv_flat}, dx, Accumulate::no);
}

namespace {
// residual += l(x), for decoding: straight into the residual (beta = 1) when l is a plain product,
// which saves a kernel per projection; otherwise through l.forward and an add.
void add_linear(Context& ctx, Tensor& residual, Linear& l, const Tensor& x) {
  const Tensor w = Linear::stacked_weight({&l});
  if (w.defined()) {
    ops::matmul(residual, x, ops::Transpose::no, w, ops::Transpose::yes, 1.0, 1.0);
    return;
  }
  ops::add_inplace(residual, l.forward(ctx, x));
}
}  // namespace

Tensor Attention::forward_cached(Context& ctx, const Tensor& x, const Tensor& positions,
                                 const RotaryEmbedding& rope, Tensor& k_cache, Tensor& v_cache,
                                 int64_t past) {
  const int64_t T = x.size(0), D = head_dim_, total = past + T;
  Tensor q, k, v;  // (T, Hq*D), (T, Hkv*D), (T, Hkv*D)
  project(ctx, x, q, k, v);
  if (q_norm_) {
    q = q_norm_->forward(ctx, q.view({T * heads_, D}));
    k = k_norm_->forward(ctx, k.view({T * kv_heads_, D}));
  }
  Tensor q4 = q.view({1, T, heads_, D}), k4 = k.view({1, T, kv_heads_, D});
  if (use_rope_) {
    rope.forward(q4, positions, ops::Checked::yes);  // by CausalLM::forward_cached
    rope.forward(k4, positions, ops::Checked::yes);
  }
  Tensor k_new = k_cache.narrow(past, T), v_new = v_cache.narrow(past, T);  // (T, Hkv, D)
  ops::copy(k_new, k.view({T, kv_heads_, D}));
  ops::copy(v_new, v.view({T, kv_heads_, D}));

  Tensor out = ctx.arena.alloc({1, T, heads_, D}, x.dtype());
  Tensor no_probs;
  ops::attention_forward(out, no_probs, q4, k_cache.narrow(0, total).view({1, total, kv_heads_, D}),
                         v_cache.narrow(0, total).view({1, total, kv_heads_, D}),
                         1.0 / std::sqrt(static_cast<double>(D)), window_);
  return o_.forward(ctx, out.view({T, heads_ * D}));
}

void Attention::decode_step(Context& ctx, const Tensor& x, Norm& norm, const DecodeInputs& in,
                            const RotaryEmbedding& rope, Tensor& k_pool, Tensor& v_pool,
                            Tensor& residual) {
  const int64_t N = x.size(0), D = head_dim_, S = in.page_size, P = k_pool.size(0) / S;
  Tensor q, k, v;  // (N, Hq*D), (N, Hkv*D), (N, Hkv*D)
  // One sequence (batch-1 decoding, bound by reading weights and by the number of kernels):
  // with q, k, v stacked in the parameter buffer, q|k|v is one product and q|k one rotation.
  const Tensor qkv_weight =
      N == 1 && !fused_ && !q_norm_ ? Linear::stacked_weight({&q_, &k_, &v_}) : Tensor();
  if (qkv_weight.defined()) {
    const int64_t qw = heads_ * D, kw = kv_heads_ * D;
    Tensor qkv = ctx.arena.alloc({1, qw + 2 * kw}, x.dtype());
    if (const RMSNorm* rms = norm.rms())
      ops::rms_norm_matmul(qkv, x, rms->weight(), rms->eps(), qkv_weight);
    else
      ops::matmul(qkv, norm.forward(ctx, x), ops::Transpose::no, qkv_weight, ops::Transpose::yes);
    const Tensor flat = qkv.view({qw + 2 * kw});
    q = flat.narrow(0, qw).view({1, qw});
    k = flat.narrow(qw, kw).view({1, kw});
    v = flat.narrow(qw + kw, kw).view({1, kw});
    if (use_rope_) {
      Tensor qk = flat.narrow(0, qw + kw).view({1, 1, heads_ + kv_heads_, D});
      rope.forward(qk, in.positions);
    }
  } else {
    project(ctx, norm.forward(ctx, x), q, k, v);
    if (q_norm_) {
      q = q_norm_->forward(ctx, q.view({N * heads_, D}));
      k = k_norm_->forward(ctx, k.view({N * kv_heads_, D}));
    }
    // Each row is a sequence of one token: [N, 1, H, D] against positions [N, 1].
    Tensor q4 = q.view({N, 1, heads_, D}), k4 = k.view({N, 1, kv_heads_, D});
    if (use_rope_) {
      rope.forward(q4, in.positions);
      rope.forward(k4, in.positions);
    }
  }
  Tensor k_pages = k_pool.view({P, S, kv_heads_, D}), v_pages = v_pool.view({P, S, kv_heads_, D});
  ops::kv_cache_write(k_pages, v_pages, k.view({N, kv_heads_, D}), v.view({N, kv_heads_, D}),
                      in.slots);
  Tensor q3 = q.view({N, heads_, D});
  Tensor workspace;
  const int64_t scratch = ops::attention_decode_workspace_size(q3, k_pages, in.pages, window_);
  if (scratch > 0) workspace = ctx.arena.alloc({scratch}, DType::f32);
  Tensor out = ctx.arena.alloc({N, heads_, D}, x.dtype());
  ops::attention_decode(out, q3, k_pages, v_pages, in.pages, in.lengths,
                        1.0 / std::sqrt(static_cast<double>(D)), window_, workspace);
  add_linear(ctx, residual, o_, out.view({N, heads_ * D}));
}

// ---- MLP ----

Mlp::Mlp(ParamStore& params, const TransformerConfig& c, const TensorNames& names, int64_t layer,
         const BuildOptions& options)
    : kind_(c.mlp) {
  const int64_t C = c.hidden_size, F = c.intermediate_size;
  if (kind_ == MlpKind::swiglu)
    gate_ = make_linear(params, TensorNames::at(names.gate, layer), C, F, c.mlp_bias, options,
                        c.conv1d);
  up_ = make_linear(params, TensorNames::at(names.up, layer), C, F, c.mlp_bias, options, c.conv1d);
  if (kind_ == MlpKind::swiglu)
    add_adapters(options, {{&gate_, stream_id(layer, 4)}, {&up_, stream_id(layer, 5)}});
  else
    add_adapters(options, {{&up_, stream_id(layer, 5)}});
  down_ =
      make_linear(params, TensorNames::at(names.down, layer), F, C, c.mlp_bias, options, c.conv1d);
  add_adapters(options, {{&down_, stream_id(layer, 6)}});
}

Tensor Mlp::forward(Context& ctx, const Tensor& x, const Tensor& residual) {
  const Tensor act = activation(ctx, x);
  return residual.defined() ? down_.forward_add(ctx, act, residual) : down_.forward(ctx, act);
}

void Mlp::recompute(Context& ctx, const Tensor& x) {
  down_.save_input(ctx, activation(ctx, x));
}

Tensor Mlp::activation(Context& ctx, const Tensor& x) {
  if (kind_ == MlpKind::gelu_tanh) {
    if (!up_.has_lora()) return up_.forward_gelu(ctx, x, up_out_);  // GELU in the product
    up_out_ = up_.forward(ctx, x);                                  // (N, F)
    Tensor h = ctx.arena.alloc(up_out_.shape(), x.dtype());
    ops::gelu_tanh_forward(h, up_out_);
    return h;
  }
  const std::vector<Tensor> gate_up = Linear::forward_group(ctx, x, {&gate_, &up_});
  gate_out_ = gate_up[0];  // (N, F)
  up_out_ = gate_up[1];    // (N, F)
  Tensor h = ctx.arena.alloc(gate_out_.shape(), x.dtype());
  ops::swiglu_forward(h, gate_out_, up_out_);
  return h;
}

void Mlp::forward_decode(Context& ctx, const Tensor& x, Norm& norm, Tensor& residual) {
  const Tensor gate_up = kind_ == MlpKind::swiglu && x.size(0) == 1
                             ? Linear::stacked_weight({&gate_, &up_})
                             : Tensor();
  if (!gate_up.defined()) {
    ops::add_inplace(residual, forward(ctx, norm.forward(ctx, x)));
    return;
  }
  const int64_t F = gate_up.size(0) / 2;
  Tensor both = ctx.arena.alloc({1, 2 * F}, x.dtype());  // gate | up
  if (const RMSNorm* rms = norm.rms())
    ops::rms_norm_matmul(both, x, rms->weight(), rms->eps(), gate_up);
  else
    ops::matmul(both, norm.forward(ctx, x), ops::Transpose::no, gate_up, ops::Transpose::yes);
  const Tensor flat = both.view({2 * F});
  Tensor h = ctx.arena.alloc({1, F}, x.dtype());
  ops::swiglu_forward(h, flat.narrow(0, F).view({1, F}), flat.narrow(F, F).view({1, F}));
  add_linear(ctx, residual, down_, h);
}

void Mlp::backward(Context& ctx, const Tensor& dy, Tensor& dx) {
  if (kind_ == MlpKind::gelu_tanh) {
    Tensor dh = ctx.arena.alloc(up_out_.shape(), dy.dtype());
    if (!down_.has_lora()) {
      down_.backward_gelu(ctx, dy, dh, up_out_);  // GELU's gradient in the product
    } else {
      down_.backward(ctx, dy, dh, Accumulate::no);
      ops::gelu_tanh_backward(dh, dh, up_out_);
    }
    up_.backward(ctx, dh, dx, Accumulate::no);
    return;
  }
  Tensor dh = ctx.arena.alloc(gate_out_.shape(), dy.dtype());
  down_.backward(ctx, dy, dh, Accumulate::no);
  Tensor dgate = ctx.arena.alloc(gate_out_.shape(), dy.dtype());
  Tensor dup = ctx.arena.alloc(up_out_.shape(), dy.dtype());
  ops::swiglu_backward(dgate, dup, dh, gate_out_, up_out_);
  Linear::backward_group(ctx, {&gate_, &up_}, {dgate, dup}, dx, Accumulate::no);
}

// ---- Decoder block ----

DecoderBlock::DecoderBlock(ParamStore& params, const TransformerConfig& c, const TensorNames& names,
                           int64_t layer, const BuildOptions& options)
    : attn_norm_(params, TensorNames::at(names.attn_norm, layer), c.hidden_size, c.rms_norm_eps,
                 c.norm, options.base_role),
      mlp_norm_(params, TensorNames::at(names.mlp_norm, layer), c.hidden_size, c.rms_norm_eps,
                c.norm, options.base_role),
      attn_(params, c, names, layer, options),
      mlp_(params, c, names, layer, options) {}

Tensor DecoderBlock::forward(Context& ctx, const Tensor& x, const Tensor& positions,
                             const Tensor& key_start, const RotaryEmbedding& rope,
                             KeptAttention* kept) {
  Tensor a =
      attn_.forward(ctx, attn_norm_.forward(ctx, x), positions, key_start, rope, kept, Kept::fill);
  return residual_mlp(ctx, x, a);
}

void DecoderBlock::recompute(Context& ctx, const Tensor& x, const Tensor& positions,
                             const Tensor& key_start, const RotaryEmbedding& rope,
                             KeptAttention* kept) {
  Tensor a =
      attn_.forward(ctx, attn_norm_.forward(ctx, x), positions, key_start, rope, kept, Kept::reuse);
  Tensor h = ctx.arena.alloc(x.shape(), x.dtype());
  mlp_.recompute(ctx, mlp_norm_.add_forward(ctx, x, a, h));  // h = x + a
}

Tensor DecoderBlock::residual_mlp(Context& ctx, const Tensor& x, const Tensor& a) {
  Tensor h = ctx.arena.alloc(x.shape(), x.dtype());
  return mlp_.forward(ctx, mlp_norm_.add_forward(ctx, x, a, h), h);  // h = x + a; h + mlp
}

void DecoderBlock::backward(Context& ctx, const Tensor& dy, const RotaryEmbedding& rope,
                            Tensor& dx) {
  Tensor dm = ctx.arena.alloc(dy.shape(), dy.dtype());
  mlp_.backward(ctx, dy, dm);
  Tensor dh = mlp_norm_.backward(ctx, dm, dy);  // + dy, the residual
  Tensor da = ctx.arena.alloc(dy.shape(), dy.dtype());
  attn_.backward(ctx, dh, da, rope);
  attn_norm_.backward(da, dh, dx);  // + dh, the residual
}

Tensor DecoderBlock::forward_cached(Context& ctx, const Tensor& x, const Tensor& positions,
                                    const RotaryEmbedding& rope, Tensor& k_cache, Tensor& v_cache,
                                    int64_t past) {
  Tensor a = attn_.forward_cached(ctx, attn_norm_.forward(ctx, x), positions, rope, k_cache,
                                  v_cache, past);
  return residual_mlp(ctx, x, a);
}

void DecoderBlock::decode_step(Context& ctx, Tensor& x, const DecodeInputs& in,
                               const RotaryEmbedding& rope, Tensor& k_pool, Tensor& v_pool) {
  attn_.decode_step(ctx, x, attn_norm_, in, rope, k_pool, v_pool, x);  // x = h
  mlp_.forward_decode(ctx, x, mlp_norm_, x);                           // x = y
}

std::vector<Linear*> DecoderBlock::linears() {
  std::vector<Linear*> out = attn_.linears();
  for (Linear* l : mlp_.linears()) out.push_back(l);
  return out;
}

// ---- Causal LM ----

CausalLM::CausalLM(ParamStore& params, const TransformerConfig& c, const TensorNames& names,
                   const BuildOptions& options)
    : params_(&params), config_(c) {
  embed_ = Embedding(params, names.embed, c.vocab_size, c.hidden_size, options.base_role);
  if (c.positions == PositionKind::learned)
    pos_embed_ =
        Embedding(params, names.pos_embed, c.max_positions, c.hidden_size, options.base_role);
  for (int64_t l = 0; l < c.num_layers; ++l)
    blocks_.push_back(std::make_unique<DecoderBlock>(params, c, names, l, options));
  final_norm_ =
      Norm(params, names.final_norm, c.hidden_size, c.rms_norm_eps, c.norm, options.base_role);
  if (c.tie_embeddings) {
    lm_head_ = Linear::tied(params, names.lm_head, embed_.weight_index());
  } else {
    lm_head_ =
        Linear(params, names.lm_head, c.hidden_size, c.vocab_size, Bias::no, options.base_role);
  }
  // As in PEFT, the head gets an adapter only when named ("all-linear" leaves it out).
  add_adapters(options, {{&lm_head_, stream_id(c.num_layers, 7)}});
}

void CausalLM::ensure_rope() {
  if (config_.positions != PositionKind::rope) return;
  if (!rope_.cos().defined() || rope_.cos().dtype() != params_->dtype())
    rope_ = RotaryEmbedding(config_.rope, config_.head_dim, config_.max_positions, params_->dtype(),
                            params_->device());
}

Tensor CausalLM::embed(Context& ctx, const Tensor& ids, const Tensor& positions) {
  Tensor x = embed_.forward(ctx, ids);
  if (config_.positions == PositionKind::learned) {
    // Position p's row of the learned table; an id past the table (max_positions) throws.
    ops::add_inplace(x, pos_embed_.forward(ctx, positions));
  }
  return x;
}

Tensor CausalLM::forward(Context& ctx, const Tensor& ids, const Tensor& positions) {
  return lm_head_.forward(ctx, forward_hidden(ctx, ids, positions));  // (B*T, V)
}

Tensor CausalLM::forward_hidden(Context& ctx, const Tensor& ids_in, const Tensor& positions_in) {
  TUNE_CHECK(ids_in.dim() == 2 && positions_in.shape() == ids_in.shape(), "CausalLM::forward: ids ",
             shape_str(ids_in.shape()), " and positions ", shape_str(positions_in.shape()),
             " must both be (batch, seq)");
  ensure_rope();
  ctx.dtype = params_->dtype();
  const Device device = params_->device();
  TUNE_CHECK(ctx.device() == device, "CausalLM::forward: the context's arena is on ",
             device_name(ctx.device()), " but the model is on ", device_name(device),
             "; make the context with nn::Context(model device)");

  // Packed documents are found on the host, and the positions checked there once for every
  // layer's RoPE; everything then lives on the model's device.
  const Tensor host_positions = positions_in.to(Device::cpu);
  key_start_ = document_key_starts(host_positions);
  check_positions(host_positions, config_.max_positions);
  if (key_start_.defined()) key_start_ = key_start_.to(device);
  const Tensor ids = ids_in.to(device), positions = positions_in.to(device);
  Tensor x = embed(ctx, ids.view({-1}), positions.view({-1}));  // (B*T, C)
  hidden_.assign(1, x);  // hidden_[l] is block l's input, which recomputation keeps
  positions_ = positions;
  recompute_ = ctx.recompute_blocks && ctx.mode == Mode::train;
  offloaded_ = recompute_ && ctx.offload_blocks && device == Device::cuda;
  kept_.clear();
  kept_.reserve(blocks_.size());
  if (offloaded_) {
    x = forward_blocks_offloaded(ctx, x);
  } else {
    // On CUDA each block's flash-attention output and lse outlive it too (KeptAttention: per
    // layer N * Hq*D activations and B * Hq * T f32, a small part of what the block frees), so
    // that the rerun skips the attention forward. Offloading keeps only the block inputs.
    const bool keep_attention = recompute_ && device == Device::cuda;
    const int64_t B = positions.size(0), T = positions.size(1);
    const int64_t Hq = config_.num_heads, D = config_.head_dim;
    for (size_t l = 0; l < blocks_.size(); ++l) {
      if (recompute_) {
        // Only the block's output (and its kept attention) outlives it; backward reruns the
        // block from its input.
        Tensor out = ctx.arena.alloc(x.shape(), x.dtype());
        KeptAttention* kept = nullptr;
        if (keep_attention) {
          kept_.push_back(
              {ctx.arena.alloc({B, T, Hq, D}, x.dtype()), ctx.arena.alloc({B, Hq, T}, DType::f32)});
          kept = &kept_.back();
        }
        const Arena::Mark mark = ctx.arena.mark();
        ops::copy(out, blocks_[l]->forward(ctx, x, positions, key_start_, rope_, kept));
        ctx.arena.release(mark);
        x = out;
      } else {
        x = blocks_[l]->forward(ctx, x, positions, key_start_, rope_);
      }
      if (l + 1 < blocks_.size()) hidden_.push_back(x);
    }
  }
  Tensor xn = final_norm_.forward(ctx, x);
  hidden_.push_back(xn);
  return xn;
}

void CausalLM::backward(Context& ctx, const Tensor& dlogits) {
  Tensor dxn = ctx.arena.alloc({dlogits.size(0), config_.hidden_size}, dlogits.dtype());
  lm_head_.backward(ctx, dlogits, dxn, Accumulate::no);
  backward_hidden(ctx, dxn);
}

int64_t CausalLM::head_chunk_rows(int64_t rows, int64_t chunk_rows) const {
  // About 16M logits (64 MiB in f32) per chunk on the CPU: the GEMMs stay large, the memory
  // small. On CUDA 64M (256 MiB in f32): a chunk's loss is read back (a sync), so fewer, larger
  // chunks keep the GPU busy and the head's GEMMs near full speed.
  const int64_t chunk_elements = device() == Device::cuda ? int64_t{1} << 26 : int64_t{1} << 24;
  if (chunk_rows <= 0) chunk_rows = std::max<int64_t>(1, chunk_elements / config_.vocab_size);
  return std::min(chunk_rows, std::max<int64_t>(rows, 1));
}

namespace {
// cuBLASLt's fast kernels read rows through the tensor memory accelerator, which needs row
// strides of 16 bytes; the logits of a vocabulary like GPT-2's 50257 have none, and the head's
// three products fell back to a kernel that took 2.3 times as long (H100, GPT-2 124M at 64 x
// 1024: 274 ms a step, 162 with the vocabulary padded). So on CUDA the head multiplies by a copy
// of its weight padded with zero rows to a multiple of 64 words, and a bias of -inf on the padding
// columns takes them out of the softmax: their logits are -inf, their gradients 0.
constexpr int64_t kHeadWordMultiple = 64;

// The padded head of one head_loss call: the weight copy, the bias and, when the weight is
// trained, a gradient that the chunks accumulate and that is added to the weight's at the end.
struct PaddedHead {
  Tensor weight, bias, grad;
};

PaddedHead pad_head(Context& ctx, const Linear& head, bool with_grad) {
  const Tensor w = head.weight();
  const int64_t V = w.size(0), C = w.size(1);
  const int64_t padded = (V + kHeadWordMultiple - 1) / kHeadWordMultiple * kHeadWordMultiple;
  PaddedHead p;
  p.weight = ctx.arena.alloc({padded, C}, w.dtype());
  Tensor words = p.weight.narrow(0, V), padding = p.weight.narrow(V, padded - V);
  ops::copy(words, w);
  ops::fill(padding, 0.0);
  p.bias = ctx.arena.alloc({padded}, DType::f32);  // the logits are f32 on CUDA
  Tensor zero = p.bias.narrow(0, V), minus_inf = p.bias.narrow(V, padded - V);
  ops::fill(zero, 0.0);
  ops::fill(minus_inf, -INFINITY);
  if (with_grad && head.weight_grad().defined())
    p.grad = ctx.arena.alloc({padded, C}, head.weight_grad().dtype());
  return p;
}
}  // namespace

LossResult CausalLM::head_loss(Context& ctx, const Tensor& xn, const Tensor& labels,
                               double normalizer, Tensor* dxn, int64_t chunk_rows) {
  // The targets are shifted and counted on the host, then live on the model's device.
  const Tensor host_targets = shift_labels(labels.to(Device::cpu));
  const int64_t N = xn.size(0);
  TUNE_CHECK(host_targets.numel() == N, "CausalLM: labels ", shape_str(labels.shape()),
             " do not match the ", N, " positions of the batch");
  LossResult r;
  r.count = ops::count_targets(host_targets);
  const Tensor targets = host_targets.to(xn.device());
  const double denom = normalizer > 0 ? normalizer : static_cast<double>(r.count);
  const double scale = denom > 0 ? 1.0 / denom : 0.0;
  const int64_t rows = head_chunk_rows(N, chunk_rows);
  // bf16/f16 on CUDA: the logits come out in f32 (rounding them would bias the loss upwards,
  // by a few percent on a small model) and the gradient goes back in the activation dtype.
  const bool f32_logits = xn.device() == Device::cuda && xn.dtype() != DType::f32;
  const DType logits_dtype = f32_logits ? DType::f32 : xn.dtype();
  const bool padded = xn.device() == Device::cuda && config_.vocab_size % kHeadWordMultiple != 0 &&
                      !lm_head_.has_lora() && !lm_head_.has_bias() &&
                      lm_head_.layout() == Layout::out_in;
  if (padded) {
    // The padding words are not words: a target among them must fail as cross_entropy would.
    const int64_t* t = host_targets.data<int64_t>();
    for (int64_t i = 0; i < N; ++i) {
      TUNE_CHECK(t[i] == -100 || (t[i] >= 0 && t[i] < config_.vocab_size), "CausalLM: target ",
                 t[i], " at row ", i, " is outside the vocabulary [0, ", config_.vocab_size,
                 "); use -100 to ignore a row");
    }
  }
  const PaddedHead head = padded ? pad_head(ctx, lm_head_, dxn != nullptr) : PaddedHead{};
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    const int64_t n = std::min(rows, N - r0);
    const Arena::Mark mark = ctx.arena.mark();
    const Tensor x = xn.narrow(r0, n);
    Tensor logits;
    if (padded) {
      logits = ctx.arena.alloc({n, head.weight.size(0)}, logits_dtype);
      ops::matmul(logits, x, ops::Transpose::no, head.weight, ops::Transpose::yes, 1.0, 0.0,
                  head.bias);
    } else {
      logits = lm_head_.forward(ctx, x, logits_dtype);
    }
    // Otherwise the gradient overwrites the logits in place: one [rows, V] buffer, not two.
    Tensor dlogits;
    if (dxn) dlogits = f32_logits ? ctx.arena.alloc(logits.shape(), xn.dtype()) : logits;
    r.sum += ops::cross_entropy(dlogits, logits, targets.narrow(r0, n), scale);
    if (dxn) {
      Tensor dx = dxn->narrow(r0, n);
      if (padded) {
        Tensor dw = head.grad;
        if (dw.defined())
          ops::matmul(dw, dlogits, ops::Transpose::yes, x, ops::Transpose::no, 1.0,
                      r0 > 0 ? 1.0 : 0.0);
        ops::matmul(dx, dlogits, ops::Transpose::no, head.weight, ops::Transpose::no);
      } else {
        lm_head_.backward(ctx, dlogits, dx, Accumulate::no);
      }
    }
    ctx.arena.release(mark);
  }
  if (head.grad.defined()) {
    Tensor dw = lm_head_.weight_grad();
    ops::add_inplace(dw, head.grad.narrow(0, config_.vocab_size));
  }
  return r;
}

LossResult CausalLM::forward_backward(Context& ctx, const Tensor& ids, const Tensor& positions,
                                      const Tensor& labels, double normalizer, int64_t chunk_rows) {
  Tensor xn = forward_hidden(ctx, ids, positions);
  Tensor dxn = ctx.arena.alloc(xn.shape(), xn.dtype());
  const LossResult r = head_loss(ctx, xn, labels, normalizer, &dxn, chunk_rows);
  backward_hidden(ctx, dxn);
  return r;
}

LossResult CausalLM::forward_loss(Context& ctx, const Tensor& ids, const Tensor& positions,
                                  const Tensor& labels, int64_t chunk_rows) {
  return head_loss(ctx, forward_hidden(ctx, ids, positions), labels, 0, nullptr, chunk_rows);
}

void CausalLM::backward_hidden(Context& ctx, const Tensor& dxn) {
  Tensor dx = final_norm_.backward(ctx, dxn);
  if (offloaded_) {
    dx = backward_blocks_offloaded(ctx, dx);
  } else {
    // Each block's backward temporaries live only while it runs: the arena then peaks at the
    // forward's activations plus one block's gradients, not every block's. The gradient flowing
    // between blocks takes turns in two buffers.
    Tensor turns[2] = {ctx.arena.alloc(dx.shape(), dx.dtype()),
                       ctx.arena.alloc(dx.shape(), dx.dtype())};
    for (size_t l = blocks_.size(); l-- > 0;) {
      Tensor dx_in = turns[l % 2];
      const Arena::Mark mark = ctx.arena.mark();
      if (recompute_) {
        // The same masks; with kept attention the attention forward itself is not rerun.
        KeptAttention* kept = kept_.empty() ? nullptr : &kept_[l];
        blocks_[l]->recompute(ctx, hidden_[l], positions_, key_start_, rope_, kept);
      }
      blocks_[l]->backward(ctx, dx, rope_, dx_in);
      ctx.arena.release(mark);
      dx = dx_in;
    }
  }
  embed_.backward(ctx, dx);
  if (config_.positions == PositionKind::learned) pos_embed_.backward(ctx, dx);
}

// ---- Activation offload (Context::offload_blocks) ----
//
// Forward: block l reads its input from device buffer l % 2 and writes its output to buffer
// (l + 1) % 2. Each input is copied to its pinned host slot on the copy stream as soon as it is
// ready; before block l overwrites buffer (l + 1) % 2, the compute stream waits for the copy of
// block l - 1's input, which lived there (a copy of one block input takes far less time than a
// block's compute, so the wait is normally already over).
// Backward: the last block's input is still in its buffer. Before block l is recomputed, block
// l - 1's input is brought back into the other buffer on the copy stream (after everything queued
// so far, so after block l + 1, which used that buffer, is done); the compute stream waits for it
// only when it reaches block l - 1.
struct CausalLM::Offload {
  CopyStream stream;
  std::vector<Tensor> host;  // per block: its input, pinned [N, C]
  std::vector<CopyStream::Ticket> tickets;
  Tensor buffers[2];
  size_t bytes = 0;
};

Tensor CausalLM::forward_blocks_offloaded(Context& ctx, Tensor x) {
  const size_t L = blocks_.size();
  const size_t bytes = x.nbytes();
  if (!offload_) offload_ = std::make_shared<Offload>();
  Offload& o = *offload_;
  if (o.bytes < bytes || o.host.size() != L) {
    o.host.clear();
    for (size_t l = 0; l < L; ++l) {
      void* data = nullptr;
      std::shared_ptr<void> owner = cuda_allocate_pinned(bytes, &data);
      o.host.push_back(Tensor::wrap(data, {x.numel()}, x.dtype(), std::move(owner)));
    }
    o.bytes = bytes;
  }
  o.tickets.assign(L, nullptr);
  o.buffers[0] = x;  // the embeddings' own memory is buffer 0
  o.buffers[1] = ctx.arena.alloc(x.shape(), x.dtype());
  hidden_.clear();
  for (size_t l = 0; l < L; ++l) {
    Tensor in = o.buffers[l % 2], out = o.buffers[(l + 1) % 2];
    o.tickets[l] = o.stream.copy(o.host[l].raw(), in.raw(), bytes, CopyKind::device_to_host);
    hidden_.push_back(o.host[l].narrow(0, x.numel()).view(x.shape()));
    if (l > 0) o.stream.wait(o.tickets[l - 1]);  // `out` held block l - 1's input
    const Arena::Mark mark = ctx.arena.mark();
    ops::copy(out, blocks_[l]->forward(ctx, in, positions_, key_start_, rope_));
    ctx.arena.release(mark);
  }
  return o.buffers[L % 2];
}

Tensor CausalLM::backward_blocks_offloaded(Context& ctx, Tensor dx) {
  Offload& o = *offload_;
  const size_t L = blocks_.size();
  // Copies on the one copy stream run in order: a buffer's copy out finishes before a later copy
  // into it starts, and a host slot is written before it is read back.
  Tensor turns[2] = {ctx.arena.alloc(dx.shape(), dx.dtype()),
                     ctx.arena.alloc(dx.shape(), dx.dtype())};
  for (size_t l = L; l-- > 0;) {
    Tensor in = o.buffers[l % 2];
    if (l + 1 < L) o.stream.wait(o.tickets[l]);  // its input is back on the device
    if (l > 0) {
      o.tickets[l - 1] = o.stream.copy(o.buffers[(l - 1) % 2].raw(), o.host[l - 1].raw(),
                                       in.nbytes(), CopyKind::host_to_device);
    }
    Tensor dx_in = turns[l % 2];  // the gradient between blocks takes turns in two buffers
    const Arena::Mark mark = ctx.arena.mark();
    blocks_[l]->recompute(ctx, in, positions_, key_start_, rope_, nullptr);  // same masks
    blocks_[l]->backward(ctx, dx, rope_, dx_in);
    ctx.arena.release(mark);
    dx = dx_in;
  }
  return dx;
}

Tensor CausalLM::forward_cached(Context& ctx, const Tensor& ids, KvCache& cache, Logits which) {
  const int64_t T = ids.numel(), past = cache.length();
  TUNE_CHECK(T > 0, "CausalLM::forward_cached: no tokens given");
  TUNE_CHECK(cache.num_layers() == blocks_.size(), "CausalLM::forward_cached: the cache has ",
             cache.num_layers(), " layers but the model has ", blocks_.size());
  TUNE_CHECK(past + T <= cache.capacity(), "CausalLM::forward_cached: ", T,
             " more tokens do not fit in a KV cache of ", cache.capacity(), " positions holding ",
             past, "; make a larger cache");
  TUNE_CHECK(past + T <= config_.max_positions, "CausalLM::forward_cached: position ", past + T - 1,
             " is past the model's max_position_embeddings (", config_.max_positions, ")");
  ensure_rope();
  ctx.dtype = params_->dtype();
  ctx.mode = Mode::eval;

  Tensor positions = Tensor::empty({1, T}, DType::i64);
  for (int64_t t = 0; t < T; ++t) positions.data<int64_t>()[t] = past + t;
  positions = positions.to(params_->device());
  Tensor x = embed(ctx, ids.view({T}).to(params_->device()), positions.view({T}));  // (T, C)
  for (size_t l = 0; l < blocks_.size(); ++l) {
    x = blocks_[l]->forward_cached(ctx, x, positions, rope_, cache.keys(l), cache.values(l), past);
  }
  cache.advance(T);
  // Only the rows whose logits are wanted go through the final norm and the head.
  if (which == Logits::last) x = x.narrow(T - 1, 1);
  return lm_head_.forward(ctx, final_norm_.forward(ctx, x));
}

DecodeInputs::DecodeInputs(Device device, int64_t rows, int64_t max_pages, int64_t page_size_)
    : page_size(page_size_) {
  // One buffer, so that a step's inputs travel in one copy: ids and positions (i64), then
  // slots, lengths and the block table (i32).
  const int64_t bytes = rows * 2 * 8 + rows * (2 + max_pages) * 4;
  buffer = Tensor::zeros({bytes}, DType::u8, device);
  staging = Tensor::zeros({bytes}, DType::u8);
  auto view = [&](int64_t offset, const Shape& shape, DType dtype) {
    return Tensor::wrap(static_cast<char*>(buffer.raw()) + offset, shape, dtype,
                        std::shared_ptr<void>(buffer.raw(), [keep = buffer](void*) {}), device);
  };
  ids = view(0, {rows}, DType::i64);
  positions = view(rows * 8, {rows, 1}, DType::i64);
  slots = view(rows * 16, {rows}, DType::i32);
  lengths = view(rows * 20, {rows}, DType::i32);
  pages = view(rows * 24, {rows, max_pages}, DType::i32);
}

void DecodeInputs::set(int64_t token, int64_t position) {
  TUNE_ASSERT(rows() == 1 && pages.size(1) == 1,
              "DecodeInputs::set(token, position) is for one "
              "sequence whose cache is one page");
  set({token}, {position}, {static_cast<int32_t>(position)}, {static_cast<int32_t>(position + 1)},
      {0});
}

void DecodeInputs::set(const std::vector<int64_t>& tokens,
                       const std::vector<int64_t>& token_positions,
                       const std::vector<int32_t>& slot_ids,
                       const std::vector<int32_t>& seq_lengths,
                       const std::vector<int32_t>& block_table) {
  const auto n = static_cast<size_t>(rows());
  TUNE_ASSERT(tokens.size() == n && token_positions.size() == n && slot_ids.size() == n &&
                  seq_lengths.size() == n &&
                  block_table.size() == static_cast<size_t>(pages.numel()),
              "DecodeInputs::set: every vector needs one entry per row (", n, ")");
  char* host = static_cast<char*>(staging.raw());
  const int64_t r = rows();
  std::copy(tokens.begin(), tokens.end(), reinterpret_cast<int64_t*>(host));
  std::copy(token_positions.begin(), token_positions.end(),
            reinterpret_cast<int64_t*>(host + r * 8));
  std::copy(slot_ids.begin(), slot_ids.end(), reinterpret_cast<int32_t*>(host + r * 16));
  std::copy(seq_lengths.begin(), seq_lengths.end(), reinterpret_cast<int32_t*>(host + r * 20));
  std::copy(block_table.begin(), block_table.end(), reinterpret_cast<int32_t*>(host + r * 24));
  buffer.copy_from(staging);
}

Tensor CausalLM::decode_step(Context& ctx, const DecodeInputs& in, KvCache& pool) {
  TUNE_CHECK(in.page_size > 0 && pool.capacity() % in.page_size == 0,
             "CausalLM::decode_step: a KV cache of ", pool.capacity(),
             " positions is not made of pages of ", in.page_size);
  ensure_rope();
  ctx.dtype = params_->dtype();
  ctx.mode = Mode::eval;
  Tensor x = embed(ctx, in.ids, in.positions.view({in.rows()}));  // (N, C)
  for (size_t l = 0; l < blocks_.size(); ++l)
    blocks_[l]->decode_step(ctx, x, in, rope_, pool.keys(l), pool.values(l));
  return lm_head_.forward(ctx, final_norm_.forward(ctx, x));
}

KvCache CausalLM::make_cache(int64_t capacity) const {
  return KvCache(config_, capacity, params_->dtype(), params_->device());
}

std::vector<Linear*> CausalLM::linears() {
  std::vector<Linear*> out;
  for (auto& b : blocks_)
    for (Linear* l : b->linears()) out.push_back(l);
  out.push_back(&lm_head_);
  return out;
}

Tensor document_key_starts(const Tensor& positions) {
  TUNE_CHECK(positions.dim() == 2 && positions.dtype() == DType::i64,
             "document_key_starts: positions must be (batch, seq) i64, got ", positions.describe());
  const int64_t B = positions.size(0), T = positions.size(1);
  const int64_t* p = positions.data<int64_t>();
  bool packed = false;
  for (int64_t i = 0; i < B * T && !packed; ++i) packed = i % T != 0 && p[i] == 0;
  if (!packed) return Tensor();
  Tensor starts = Tensor::empty({B, T}, DType::i64);
  int64_t* s = starts.data<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    int64_t start = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (p[b * T + t] == 0) start = t;
      s[b * T + t] = start;
    }
  }
  return starts;
}

Tensor default_positions(int64_t batch, int64_t seq) {
  Tensor p = Tensor::empty({batch, seq}, DType::i64);
  int64_t* d = p.data<int64_t>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < seq; ++t) d[b * seq + t] = t;
  return p;
}

}  // namespace tune::nn
