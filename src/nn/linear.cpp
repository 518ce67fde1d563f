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
  const std::pair<Linear*, uint64_t> self{this, dropout_stream};
  add_lora_group(config, {&self, 1});
}

void Linear::add_lora_group(const LoraConfig& config,
                            std::span<const std::pair<Linear*, uint64_t>> members) {
  // A is [r, in] and B [out, r] whatever the base layout: PEFT's fan_in_fan_out transposes only
  // the base weight (Conv1D), never the adapter.
  auto prefix = [](const Linear* l) { return "base_model.model." + l->module_; };
  for (const auto& [l, stream] : members) {
    TUNE_ASSERT(l->lora_a_ < 0, l->module_, " has an adapter already");
    l->lora_a_ = l->params_->add(prefix(l) + ".lora_A.weight", {config.r, l->in_}, Role::trainable,
                                 Decay::yes);
    l->lora_scale_ = config.scale();
    l->lora_dropout_ = config.dropout;
    l->lora_seed_ = config.seed;
    l->dropout_stream_ = stream;
  }
  for (const auto& [l, stream] : members) {
    l->lora_b_ = l->params_->add(prefix(l) + ".lora_B.weight", {l->out_, config.r}, Role::trainable,
                                 Decay::yes);
  }
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
  TUNE_CHECK(out == x.dtype() || bias_ < 0, module_, ": a ", dtype_name(out), " result of ",
             dtype_name(x.dtype()), " inputs cannot take the bias");
  return run_forward(ctx, x, out, Tensor());
}

Tensor Linear::forward_add(Context& ctx, const Tensor& x, const Tensor& residual) {
  return run_forward(ctx, x, x.dtype(), residual);
}

Tensor Linear::run_forward(Context& ctx, const Tensor& x, DType out, const Tensor& residual) {
  Tensor y = ctx.arena.alloc({x.size(0), out_}, out);
  x_ = x;
  a_stack_ = Tensor();
  lora_forward(ctx, x, y, residual);
  base_forward(y, x, residual);
  return y;
}

// The adapter's product is written first and the base product adds to it: the base GEMM reads y
// in its epilogue, hidden under its arithmetic, where adding the skinny adapter product second
// would read and write all of y once more (on an H100 ~3 ms of an 8B LoRA step, forward and
// backward). A residual goes into the first product the same way.
void Linear::base_forward(Tensor& y, const Tensor& x, const Tensor& residual) const {
  const Tensor w = params_->param(weight_), bias = bias_ >= 0 ? params_->param(bias_) : Tensor();
  const Transpose tw = layout_ == Layout::out_in ? Transpose::yes : Transpose::no;
  if (lora_a_ < 0 && residual.defined())
    ops::matmul_add(y, x, Transpose::no, w, tw, residual, 1.0, bias);
  else
    ops::matmul(y, x, Transpose::no, w, tw, 1.0, lora_a_ >= 0 ? 1.0 : 0.0, bias);
}

Tensor Linear::forward_gelu(Context& ctx, const Tensor& x, Tensor& pre) {
  TUNE_ASSERT(lora_a_ < 0, module_, ": forward_gelu takes a Linear without an adapter");
  pre = ctx.arena.alloc({x.size(0), out_}, x.dtype());
  Tensor h = ctx.arena.alloc({x.size(0), out_}, x.dtype());
  x_ = x;
  a_stack_ = Tensor();
  ops::matmul_gelu(h, pre, x, Transpose::no, params_->param(weight_),
                   layout_ == Layout::out_in ? Transpose::yes : Transpose::no,
                   bias_ >= 0 ? params_->param(bias_) : Tensor());
  return h;
}

void Linear::backward_gelu(Context&, const Tensor& dy, Tensor& dx, const Tensor& pre) {
  TUNE_ASSERT(lora_a_ < 0, module_, ": backward_gelu takes a Linear without an adapter");
  weight_backward(dy);
  ops::matmul_gelu_backward(dx, dy, Transpose::no, params_->param(weight_),
                            layout_ == Layout::out_in ? Transpose::no : Transpose::yes, pre);
}

void Linear::lora_forward(Context& ctx, const Tensor& x, Tensor& y, const Tensor& residual) {
  if (lora_a_ < 0) return;
  lora_input(ctx, x);
  const Tensor b = params_->param(lora_b_);
  if (residual.defined())
    ops::matmul_add(y, xa_, Transpose::no, b, Transpose::yes, residual, lora_scale_);
  else
    ops::matmul(y, xa_, Transpose::no, b, Transpose::yes, lora_scale_, 0.0);
}

void Linear::lora_input(Context& ctx, const Tensor& x) {
  Tensor xd = x;
  if (lora_dropout_ > 0 && ctx.mode == Mode::train) {
    xd = ctx.arena.alloc(x.shape(), x.dtype());
    ops::dropout(xd, x, lora_dropout_, lora_seed_, stream_of(ctx, dropout_stream_));
  }
  x_dropped_ = xd;
  Tensor a = params_->param(lora_a_);  // (r, in)
  xa_ = ctx.arena.alloc({x.size(0), a.size(0)}, x.dtype());
  ops::matmul(xa_, xd, Transpose::no, a, Transpose::yes);
}

void Linear::save_input(Context& ctx, const Tensor& x) {
  x_ = x;
  a_stack_ = Tensor();
  if (lora_a_ >= 0) lora_input(ctx, x);
}

void Linear::backward(Context& ctx, const Tensor& dy, Tensor& dx, Accumulate accumulate) {
  TUNE_ASSERT(!a_stack_.defined(), module_, ": forward_group's results go back by backward_group");
  const double beta = accumulate == Accumulate::yes ? 1.0 : 0.0;
  lora_backward(ctx, dy, dx, beta);  // first, for the reason base_forward gives
  base_backward(dy, dx, lora_a_ >= 0 ? 1.0 : beta);
}

void Linear::base_backward(const Tensor& dy, Tensor& dx, double beta) const {
  weight_backward(dy);
  ops::matmul(dx, dy, Transpose::no, params_->param(weight_),
              layout_ == Layout::out_in ? Transpose::no : Transpose::yes, 1.0, beta);
}

void Linear::weight_backward(const Tensor& dy) const {
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
}

void Linear::lora_backward(Context& ctx, const Tensor& dy, Tensor& dx, double beta) {
  if (lora_a_ < 0) return;
  Tensor a = params_->param(lora_a_), b = params_->param(lora_b_);
  Tensor da = params_->grad(lora_a_), db = params_->grad(lora_b_);
  // dB += scale dy^T (x A^T);  d(xA^T) = scale dy B;  dA += d(xA^T)^T x_dropped
  ops::matmul(db, dy, Transpose::yes, xa_, Transpose::no, lora_scale_, 1.0);
  Tensor dxa = ctx.arena.alloc(xa_.shape(), dy.dtype());
  ops::matmul(dxa, dy, Transpose::no, b, Transpose::no, lora_scale_, 0.0);
  ops::matmul(da, dxa, Transpose::yes, x_dropped_, Transpose::no, 1.0, 1.0);
  if (x_dropped_.raw() == x_.raw()) {  // no dropout: x_dropped_ is x_
    ops::matmul(dx, dxa, Transpose::no, a, Transpose::no, 1.0, beta);
  } else if (beta == 0.0) {
    ops::matmul(dx, dxa, Transpose::no, a, Transpose::no);
    ops::dropout(dx, dx, lora_dropout_, lora_seed_, stream_of(ctx, dropout_stream_));
  } else {
    Tensor dxd = ctx.arena.alloc(dx.shape(), dy.dtype());
    ops::matmul(dxd, dxa, Transpose::no, a, Transpose::no);
    ops::dropout(dxd, dxd, lora_dropout_, lora_seed_, stream_of(ctx, dropout_stream_));
    ops::add_inplace(dx, dxd);
  }
}

// ---- Groups ----
//
// Each member's base product runs on its own (see shares_adapters in linear.h for why).
//
// The adapters: their A's are parameters of their own, [r, in] each, declared one after another
// (add_lora_group), so that they lie stacked in the trainable buffer, and their gradients in the
// gradient buffer: A_stack [sum r, in] and dA_stack are views, read and accumulated in place.
// x A_stack^T is taken transposed, xa^T [sum r, N], so that each adapter's share is a block of
// rows, [r, N], a tensor of its own for its B products (a column block of [N, sum r] would need
// a row stride the ops do not take); the same for d(xa)^T.
//
//   xa^T    [R, N]  = A_stack x^T                    y_p     = scale_p (xa_p^T)^T B_p^T
//   dB_p            += scale_p dy_p^T (xa_p^T)^T     dxa_p^T = scale_p B_p^T dy_p^T
//   dA_stack [R, in] += dxa^T x                      dx  (+)= (dxa^T)^T A_stack
// (y_p and dx are written first; the base products then add to them, see base_forward.)
// Neighbours with adapters of one shape (k|v, gate|up) run their y_p, dB_p and dxa_p products in
// pairs (adapters_pair).

bool Linear::shares_adapters(std::initializer_list<Linear*> group) {
  return stacked_adapter_rows(group, nullptr) > 0;
}

Tensor Linear::adapter_stack(std::initializer_list<Linear*> group, bool grad) {
  int64_t begin = 0;
  const int64_t rows = stacked_adapter_rows(group, &begin);
  if (rows == 0) return Tensor();
  const Linear* first = *group.begin();
  const Tensor& buffer = grad ? first->params_->grads() : first->params_->trainable();
  return buffer.narrow(begin, rows * first->in_).view({rows, first->in_});
}

int64_t Linear::stacked_adapter_rows(std::initializer_list<Linear*> group, int64_t* begin) {
  const Linear* first = *group.begin();
  const ParamStore& params = *first->params_;
  int adapters = 0;
  int64_t start = -1, next = -1, rows = 0;
  bool stacked = true, dropout = false;
  for (const Linear* l : group) {
    TUNE_ASSERT(l->params_ == first->params_ && l->in_ == first->in_,
                "a group of Linears reads one input: ", l->module_, " does not fit");
    if (l->lora_a_ < 0) continue;
    ++adapters;
    dropout = dropout || l->lora_dropout_ > 0;
    const ParamInfo& a = params.info(l->lora_a_);
    if (start < 0) start = a.offset;
    stacked = stacked && (next < 0 || a.offset == next);
    next = a.offset + a.shape[0] * a.shape[1];
    rows += a.shape[0];
  }
  if (adapters < 2 || dropout || !stacked) return 0;
  if (begin) *begin = start;
  return rows;
}

std::vector<Tensor> Linear::forward_group(Context& ctx, const Tensor& x,
                                          std::initializer_list<Linear*> group) {
  const int64_t N = x.size(0);
  std::vector<Tensor> ys;
  for (Linear* l : group) {
    ys.push_back(ctx.arena.alloc({N, l->out_}, x.dtype()));
    l->x_ = x;
    l->a_stack_ = Tensor();
  }
  // Adapters first, then the base products add to them (see base_forward).
  if (shares_adapters(group)) {
    adapters_forward(ctx, x, group, ys);
  } else {
    size_t p = 0;
    for (Linear* l : group) l->lora_forward(ctx, x, ys[p++]);
  }
  size_t p = 0;
  for (Linear* l : group) l->base_forward(ys[p++], x);
  return ys;
}

void Linear::adapters_forward(Context& ctx, const Tensor& x, std::initializer_list<Linear*> group,
                              std::vector<Tensor>& ys) {
  const int64_t N = x.size(0);
  const Tensor a_stack = adapter_stack(group);                     // [R, in]
  Tensor xa_t = ctx.arena.alloc({a_stack.size(0), N}, x.dtype());  // [R, N]
  ops::matmul(xa_t, a_stack, Transpose::no, x, Transpose::yes);
  int64_t row = 0;
  for (Linear* l : group) {
    if (l->lora_a_ < 0) continue;
    const int64_t r = l->params_->info(l->lora_a_).shape[0];
    l->x_dropped_ = x;
    l->xa_ = xa_t.narrow(row, r);
    l->a_stack_ = a_stack;
    row += r;
  }
  const std::vector<Linear*> members(group);
  for (size_t p = 0; p < members.size(); ++p) {
    const Linear* l = members[p];
    if (l->lora_a_ < 0) continue;
    const Tensor b = l->params_->param(l->lora_b_);
    if (p + 1 < members.size() && adapters_pair(l, members[p + 1])) {
      const Linear* next = members[p + 1];
      ops::matmul_pair(ys[p], ys[p + 1], l->xa_, next->xa_, Transpose::yes, b,
                       next->params_->param(next->lora_b_), Transpose::yes, l->lora_scale_, 0.0);
      ++p;
      continue;
    }
    ops::matmul(ys[p], l->xa_, Transpose::yes, b, Transpose::yes, l->lora_scale_, 0.0);
  }
}

// Neighbours of a group whose adapters' products have one shape and scale (k|v, gate|up): their
// products go in pairs (ops::matmul_pair: one launch for two products too small to fill the GPU).
bool Linear::adapters_pair(const Linear* a, const Linear* b) {
  return a->lora_a_ >= 0 && b->lora_a_ >= 0 && a->out_ == b->out_ &&
         a->params_->info(a->lora_a_).shape == b->params_->info(b->lora_a_).shape &&
         a->lora_scale_ == b->lora_scale_;
}

void Linear::backward_group(Context& ctx, std::initializer_list<Linear*> group,
                            std::initializer_list<Tensor> dys, Tensor& dx, Accumulate accumulate) {
  TUNE_ASSERT(group.size() == dys.size(), "Linear::backward_group: ", group.size(), " Linears but ",
              dys.size(), " gradients");
  // The first product into dx takes the caller's beta, the others add; adapters first (see
  // base_forward).
  double beta = accumulate == Accumulate::yes ? 1.0 : 0.0;
  if (shares_adapters(group)) {
    adapters_backward(ctx, group, dys, dx, beta);
    beta = 1.0;
  } else {
    const Tensor* dy = dys.begin();
    for (Linear* l : group) {
      TUNE_ASSERT(!l->a_stack_.defined(), l->module_, ": forward_group ran it with other adapters");
      l->lora_backward(ctx, *dy++, dx, beta);
      if (l->lora_a_ >= 0) beta = 1.0;
    }
  }
  const Tensor* dy = dys.begin();
  for (const Linear* l : group) {
    l->base_backward(*dy++, dx, beta);
    beta = 1.0;
  }
}

void Linear::adapters_backward(Context& ctx, std::initializer_list<Linear*> group,
                               std::initializer_list<Tensor> dys, Tensor& dx, double beta) {
  const Tensor x = (*group.begin())->x_;
  const int64_t N = x.size(0);
  Tensor a_stack;  // [R, in], as forward_group stacked it
  for (const Linear* l : group)
    if (l->lora_a_ >= 0) a_stack = l->a_stack_;
  TUNE_ASSERT(a_stack.defined(), "Linear::backward_group: the group was not run by forward_group");
  const Arena::Mark mark = ctx.arena.mark();
  Tensor dxa_t = ctx.arena.alloc({a_stack.size(0), N}, dys.begin()[0].dtype());  // [R, N]
  const std::vector<Linear*> members(group);
  std::vector<Tensor> dxa(members.size());  // each adapted member's rows of dxa_t
  int64_t row = 0;
  for (size_t p = 0; p < members.size(); ++p) {
    if (members[p]->lora_a_ < 0) continue;
    dxa[p] = dxa_t.narrow(row, members[p]->xa_.size(0));
    row += dxa[p].size(0);
  }
  for (size_t p = 0; p < members.size(); ++p) {
    const Linear* l = members[p];
    if (l->lora_a_ < 0) continue;
    const Tensor& d = dys.begin()[p];
    Tensor db = l->params_->grad(l->lora_b_), b = l->params_->param(l->lora_b_);
    if (p + 1 < members.size() && adapters_pair(l, members[p + 1])) {
      const Linear* next = members[p + 1];
      const Tensor& d_next = dys.begin()[p + 1];
      Tensor db_next = next->params_->grad(next->lora_b_);
      ops::matmul_pair(db, db_next, d, d_next, Transpose::yes, l->xa_, next->xa_, Transpose::yes,
                       l->lora_scale_, 1.0);
      ops::matmul_pair(dxa[p], dxa[p + 1], b, next->params_->param(next->lora_b_), Transpose::yes,
                       d, d_next, Transpose::yes, l->lora_scale_, 0.0);
      ++p;
      continue;
    }
    ops::matmul(db, d, Transpose::yes, l->xa_, Transpose::yes, l->lora_scale_, 1.0);
    ops::matmul(dxa[p], b, Transpose::yes, d, Transpose::yes, l->lora_scale_, 0.0);
  }
  Tensor da_stack = adapter_stack(group, true);  // [R, in]
  ops::matmul(da_stack, dxa_t, Transpose::no, x, Transpose::no, 1.0, 1.0);
  ops::matmul(dx, dxa_t, Transpose::yes, a_stack, Transpose::no, 1.0, beta);
  ctx.arena.release(mark);
}

}  // namespace tune::nn
