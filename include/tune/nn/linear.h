// Linear: y [N, out] = x [N, in] W^T + b, with W [out, in] as Hugging Face stores it, and an
// optional LoRA adapter on top. The layer keeps the indices of its parameters in the ParamStore
// and saves exactly what backward needs: x, and with LoRA x·A^T (computed once, reused for dB)
// and the dropped-out x when dropout is on.
//
// Linears that read the same input (attention's q, k, v; the MLP's gate, up) also run as a group:
// their adapters' x·A^T, dA and dx·A as one product each (the skinny LoRA GEMMs, N or K = r, are
// bound by reading x and dy, not by arithmetic); the base products stay one per member.
#pragma once

#include <initializer_list>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tune/nn/context.h"
#include "tune/nn/lora.h"
#include "tune/nn/params.h"

namespace tune::nn {

enum class Bias : uint8_t { no, yes };
// How the weight is stored: [out, in] (torch.nn.Linear, as Hugging Face stores most models) or
// [in, out] (transformers' Conv1D: GPT-2's projections, y = x W + b).
enum class Layout : uint8_t { out_in, in_out };
// Whether backward writes dx (=) or adds to it (+=): the q, k, v projections share one input.
enum class Accumulate : uint8_t { no, yes };

class Linear {
 public:
  Linear() = default;
  // Declares "<module>.weight" (and "<module>.bias") in `params`.
  Linear(ParamStore& params, const std::string& module, int64_t in, int64_t out, Bias bias,
         Role role, Decay decay = Decay::yes, Layout layout = Layout::out_in);
  // A Linear whose weight is another layer's parameter (tied embeddings).
  static Linear tied(ParamStore& params, const std::string& module, int weight_index);
  // Declares PEFT-named "base_model.model.<module>.lora_A.weight" / "lora_B.weight" (trainable).
  // A [r, in] and B [out, r] for either layout (PEFT's fan_in_fan_out leaves them so).
  void add_lora(const LoraConfig& config, uint64_t dropout_stream);
  // The same for each member of a group that will run together (forward_group), each with its
  // dropout stream: every A first, in order, then every B, so that the A's lie stacked in the
  // trainable buffer (see shares_adapters).
  static void add_lora_group(const LoraConfig& config,
                             std::span<const std::pair<Linear*, uint64_t>> members);

  Tensor forward(Context& ctx, const Tensor& x);
  // The same with the result in `out` (f32 from bf16/f16 x on CUDA: the output head's logits,
  // whose rounding to bf16 would bias the loss). No bias then.
  Tensor forward(Context& ctx, const Tensor& x, DType out);
  // residual + forward(x) (residual [N, out] of x's dtype), the residual added in the products
  // (ops::matmul_add), not in a pass of its own: a block's output, the down projection's.
  Tensor forward_add(Context& ctx, const Tensor& x, const Tensor& residual);
  void backward(Context& ctx, const Tensor& dy, Tensor& dx, Accumulate accumulate);
  // GPT-2's MLP with GELU-tanh in the products (ops::matmul_gelu; a Linear without an adapter):
  // forward_gelu returns gelu_tanh(forward(x)) and keeps forward(x) in `pre` for backward;
  // backward_gelu is backward (dx written) with dx = (dy W) * gelu_tanh'(pre), the gradient of the
  // activation before this Linear, whose output `pre` was.
  Tensor forward_gelu(Context& ctx, const Tensor& x, Tensor& pre);
  void backward_gelu(Context& ctx, const Tensor& dy, Tensor& dx, const Tensor& pre);
  // What forward saves for backward (x, and with an adapter x A^T) without the product itself:
  // activation checkpointing's rerun of a block's last Linear, whose output nothing reads.
  void save_input(Context& ctx, const Tensor& x);

  // The weights of `linears` stacked, [sum of their out, in], as one view of the parameter buffer
  // when they lie there one right after another (declared in a row, same role and input size,
  // [out, in] layout, no bias, no adapter); undefined otherwise. Decoding multiplies by q|k|v or
  // gate|up in one product this way.
  static Tensor stacked_weight(std::initializer_list<const Linear*> linears);

  // Linears that read the same x [N, in], run together: the same results as each one's forward
  // (one [N, out_p] tensor each, in group order) and backward (dx written or added to, as
  // `accumulate` says, with the sum over the group) up to the order of floating-point sums.
  // A Linear run by forward_group must be run back by backward_group with the same group.
  static std::vector<Tensor> forward_group(Context& ctx, const Tensor& x,
                                           std::initializer_list<Linear*> group);
  static void backward_group(Context& ctx, std::initializer_list<Linear*> group,
                             std::initializer_list<Tensor> dys, Tensor& dx, Accumulate accumulate);
  // Whether the group's adapters run together: one x·A^T over the adapters of the group (at least
  // two, none with dropout: a mask per member would need an input per member; their A's stacked
  // in the trainable buffer, as add_lora_group declares them when r * in is a whole number of
  // the buffer's 16-element alignment, as every model's is). The base products
  // stay one per member: stacking them costs a copy of every member's columns out of the stacked
  // result (and of the dy's in), which on an H100 took more than the merged product saved (8B
  // LoRA step 146.9 vs 139.6 ms, 1B 124.6 vs 117.5 ms).
  static bool shares_adapters(std::initializer_list<Linear*> group);

  const std::string& module() const { return module_; }
  bool has_lora() const { return lora_a_ >= 0; }
  bool has_bias() const { return bias_ >= 0; }
  Layout layout() const { return layout_; }
  // The weight as stored, and its gradient (undefined when the weight is frozen).
  Tensor weight() const { return params_->param(weight_); }
  Tensor weight_grad() const { return params_->grad(weight_); }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  // The pieces forward and backward are made of; forward_group and backward_group use them for
  // the members they do not run together. The adapter's pieces run first: lora_forward writes y,
  // base_forward adds to it when there is an adapter; dx is written (beta 0) or added to.
  // forward and forward_add: y [N, out] of dtype `out`, plus residual when defined.
  Tensor run_forward(Context& ctx, const Tensor& x, DType out, const Tensor& residual);
  // With residual defined, the first product into y adds it (forward_add).
  void base_forward(Tensor& y, const Tensor& x, const Tensor& residual = Tensor()) const;
  void lora_forward(Context& ctx, const Tensor& x, Tensor& y, const Tensor& residual = Tensor());
  void lora_input(Context& ctx, const Tensor& x);  // x_dropped_ and xa_, as lora_forward saves
  void base_backward(const Tensor& dy, Tensor& dx, double beta) const;
  void weight_backward(const Tensor& dy) const;  // dW and db, where trained
  void lora_backward(Context& ctx, const Tensor& dy, Tensor& dx, double beta);
  // A group's adapters together (shares_adapters): each adapted member's y written with its
  // adapter's product; dx written (beta 0) or added to with the sum of the adapters' input
  // gradients.
  static void adapters_forward(Context& ctx, const Tensor& x, std::initializer_list<Linear*> group,
                               std::vector<Tensor>& ys);
  static void adapters_backward(Context& ctx, std::initializer_list<Linear*> group,
                                std::initializer_list<Tensor> dys, Tensor& dx, double beta);
  static bool adapters_pair(const Linear* a, const Linear* b);
  // The group's A's as one [sum r, in] view of the trainable buffer (of the gradient buffer with
  // `grad`) when they run together (shares_adapters); undefined otherwise.
  static Tensor adapter_stack(std::initializer_list<Linear*> group, bool grad = false);
  // Its rows (sum r), and its first element's offset in the buffers at `begin`; 0 when the
  // group's adapters do not run together.
  static int64_t stacked_adapter_rows(std::initializer_list<Linear*> group, int64_t* begin);
  ParamStore* params_ = nullptr;
  std::string module_;
  int64_t in_ = 0, out_ = 0;
  Layout layout_ = Layout::out_in;
  int weight_ = -1, bias_ = -1;
  int lora_a_ = -1, lora_b_ = -1;
  double lora_scale_ = 0, lora_dropout_ = 0;
  uint64_t lora_seed_ = 0, dropout_stream_ = 0;
  // Saved by forward for backward. Run by forward_group with the adapters together, xa_ is this
  // adapter's rows of (x A_stack^T)^T, [r, N], and a_stack_ the group's A's stacked [sum r, in]
  // (adapter_stack).
  Tensor x_, x_dropped_, xa_, a_stack_;
};

}  // namespace tune::nn
