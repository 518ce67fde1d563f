// CausalLM::forward_batch: S sequences in one forward, for a server's continuous batching.
// Design notes:
// - The rows of all sequences are stacked, [N, C] with N = the sum of their new tokens; sequence
//   s owns rows [row0[s], row0[s] + count[s]). Norms, activations, residuals, RoPE and the
//   embedding are row-wise ops over all N rows (their kernels compute each row on its own).
// - Attention runs per sequence against that sequence's KV cache, exactly as forward_cached.
// - Linears: y = x W^T + b, then per sequence (or per run of sequences with one adapter) the
//   LoRA delta scale * (x A^T) B^T, in the same two GEMMs Linear::forward uses.
//   RowMatmul::independent multiplies each sequence's rows on their own, so a sequence's result
//   does not depend on what else is in the batch; RowMatmul::batched makes one GEMM of all rows.
// - On the CPU the per-sequence work runs in an OpenMP loop over sequences, every time (also for
//   one sequence), so each GEMM runs on one thread whatever the batch size: the same kernel, the
//   same rounding. Everything else goes through the ops API.
// - Only the last row of each sequence goes through the final norm and the head.
#include <cmath>

#include "tune/nn/adapter_bank.h"
#include "tune/nn/transformer.h"
#include "tune/ops/ops.h"

namespace tune::nn {

using ops::Transpose;

class BatchedDecode {
 public:
  BatchedDecode(CausalLM& lm, Context& ctx, std::span<const SequenceStep> steps,
                const AdapterBank* bank, RowMatmul rows)
      : lm_(lm), ctx_(ctx), steps_(steps), bank_(bank), rows_(rows) {
    int64_t n = 0;
    for (const SequenceStep& s : steps_) {
      row0_.push_back(n);
      count_.push_back(static_cast<int64_t>(s.ids.size()));
      n += static_cast<int64_t>(s.ids.size());
    }
    total_rows_ = n;
  }

  Tensor run();

 private:
  struct Segment {
    int64_t row0, count;
    int adapter;
  };
  // One segment per sequence (its rows), or per sequence's last row (the head).
  std::vector<Segment> sequence_segments() const;
  // y [rows, out] = x W^T + b + each segment's adapter delta.
  Tensor linear(const Linear& l, const Tensor& x, const std::vector<Segment>& segments);
  Tensor attention(Attention& a, const Tensor& x, const Tensor& positions, size_t layer);
  Tensor mlp(Mlp& m, const Tensor& x, const std::vector<Segment>& segments);
  bool on_cpu() const { return device_ == Device::cpu; }

  CausalLM& lm_;
  Context& ctx_;
  std::span<const SequenceStep> steps_;
  const AdapterBank* bank_;
  RowMatmul rows_;
  std::vector<int64_t> row0_, count_;
  int64_t total_rows_ = 0;
  Device device_ = Device::cpu;
};

std::vector<BatchedDecode::Segment> BatchedDecode::sequence_segments() const {
  std::vector<Segment> out;
  for (size_t s = 0; s < steps_.size(); ++s)
    out.push_back({row0_[s], count_[s], steps_[s].adapter});
  return out;
}

Tensor BatchedDecode::linear(const Linear& l, const Tensor& x, const std::vector<Segment>& segs) {
  TUNE_ASSERT(!l.has_lora(), "forward_batch: ", l.module(),
              " carries its own LoRA adapter; serve adapters from an AdapterBank");
  const ParamStore& params = *lm_.params_;
  const int wi = params.index(l.module() + ".weight");
  // A Linear without its own weight is the head tied to the embedding.
  const Tensor w = wi >= 0 ? params.param(wi) : params.param(lm_.embed_.weight_index());
  const Transpose tw =
      (&l == &lm_.lm_head_ || !lm_.config_.conv1d) ? Transpose::yes : Transpose::no;
  const int bi = params.index(l.module() + ".bias");
  const int64_t n = x.size(0);
  Tensor y = ctx_.arena.alloc({n, l.out_features()}, x.dtype());

  // Each segment's delta, and x A^T's memory allocated up front (the arena is not thread-safe).
  std::vector<const LoraDelta*> deltas(segs.size(), nullptr);
  std::vector<Tensor> xa(segs.size());
  for (size_t i = 0; i < segs.size(); ++i) {
    if (segs[i].adapter == 0) continue;
    TUNE_ASSERT(bank_ != nullptr, "forward_batch: adapter ", segs[i].adapter, " without a bank");
    deltas[i] = bank_->delta(segs[i].adapter, l.module());
    if (deltas[i]) xa[i] = ctx_.arena.alloc({segs[i].count, deltas[i]->a.size(0)}, x.dtype());
  }
  auto add_delta = [&](size_t i) {
    if (!deltas[i]) return;
    Tensor ys = y.narrow(segs[i].row0, segs[i].count);
    ops::matmul(xa[i], x.narrow(segs[i].row0, segs[i].count), Transpose::no, deltas[i]->a,
                Transpose::yes);
    ops::matmul(ys, xa[i], Transpose::no, deltas[i]->b, Transpose::yes, deltas[i]->scale, 1.0);
  };

  if (rows_ == RowMatmul::batched) {
    ops::matmul(y, x, Transpose::no, w, tw);
    if (bi >= 0) ops::add_bias(y, params.param(bi));
    for (size_t i = 0; i < segs.size(); ++i) add_delta(i);
    return y;
  }
  const auto count = static_cast<int64_t>(segs.size());
  const bool cpu = on_cpu();
#pragma omp parallel for schedule(dynamic, 1) if (cpu)
  for (int64_t i = 0; i < count; ++i) {
    const Segment& s = segs[static_cast<size_t>(i)];
    Tensor ys = y.narrow(s.row0, s.count);
    ops::matmul(ys, x.narrow(s.row0, s.count), Transpose::no, w, tw);
    if (bi >= 0) ops::add_bias(ys, params.param(bi));
    add_delta(static_cast<size_t>(i));
  }
  return y;
}

Tensor BatchedDecode::attention(Attention& a, const Tensor& x, const Tensor& positions,
                                size_t layer) {
  const int64_t N = total_rows_, D = a.head_dim_, H = a.heads_, Hkv = a.kv_heads_;
  const std::vector<Segment> segs = sequence_segments();
  Tensor q, k, v;  // (N, H*D), (N, Hkv*D), (N, Hkv*D)
  if (a.fused_) {
    Tensor qkv = linear(a.qkv_, x, segs);
    q = ctx_.arena.alloc({N, H * D}, x.dtype());
    k = ctx_.arena.alloc({N, H * D}, x.dtype());
    v = ctx_.arena.alloc({N, H * D}, x.dtype());
    ops::slice_columns(q, qkv, 0);
    ops::slice_columns(k, qkv, H * D);
    ops::slice_columns(v, qkv, 2 * H * D);
  } else {
    q = linear(a.q_, x, segs);
    k = linear(a.k_, x, segs);
    v = linear(a.v_, x, segs);
  }
  if (a.q_norm_) {
    q = a.q_norm_->forward(ctx_, q.view({N * H, D})).view({N, H * D});
    k = a.k_norm_->forward(ctx_, k.view({N * Hkv, D})).view({N, Hkv * D});
  }
  // Every row is its own (batch 1) position: RoPE is row-wise.
  if (a.use_rope_) {
    Tensor q4 = q.view({1, N, H, D}), k4 = k.view({1, N, Hkv, D});
    lm_.rope_.forward(q4, positions, ops::Checked::yes);  // by forward_batch, on the host
    lm_.rope_.forward(k4, positions, ops::Checked::yes);
  }
  Tensor out = ctx_.arena.alloc({N, H * D}, x.dtype());
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const auto S = static_cast<int64_t>(steps_.size());
  const bool cpu = on_cpu();
#pragma omp parallel for schedule(dynamic, 1) if (cpu)
  for (int64_t s = 0; s < S; ++s) {
    const auto si = static_cast<size_t>(s);
    KvCache& cache = *steps_[si].cache;
    const int64_t T = count_[si], r0 = row0_[si], past = cache.length(), total = past + T;
    Tensor& kc = cache.keys(layer);
    Tensor& vc = cache.values(layer);
    Tensor k_new = kc.narrow(past, T), v_new = vc.narrow(past, T);  // (T, Hkv, D)
    ops::copy(k_new, k.narrow(r0, T).view({T, Hkv, D}));
    ops::copy(v_new, v.narrow(r0, T).view({T, Hkv, D}));
    Tensor o = out.narrow(r0, T).view({1, T, H, D});
    Tensor no_probs;
    ops::attention_forward(o, no_probs, q.narrow(r0, T).view({1, T, H, D}),
                           kc.narrow(0, total).view({1, total, Hkv, D}),
                           vc.narrow(0, total).view({1, total, Hkv, D}), scale, a.window_);
  }
  return linear(a.o_, out, segs);
}

Tensor BatchedDecode::mlp(Mlp& m, const Tensor& x, const std::vector<Segment>& segs) {
  if (m.kind_ == MlpKind::gelu_tanh) {
    Tensor up = linear(m.up_, x, segs);
    Tensor h = ctx_.arena.alloc(up.shape(), x.dtype());
    ops::gelu_tanh_forward(h, up);
    return linear(m.down_, h, segs);
  }
  Tensor gate = linear(m.gate_, x, segs), up = linear(m.up_, x, segs);
  Tensor h = ctx_.arena.alloc(gate.shape(), x.dtype());
  ops::swiglu_forward(h, gate, up);
  return linear(m.down_, h, segs);
}

Tensor BatchedDecode::run() {
  const TransformerConfig& c = lm_.config_;
  TUNE_CHECK(!steps_.empty(), "CausalLM::forward_batch: no sequences given");
  for (size_t s = 0; s < steps_.size(); ++s) {
    const SequenceStep& st = steps_[s];
    TUNE_CHECK(st.cache != nullptr && !st.ids.empty(), "CausalLM::forward_batch: sequence ", s,
               " has no cache or no new tokens");
    TUNE_CHECK(st.cache->num_layers() == lm_.blocks_.size(), "CausalLM::forward_batch: sequence ",
               s, "'s cache has ", st.cache->num_layers(), " layers but the model has ",
               lm_.blocks_.size());
    const int64_t end = st.cache->length() + count_[s];
    TUNE_CHECK(end <= st.cache->capacity(), "CausalLM::forward_batch: sequence ", s, ": ",
               count_[s], " more tokens do not fit in its KV cache of ", st.cache->capacity(),
               " positions holding ", st.cache->length());
    TUNE_CHECK(end <= c.max_positions, "CausalLM::forward_batch: sequence ", s, ": position ",
               end - 1, " is past the model's max_position_embeddings (", c.max_positions, ")");
    TUNE_CHECK(st.adapter == 0 || (bank_ && st.adapter >= 1 && st.adapter <= bank_->size()),
               "CausalLM::forward_batch: sequence ", s, " asks for adapter ", st.adapter,
               " which the bank does not hold");
    for (int64_t id : st.ids)
      TUNE_CHECK(id >= 0 && id < c.vocab_size, "CausalLM::forward_batch: token ", id,
                 " is outside the vocabulary of ", c.vocab_size);
  }
  lm_.ensure_rope();
  ctx_.dtype = lm_.params_->dtype();
  ctx_.mode = Mode::eval;
  device_ = lm_.device();
  TUNE_CHECK(ctx_.device() == device_,
             "CausalLM::forward_batch: the context's arena and the model are on different "
             "devices; make the Context with the model's device (nn::Context(lm.device()))");

  const int64_t N = total_rows_;
  Tensor ids = Tensor::empty({N}, DType::i64), positions = Tensor::empty({1, N}, DType::i64);
  for (size_t s = 0; s < steps_.size(); ++s) {
    for (int64_t t = 0; t < count_[s]; ++t) {
      ids.data<int64_t>()[row0_[s] + t] = steps_[s].ids[static_cast<size_t>(t)];
      positions.data<int64_t>()[row0_[s] + t] = steps_[s].cache->length() + t;
    }
  }
  ids = ids.to(device_);
  positions = positions.to(device_);
  Tensor x = lm_.embed(ctx_, ids, positions.view({N}));  // (N, C)
  const std::vector<Segment> segs = sequence_segments();
  for (size_t l = 0; l < lm_.blocks_.size(); ++l) {
    DecoderBlock& b = *lm_.blocks_[l];
    Tensor a = attention(b.attn_, b.attn_norm_.forward(ctx_, x), positions, l);
    Tensor h = ctx_.arena.alloc(x.shape(), x.dtype());
    ops::add(h, x, a);
    Tensor m = mlp(b.mlp_, b.mlp_norm_.forward(ctx_, h), segs);
    Tensor y = ctx_.arena.alloc(x.shape(), x.dtype());
    ops::add(y, h, m);
    x = y;
  }
  for (size_t s = 0; s < steps_.size(); ++s) steps_[s].cache->advance(count_[s]);

  // The last row of each sequence, then the final norm and the head on those S rows.
  const auto S = static_cast<int64_t>(steps_.size());
  Tensor last = ctx_.arena.alloc({S, c.hidden_size}, x.dtype());
  std::vector<Segment> head_segs;
  for (int64_t s = 0; s < S; ++s) {
    const auto si = static_cast<size_t>(s);
    Tensor dst = last.narrow(s, 1);
    ops::copy(dst, x.narrow(row0_[si] + count_[si] - 1, 1));
    head_segs.push_back({s, 1, steps_[si].adapter});
  }
  return linear(lm_.lm_head_, lm_.final_norm_.forward(ctx_, last), head_segs);
}

Tensor CausalLM::forward_batch(Context& ctx, std::span<const SequenceStep> steps,
                               const AdapterBank* bank, RowMatmul rows) {
  return BatchedDecode(*this, ctx, steps, bank, rows).run();
}

}  // namespace tune::nn
