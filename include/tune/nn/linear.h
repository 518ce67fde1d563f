// Linear: y [N, out] = x [N, in] W^T + b, with W [out, in] as Hugging Face stores it, and an
// optional LoRA adapter on top. The layer keeps the indices of its parameters in the ParamStore
// and saves exactly what backward needs: x, and with LoRA x·A^T (computed once, reused for dB)
// and the dropped-out x when dropout is on.
#pragma once

#include <initializer_list>
#include <string>

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

  Tensor forward(Context& ctx, const Tensor& x);
  // The same with the result in `out` (f32 from bf16/f16 x on CUDA: the output head's logits,
  // whose rounding to bf16 would bias the loss). No bias then.
  Tensor forward(Context& ctx, const Tensor& x, DType out);
  void backward(Context& ctx, const Tensor& dy, Tensor& dx, Accumulate accumulate);

  // The weights of `linears` stacked, [sum of their out, in], as one view of the parameter buffer
  // when they lie there one right after another (declared in a row, same role and input size,
  // [out, in] layout, no bias, no adapter); undefined otherwise. Decoding multiplies by q|k|v or
  // gate|up in one product this way.
  static Tensor stacked_weight(std::initializer_list<const Linear*> linears);

  const std::string& module() const { return module_; }
  bool has_lora() const { return lora_a_ >= 0; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  ParamStore* params_ = nullptr;
  std::string module_;
  int64_t in_ = 0, out_ = 0;
  Layout layout_ = Layout::out_in;
  int weight_ = -1, bias_ = -1;
  int lora_a_ = -1, lora_b_ = -1;
  double lora_scale_ = 0, lora_dropout_ = 0;
  uint64_t lora_seed_ = 0, dropout_stream_ = 0;
  // Saved by forward for backward.
  Tensor x_, x_dropped_, xa_;
};

}  // namespace tune::nn
