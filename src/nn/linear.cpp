#include "tune/nn/linear.h"

#include "tune/ops/ops.h"

namespace tune::nn {

using ops::Transpose;

Linear::Linear(ParamStore& params, const std::string& module, int64_t in, int64_t out, Bias bias,
               Role role, Decay decay, Layout layout)
    : params_(&params), module_(module), in_(in), out_(out), layout_(layout) {
  const Shape shape = layout == Layout::out_in ? Shape{out, in} : Shape{in, out};
  weight_ = params.add(module + ".weight", shape, role, decay);
  // Biases are never decayed (the usual practice for norms and biases).
  if (bias == Bias::yes) bias_ = params.add(module + ".bias", {out}, role, Decay::no);
}

Linear Linear::tied(ParamStore& params, const std::string& module, int weight_index) {
  Linear l;
  l.params_ = &params;
  l.module_ = module;
  const Shape& s = params.info(weight_index).shape;
  l.out_ = s[0];
  l.in_ = s[1];
  l.weight_ = weight_index;
  return l;
}

void Linear::add_lora(const LoraConfig& config, uint64_t dropout_stream) {
  // A is [r, in] and B [out, r] whatever the base layout: PEFT's fan_in_fan_out transposes only
  // the base weight (Conv1D), never the adapter.
  std::string prefix = "base_model.model." + module_;
  lora_a_ = params_->add(prefix + ".lora_A.weight", {config.r, in_}, Role::trainable, Decay::yes);
  lora_b_ = params_->add(prefix + ".lora_B.weight", {out_, config.r}, Role::trainable, Decay::yes);
  lora_scale_ = config.scale();
  lora_dropout_ = config.dropout;
  lora_seed_ = config.seed;
  dropout_stream_ = dropout_stream;
}

Tensor Linear::stacked_weight(std::initializer_list<const Linear*> linears) {
  const Linear* first = *linears.begin();
  const ParamStore& params = *first->params_;
  const ParamInfo& head = params.info(first->weight_);
  int64_t rows = 0, next = head.offset;
  for (const Linear* l : linears) {
    if (l->params_ != &params || l->layout_ != Layout::out_in || l->bias_ >= 0 || l->lora_a_ >= 0 ||
        l->in_ != first->in_)
      return Tensor();
    const ParamInfo& p = params.info(l->weight_);
    if (p.role != head.role || p.offset != next || p.shape != Shape{l->out_, l->in_})
      return Tensor();
    next += l->out_ * l->in_;
    rows += l->out_;
  }
  const Tensor& buffer = head.role == Role::trainable ? params.trainable() : params.frozen();
  return buffer.narrow(head.offset, rows * first->in_).view({rows, first->in_});
}

namespace {
// One dropout stream per (step, layer): the mask is regenerated, not stored, in backward.
uint64_t stream_of(const Context& ctx, uint64_t layer_stream) {
  return (ctx.step << 24) ^ layer_stream;
}
}  // namespace

Tensor Linear::forward(Context& ctx, const Tensor& x) {
  return forward(ctx, x, x.dtype());
}

Tensor Linear::forward(Context& ctx, const Tensor& x, DType out) {
  const int64_t n = x.size(0);
  TUNE_CHECK(out == x.dtype() || bias_ < 0, module_, ": a ", dtype_name(out), " result of ",
             dtype_name(x.dtype()), " inputs cannot take the bias");
  Tensor y = ctx.arena.alloc({n, out_}, out);
  ops::matmul(y, x, Transpose::no, params_->param(weight_),
              layout_ == Layout::out_in ? Transpose::yes : Transpose::no);
  if (bias_ >= 0) ops::add_bias(y, params_->param(bias_));
  x_ = x;
  if (lora_a_ >= 0) {
    Tensor xd = x;
    if (lora_dropout_ > 0 && ctx.mode == Mode::train) {
      xd = ctx.arena.alloc(x.shape(), x.dtype());
      ops::dropout(xd, x, lora_dropout_, lora_seed_, stream_of(ctx, dropout_stream_));
    }
    x_dropped_ = xd;
    Tensor a = params_->param(lora_a_);  // (r, in)
    xa_ = ctx.arena.alloc({n, a.size(0)}, x.dtype());
    ops::matmul(xa_, xd, Transpose::no, a, Transpose::yes);
    ops::matmul(y, xa_, Transpose::no, params_->param(lora_b_), Transpose::yes, lora_scale_, 1.0);
  }
  return y;
}

void Linear::backward(Context& ctx, const Tensor& dy, Tensor& dx, Accumulate accumulate) {
  Tensor w = params_->param(weight_);
  Tensor dw = params_->grad(weight_);
  if (dw.defined()) {
    if (layout_ == Layout::out_in)
      ops::matmul(dw, dy, Transpose::yes, x_, Transpose::no, 1.0, 1.0);  // dW [out, in] += dy^T x
    else
      ops::matmul(dw, x_, Transpose::yes, dy, Transpose::no, 1.0, 1.0);  // dW [in, out] += x^T dy
  }
  if (bias_ >= 0) {
    Tensor db = params_->grad(bias_);
    if (db.defined()) ops::bias_backward(db, dy);
  }
  ops::matmul(dx, dy, Transpose::no, w, layout_ == Layout::out_in ? Transpose::no : Transpose::yes,
              1.0, accumulate == Accumulate::yes ? 1.0 : 0.0);
  if (lora_a_ < 0) return;

  Tensor a = params_->param(lora_a_), b = params_->param(lora_b_);
  Tensor da = params_->grad(lora_a_), db = params_->grad(lora_b_);
  // dB += scale dy^T (x A^T);  d(xA^T) = scale dy B;  dA += d(xA^T)^T x_dropped
  ops::matmul(db, dy, Transpose::yes, xa_, Transpose::no, lora_scale_, 1.0);
  Tensor dxa = ctx.arena.alloc(xa_.shape(), dy.dtype());
  ops::matmul(dxa, dy, Transpose::no, b, Transpose::no, lora_scale_, 0.0);
  ops::matmul(da, dxa, Transpose::yes, x_dropped_, Transpose::no, 1.0, 1.0);
  if (x_dropped_.raw() == x_.raw()) {  // no dropout: x_dropped_ is x_
    ops::matmul(dx, dxa, Transpose::no, a, Transpose::no, 1.0, 1.0);
  } else {
    Tensor dxd = ctx.arena.alloc(dx.shape(), dy.dtype());
    ops::matmul(dxd, dxa, Transpose::no, a, Transpose::no);
    ops::dropout(dxd, dxd, lora_dropout_, lora_seed_, stream_of(ctx, dropout_stream_));
    ops::add_inplace(dx, dxd);
  }
}

}  // namespace tune::nn
