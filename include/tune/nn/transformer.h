// The decoder-only transformer shared by the Llama family (Llama, Mistral, Qwen2, Qwen3) and
// GPT-2: the architecture description (feature flags, Llama's by default), the tensor-name table
// each family fills in, and the layers — attention, MLP (SwiGLU or GELU), decoder block, causal LM.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tune/nn/layers.h"
#include "tune/nn/linear.h"
#include "tune/nn/loss.h"

namespace tune::nn {

enum class MlpKind : uint8_t {
  swiglu,     // down(silu(gate(x)) * up(x))  (Llama)
  gelu_tanh,  // down(gelu_tanh(up(x)))      (GPT-2: up = c_fc, down = c_proj)
};
enum class PositionKind : uint8_t {
  rope,     // rotary embedding of q and k (Llama)
  learned,  // a learned position table added to the token embeddings (GPT-2's wpe)
};

struct TransformerConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_positions = 0;
  double rms_norm_eps = 1e-6;  // the eps of every norm, LayerNorm's too
  NormKind norm = NormKind::rms;
  MlpKind mlp = MlpKind::swiglu;
  PositionKind positions = PositionKind::rope;
  RopeConfig rope;
  // GPT-2: one projection writes q|k|v (names.qkv; needs num_kv_heads == num_heads), and every
  // projection stores its weight [in, out] (transformers' Conv1D).
  bool fused_qkv = false;
  bool conv1d = false;
  bool tie_embeddings = false;
  bool qkv_bias = false;  // q/k/v projections (Qwen2; Llama's attention_bias)
  bool o_bias = false;    // output projection (Llama's attention_bias)
  bool mlp_bias = false;  // Llama's mlp_bias
  bool qk_norm = false;   // per-head RMSNorm on q and k before RoPE (Qwen3)
  // Per layer: 0 = full causal attention, w > 0 = sliding window of w keys (Mistral).
  std::vector<int64_t> sliding_window;
};

// Module names, "%d" standing for the layer index. The defaults are Llama's.
struct TensorNames {
  std::string embed = "model.embed_tokens";
  std::string pos_embed;  // PositionKind::learned (GPT-2: "transformer.wpe")
  std::string final_norm = "model.norm";
  std::string lm_head = "lm_head";
  std::string attn_norm = "model.layers.%d.input_layernorm";
  std::string mlp_norm = "model.layers.%d.post_attention_layernorm";
  std::string q = "model.layers.%d.self_attn.q_proj";
  std::string k = "model.layers.%d.self_attn.k_proj";
  std::string v = "model.layers.%d.self_attn.v_proj";
  std::string o = "model.layers.%d.self_attn.o_proj";
  std::string qkv;  // fused_qkv (GPT-2: "transformer.h.%d.attn.c_attn")
  std::string q_norm = "model.layers.%d.self_attn.q_norm";
  std::string k_norm = "model.layers.%d.self_attn.k_norm";
  std::string gate = "model.layers.%d.mlp.gate_proj";
  std::string up = "model.layers.%d.mlp.up_proj";
  std::string down = "model.layers.%d.mlp.down_proj";

  static std::string at(const std::string& pattern, int64_t layer);
};

// How the parameters are declared: which are trainable, and the adapter if any.
struct BuildOptions {
  Role base_role = Role::trainable;  // frozen for LoRA
  const LoraConfig* lora = nullptr;  // LoRA on the targeted Linears when set
};

// Keys and values of the positions a model has already seen, for generation one token at a time:
// per layer k, v [capacity, Hkv, D] (rotated keys), the first length() rows filled. One
// sequence; memory is allocated once for `capacity` positions. CausalLM::forward_cached appends.
class KvCache {
 public:
  KvCache() = default;
  KvCache(const TransformerConfig& config, int64_t capacity, DType dtype,
          Device device = Device::cpu);
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  // Forget everything after the first n positions (n <= length): a new prompt that shares a
  // prefix with the cached tokens only needs the rest prefilled.
  void truncate(int64_t n);
  void clear() { truncate(0); }
  // A cache with room for `capacity` positions holding this one's contents.
  KvCache grown(int64_t capacity) const;
  // An empty cache over positions [start, start + capacity) of this one's memory (shared, not
  // copied): a pool's slot for one sequence.
  KvCache slice(int64_t start, int64_t capacity) const;
  Tensor& keys(size_t layer) { return k_[layer]; }
  Tensor& values(size_t layer) { return v_[layer]; }
  size_t num_layers() const { return k_.size(); }
  void advance(int64_t n);  // n more rows of every layer are filled

 private:
  std::vector<Tensor> k_, v_;  // per layer [capacity, Hkv, D]
  int64_t length_ = 0, capacity_ = 0;
};

// Which positions CausalLM::forward_cached returns logits for.
enum class Logits : uint8_t { last, all };

// The inputs of CausalLM::decode_step, on the model's device: fixed buffers refilled before each
// step, so that the step's kernels and their arguments never change and the step can be captured
// once in a CUDA graph and replayed. N sequences, one new token each; the KV cache the step
// writes and reads is a pool of pages of `page_size` positions (the paged-attention ops), each
// sequence's pages listed in its row of `pages`.
struct DecodeInputs {
  Tensor ids;        // [N] i64: the new tokens
  Tensor positions;  // [N, 1] i64: their positions
  Tensor slots;      // [N] i32: where their keys and values go in the pool (-1: a padding row)
  Tensor lengths;    // [N] i32: keys each sequence sees once the new ones are written
  Tensor pages;      // [N, max_pages] i32: the block table
  int64_t page_size = 0;
  Tensor buffer, staging;  // all of the above in one device buffer, and its host copy

  DecodeInputs() = default;
  DecodeInputs(Device device, int64_t rows, int64_t max_pages, int64_t page_size);
  int64_t rows() const { return ids.numel(); }
  // One sequence whose cache is a single page (page_size = its capacity): the token at
  // `position`. Queues the copies (the host side is staged, so this returns at once).
  void set(int64_t token, int64_t position);
  // Every row at once, from host vectors of N entries (pages: N * max_pages, row-major).
  void set(const std::vector<int64_t>& tokens, const std::vector<int64_t>& token_positions,
           const std::vector<int32_t>& slot_ids, const std::vector<int32_t>& seq_lengths,
           const std::vector<int32_t>& block_table);
};

// ---- Batched forward for serving (src/nn/batched_decode.cpp) ----
class AdapterBank;
class BatchedDecode;  // the implementation; a friend of the layers below

// How CausalLM::forward_batch multiplies the rows of its sequences by a weight.
enum class RowMatmul : uint8_t {
  // Each sequence's rows in a GEMM of their own: a sequence's result is the same to the bit
  // whatever else the batch holds (a CPU BLAS picks its kernel by the GEMM's shape, so one GEMM
  // over 64 rows may round a row differently from one over 1 row). The default.
  independent,
  // One GEMM over every row of the step (and one per run of rows with the same adapter): fewer,
  // larger GEMMs; a row's rounding may then depend on the batch.
  batched,
};

// One sequence's part of a CausalLM::forward_batch step.
struct SequenceStep {
  std::span<const int64_t> ids;  // the new tokens: 1 when decoding, the prompt when prefilling
  KvCache* cache = nullptr;      // the sequence's own cache; the new keys and values go there
  int adapter = 0;               // 0: the base model; k >= 1: the AdapterBank's adapter k
};

// Activation checkpointing on CUDA (CausalLM with Context::recompute_blocks): what a block's
// flash-attention forward computed, kept from its first forward to its recomputation in backward
// so that the rerun skips that forward (the same data it would compute again). The rerun still
// projects and rotates q, k and v, which attention's backward reads.
struct KeptAttention {
  Tensor out;  // [B, T, Hq, D], the activation dtype: o_proj's input and D_i in the backward
  Tensor lse;  // [B, Hq, T] f32: each query row's logsumexp
};
// What Attention::forward does with a KeptAttention: fill writes this forward's out and lse into
// it; reuse reads them from it instead of running the attention forward.
enum class Kept : uint8_t { fill, reuse };

class Attention {
 public:
  Attention() = default;
  Attention(ParamStore& params, const TransformerConfig& c, const TensorNames& names, int64_t layer,
            const BuildOptions& options);
  // x [B*T, C] -> [B*T, C]; positions [B, T] and key_start (document_key_starts, or undefined)
  // on the model's device; the positions inside the rotary tables (the caller checks them: on
  // CUDA the rotations do not, see ops::rope_forward; CausalLM does once per batch). kept (CUDA
  // only; null: nothing kept) is filled or reused as `use` says; its tensors must have the shapes
  // above.
  Tensor forward(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& key_start,
                 const RotaryEmbedding& rope, KeptAttention* kept = nullptr, Kept use = Kept::fill);
  // dx is written (=).
  void backward(Context& ctx, const Tensor& dy, Tensor& dx, const RotaryEmbedding& rope);
  // Inference over T new positions of one sequence, x [T, C] -> [T, C]: their keys and values
  // go into rows [past, past + T) of k_cache, v_cache [capacity, Hkv, D], and the queries attend
  // to rows [0, past + T). Saves nothing for backward.
  Tensor forward_cached(Context& ctx, const Tensor& x, const Tensor& positions,
                        const RotaryEmbedding& rope, Tensor& k_cache, Tensor& v_cache,
                        int64_t past);
  // One decode step of N sequences on norm(x), x [N, C], with the paged-attention ops (see
  // CausalLM::decode_step); the output is added to residual [N, C] in place.
  void decode_step(Context& ctx, const Tensor& x, Norm& norm, const DecodeInputs& in,
                   const RotaryEmbedding& rope, Tensor& k_pool, Tensor& v_pool, Tensor& residual);
  std::vector<Linear*> linears() {
    if (fused_) return {&qkv_, &o_};
    return {&q_, &k_, &v_, &o_};
  }

 private:
  friend class BatchedDecode;
  // q (N, Hq*D), k and v (N, Hkv*D) from x (N, C), through the separate or the fused projection.
  void project(Context& ctx, const Tensor& x, Tensor& q, Tensor& k, Tensor& v);
  Linear q_, k_, v_, o_, qkv_;
  std::unique_ptr<RMSNorm> q_norm_, k_norm_;
  int64_t heads_ = 0, kv_heads_ = 0, head_dim_ = 0, window_ = 0;
  bool fused_ = false, use_rope_ = true;
  // Saved: rotated q, k and v as [B, T, H, D] views, positions, and what attention's backward
  // needs: on the CPU the probabilities; on CUDA (flash attention, which recomputes them) the
  // output, each query row's logsumexp and the documents' first keys.
  Tensor q_rot_, k_rot_, v_saved_, positions_, probs_, out_, lse_, key_start_;
};

class Mlp {
 public:
  Mlp() = default;
  Mlp(ParamStore& params, const TransformerConfig& c, const TensorNames& names, int64_t layer,
      const BuildOptions& options);
  // With residual defined, residual + the MLP's output, added in the down projection's products.
  Tensor forward(Context& ctx, const Tensor& x, const Tensor& residual = Tensor());
  // forward for backward's sake (activation checkpointing): saves what backward reads but skips
  // the down projection's product, whose output only the block's output reads.
  void recompute(Context& ctx, const Tensor& x);
  void backward(Context& ctx, const Tensor& dy, Tensor& dx);
  // Inference on norm(x) (saves nothing), the output added to residual in place: for one row
  // with gate and up stacked in the parameter buffer, RMSNorm and gate|up are one kernel.
  void forward_decode(Context& ctx, const Tensor& x, Norm& norm, Tensor& residual);
  std::vector<Linear*> linears() {
    if (kind_ == MlpKind::gelu_tanh) return {&up_, &down_};
    return {&gate_, &up_, &down_};
  }

 private:
  friend class BatchedDecode;
  // The down projection's input: act(gate) * up, or gelu(up).
  Tensor activation(Context& ctx, const Tensor& x);
  MlpKind kind_ = MlpKind::swiglu;
  Linear gate_, up_, down_;
  Tensor gate_out_, up_out_;
};

class DecoderBlock {
 public:
  DecoderBlock(ParamStore& params, const TransformerConfig& c, const TensorNames& names,
               int64_t layer, const BuildOptions& options);
  // h = x + attn(norm(x)); y = h + mlp(norm(h)). kept: filled (see Attention::forward).
  Tensor forward(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& key_start,
                 const RotaryEmbedding& rope, KeptAttention* kept = nullptr);
  // Activation checkpointing's rerun of forward before backward: the same saved state, read
  // from `kept` where the first forward kept it (Kept::reuse), without the block's output (the
  // MLP's down projection and the last residual add: backward reads neither).
  void recompute(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& key_start,
                 const RotaryEmbedding& rope, KeptAttention* kept);
  // dx [B*T, C] is written: the gradient of the block's input (not dy's memory).
  void backward(Context& ctx, const Tensor& dy, const RotaryEmbedding& rope, Tensor& dx);
  // Inference with a KV cache (see Attention::forward_cached).
  Tensor forward_cached(Context& ctx, const Tensor& x, const Tensor& positions,
                        const RotaryEmbedding& rope, Tensor& k_cache, Tensor& v_cache,
                        int64_t past);
  // x [N, C] updated in place to the block's output (decoding keeps no block input).
  void decode_step(Context& ctx, Tensor& x, const DecodeInputs& in, const RotaryEmbedding& rope,
                   Tensor& k_pool, Tensor& v_pool);
  std::vector<Linear*> linears();

 private:
  friend class BatchedDecode;
  // The block after its attention a: h = x + a, then y = h + mlp(norm(h)).
  Tensor residual_mlp(Context& ctx, const Tensor& x, const Tensor& a);
  Norm attn_norm_, mlp_norm_;
  Attention attn_;
  Mlp mlp_;
};

class CausalLM {
 public:
  CausalLM(ParamStore& params, const TransformerConfig& config, const TensorNames& names,
           const BuildOptions& options);
  const TransformerConfig& config() const { return config_; }
  Device device() const { return params_->device(); }

  // ids [B, T] (i64), positions [B, T] (i64) -> logits [B*T, V]. Builds the rotary tables for the
  // parameter dtype on first use. ids, positions and labels (below) may be on the host or on the
  // model's device; host tensors are copied over (positions are read on the host, for packed
  // documents, so host tensors cost no synchronisation).
  Tensor forward(Context& ctx, const Tensor& ids, const Tensor& positions);
  // dlogits [B*T, V]: accumulates every trainable parameter's gradient.
  void backward(Context& ctx, const Tensor& dlogits);

  // Training without the [B*T, V] logits (the fused linear + cross-entropy of Unsloth and Liger):
  // the model runs to the final norm, then the output head, the causal-LM loss and the head's
  // backward go chunk by chunk, each chunk's logits living only while its loss and gradient are
  // taken, then backward runs through the rest. Accumulates every trainable parameter's gradient
  // and returns what causal_lm_loss(..., labels, normalizer) would. In bf16/f16 on CUDA the
  // logits are computed in f32 and the gradient handed back in the activation dtype.
  // chunk_rows 0: chunks of about 16M logits on the CPU, 64M on CUDA.
  LossResult forward_backward(Context& ctx, const Tensor& ids, const Tensor& positions,
                              const Tensor& labels, double normalizer, int64_t chunk_rows = 0);
  // The same loss without gradients (evaluation).
  LossResult forward_loss(Context& ctx, const Tensor& ids, const Tensor& positions,
                          const Tensor& labels, int64_t chunk_rows = 0);
  // Generation: ids [T] (i64) are the next T tokens of the sequence in `cache`, at positions
  // cache.length() .. + T - 1; their keys and values are appended to the cache. Returns logits
  // [1, V] for the last token (Logits::last) or [T, V] for all. Runs in eval mode (no dropout)
  // and saves nothing for backward; hidden_states() is not updated. Throws when the cache has
  // no room for T more positions or they pass the model's max_positions.
  Tensor forward_cached(Context& ctx, const Tensor& ids, KvCache& cache,
                        Logits which = Logits::last);
  // Generation's decode step in a form a CUDA graph can capture: for one sequence, what
  // forward_cached(ctx, {token}, cache) computes after in.set(token, cache.length()); for N, the
  // same for each row, the sequences' caches being pages of `pool` (its capacity a multiple of
  // in.page_size). Every per-step value is read from the device buffers of `in`
  // (kv_cache_write and attention_decode instead of a copy into the cache and
  // attention_forward); nothing is copied from the host and nothing waited for. Returns logits
  // [N, V] (in ctx's arena). Advances no cache (a replayed graph runs no host code: the caller
  // keeps the lengths), and the caller checks that every sequence has room.
  Tensor decode_step(Context& ctx, const DecodeInputs& in, KvCache& pool);
  // A KV cache for this model with room for `capacity` positions, in the parameter dtype, on
  // the parameters' device.
  KvCache make_cache(int64_t capacity) const;

  // Serving (src/nn/batched_decode.cpp): S sequences advanced in one forward, each by its own
  // new tokens (one when decoding, its prompt when prefilling) against its own KV cache, each
  // with the base model or one of `bank`'s LoRA adapters (bank may be null when every adapter is
  // 0). Attention runs per sequence; the Linears run over all rows, grouped as `rows` says.
  // Returns logits [S, V]: the last new token of each sequence. Like forward_cached it runs in
  // eval mode, saves nothing for backward and appends to the caches. The model itself must carry
  // no adapter (adapters come from the bank).
  Tensor forward_batch(Context& ctx, std::span<const SequenceStep> steps, const AdapterBank* bank,
                       RowMatmul rows = RowMatmul::independent);

  // After forward: Hugging Face's output_hidden_states — the embeddings, each block's output,
  // and last the final norm's output (L + 1 tensors, [B*T, C]).
  const std::vector<Tensor>& hidden_states() const { return hidden_; }
  // After a training forward with Context::recompute_blocks on CUDA (not offloaded): each block's
  // kept attention output and lse, which backward's recomputation reads instead of rerunning the
  // attention forward (one per block; empty otherwise). Arena memory, like hidden_states().
  const std::vector<KeptAttention>& kept_attention() const { return kept_; }
  // Every Linear, in model order (LoRA loading and merging walk these).
  std::vector<Linear*> linears();

 private:
  friend class BatchedDecode;
  Tensor forward_hidden(Context& ctx, const Tensor& ids, const Tensor& positions);  // -> xn
  void backward_hidden(Context& ctx, const Tensor& dxn);
  Tensor forward_blocks_offloaded(Context& ctx, Tensor x);
  Tensor backward_blocks_offloaded(Context& ctx, Tensor dx);
  int64_t head_chunk_rows(int64_t rows, int64_t chunk_rows) const;
  LossResult head_loss(Context& ctx, const Tensor& xn, const Tensor& labels, double normalizer,
                       Tensor* dxn, int64_t chunk_rows);
  void ensure_rope();  // the rotary tables in the parameter dtype (PositionKind::rope)
  // Token embeddings plus, for PositionKind::learned, position embeddings; ids, positions [N].
  Tensor embed(Context& ctx, const Tensor& ids, const Tensor& positions);

  ParamStore* params_;
  TransformerConfig config_;
  Embedding embed_, pos_embed_;  // pos_embed_: PositionKind::learned only
  std::vector<std::unique_ptr<DecoderBlock>> blocks_;
  Norm final_norm_;
  Linear lm_head_;
  RotaryEmbedding rope_;
  std::vector<Tensor> hidden_;
  std::vector<KeptAttention> kept_;  // see kept_attention()
  Tensor positions_, key_start_;  // of the last forward (on the model's device), for recomputation
  bool recompute_ = false;        // the last forward kept only block inputs (and kept_)
  // Context::offload_blocks: the block inputs' pinned host copies, the two device buffers they
  // take turns in, and the copy stream; built on the first offloaded forward.
  struct Offload;
  std::shared_ptr<Offload> offload_;
  bool offloaded_ = false;  // the last forward offloaded its block inputs
};

// Packed rows (several documents in one row, positions restarting at 0 at each): each query's
// first visible key [B, T] (i64), the last t <= i with positions[b, t] == 0 (0 when none), for
// ops::attention_forward's key_start — what Hugging Face derives from position_ids. Undefined
// when no row holds a second document, so unpacked batches pay nothing.
Tensor document_key_starts(const Tensor& positions);

// Positions 0..T-1 for every row of a [B, T] batch.
Tensor default_positions(int64_t batch, int64_t seq);

}  // namespace tune::nn
