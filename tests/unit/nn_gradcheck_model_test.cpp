// Finite-difference gradient checks in f64 for the composite nn layers (DESIGN.md decision 1):
// Attention (GQA, MQA, head_dim != hidden / heads, biases, qk-norm, sliding window), the SwiGLU
// MLP, the decoder block and the whole CausalLM through causal_lm_loss (tied and untied
// embeddings, LoRA with dropout); plus LoRA target matching and arena reuse across model steps.
// The harness is nn_gradcheck.h; the small layers are in nn_gradcheck_test.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "nn_gradcheck.h"
#include "test_util.h"
#include "tune/nn/loss.h"
#include "tune/nn/transformer.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using nn::BuildOptions;
using nn::Context;
using nn::LoraConfig;
using nn::ParamStore;
using nn::Role;
using nn::TensorNames;
using nn::TransformerConfig;
using test::dot;
using test::expect_gradient;
using test::expect_param_gradients;
using test::fill_params;
using test::grad_in;
using test::kFdAll;
using test::randn;
using test::rel_error;

constexpr DType f64 = DType::f64;
constexpr int64_t kB = 2, kT = 5;

// Hidden 16, 4 query heads of 4 over 2 kv heads (GQA), SwiGLU width 24, vocabulary 11.
TransformerConfig tiny_config() {
  TransformerConfig c;
  c.vocab_size = 11;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.max_positions = 16;
  c.rms_norm_eps = 1e-6;
  return c;
}

// The second row of the batch starts at position 6, as after a prefix or in a packed row.
Tensor offset_positions() {
  return Tensor::from_i64({kB, kT}, {0, 1, 2, 3, 4, 6, 7, 8, 9, 10});
}

Context f64_context() {
  Context ctx;
  ctx.dtype = f64;
  return ctx;
}

// ---- Attention ----

struct AttentionCase {
  const char* name;
  int64_t kv_heads, head_dim;
  bool bias, qk_norm;
  int64_t window;
};

TransformerConfig attention_config(const AttentionCase& a) {
  TransformerConfig c = tiny_config();
  c.num_layers = 1;
  c.num_kv_heads = a.kv_heads;
  c.head_dim = a.head_dim;
  c.qkv_bias = a.bias;
  c.o_bias = a.bias;
  c.qk_norm = a.qk_norm;
  if (a.window > 0) c.sliding_window = {a.window};
  return c;
}

TEST(NnGradAttention, InputAndParameterGradients) {
  const AttentionCase cases[] = {
      {"gqa", 2, 4, false, false, 0},
      {"mqa", 1, 4, false, false, 0},
      {"head_dim 8 (heads * head_dim != hidden)", 2, 8, false, false, 0},
      {"qkv and o bias", 2, 4, true, false, 0},
      {"qk_norm", 2, 4, false, true, 0},
      {"sliding window 3", 2, 4, false, false, 3},
      {"mqa, head_dim 8, bias, qk_norm, window 3", 1, 8, true, true, 3},
  };
  uint64_t seed = 1000;
  for (const AttentionCase& a : cases) {
    SCOPED_TRACE(a.name);
    const TransformerConfig c = attention_config(a);
    ParamStore params;
    nn::Attention attn(params, c, TensorNames{}, 0, BuildOptions{});
    params.allocate(f64);
    fill_params(params, seed++);
    const nn::RotaryEmbedding rope(c.rope, c.head_dim, c.max_positions, f64);
    const Tensor positions = offset_positions();
    Tensor x = randn({kB * kT, c.hidden_size}, f64, seed++);
    const Tensor dy = randn({kB * kT, c.hidden_size}, f64, seed++);
    Context ctx = f64_context();
    auto loss = [&] {
      ctx.arena.reset();
      return dot(dy, attn.forward(ctx, x, positions, Tensor(), rope));
    };
    loss();
    params.zero_grads();
    Tensor dx = test::full(x.shape(), f64, NAN);
    attn.backward(ctx, dy, dx, rope);
    const Tensor g = params.grads().clone();
    expect_gradient(std::string("attention x, ") + a.name, x, dx, loss, kFdAll);
    const int expected = 4 + (a.bias ? 4 : 0) + (a.qk_norm ? 2 : 0);
    EXPECT_EQ(expect_param_gradients(params, g, loss, kFdAll), expected);
  }
}

// The gradient checks would pass if the window were ignored: rows before the window closes are
// unchanged by it, later rows change.
TEST(NnGradAttention, SlidingWindowChangesOnlyPositionsPastTheWindow) {
  auto output = [](int64_t window) {
    const TransformerConfig c = attention_config({"", 2, 4, false, false, window});
    ParamStore params;
    nn::Attention attn(params, c, TensorNames{}, 0, BuildOptions{});
    params.allocate(f64);
    fill_params(params, 1100);
    const nn::RotaryEmbedding rope(c.rope, c.head_dim, c.max_positions, f64);
    Context ctx = f64_context();
    return attn
        .forward(ctx, randn({kB * kT, c.hidden_size}, f64, 1101), offset_positions(), Tensor(),
                 rope)
        .clone();
  };
  const Tensor full = output(0), windowed = output(3);
  for (int64_t b = 0; b < kB; ++b) {
    for (int64_t t = 0; t < kT; ++t) {
      const Tensor a = full.narrow(b * kT + t, 1), w = windowed.narrow(b * kT + t, 1);
      if (t < 3) {
        EXPECT_EQ(test::max_abs_diff(a, w), 0.0) << b << "," << t;
      } else {
        EXPECT_GT(rel_error(w, a), 1e-3) << b << "," << t;
      }
    }
  }
}

// ---- MLP ----

TEST(NnGradMlp, InputAndParameterGradients) {
  for (bool bias : {false, true}) {
    SCOPED_TRACE(bias ? "mlp_bias" : "no bias");
    TransformerConfig c = tiny_config();
    c.mlp_bias = bias;
    ParamStore params;
    nn::Mlp mlp(params, c, TensorNames{}, 0, BuildOptions{});
    params.allocate(f64);
    fill_params(params, 1200);
    Tensor x = randn({kB * kT, c.hidden_size}, f64, 1201);
    const Tensor dy = randn({kB * kT, c.hidden_size}, f64, 1202);
    Context ctx = f64_context();
    auto loss = [&] {
      ctx.arena.reset();
      return dot(dy, mlp.forward(ctx, x));
    };
    loss();
    params.zero_grads();
    Tensor dx = test::full(x.shape(), f64, NAN);
    mlp.backward(ctx, dy, dx);
    const Tensor g = params.grads().clone();
    expect_gradient("mlp x", x, dx, loss, kFdAll);
    EXPECT_EQ(expect_param_gradients(params, g, loss, kFdAll), bias ? 6 : 3);
  }
}

// ---- Decoder block ----

TEST(NnGradBlock, InputAndParameterGradients) {
  for (bool qwen3_like : {false, true}) {
    SCOPED_TRACE(qwen3_like ? "qk_norm, qkv bias, window 3" : "llama");
    TransformerConfig c = tiny_config();
    c.num_layers = 1;
    if (qwen3_like) {
      c.qk_norm = true;
      c.qkv_bias = true;
      c.sliding_window = {3};
    }
    ParamStore params;
    nn::DecoderBlock block(params, c, TensorNames{}, 0, BuildOptions{});
    params.allocate(f64);
    fill_params(params, 1300);
    const nn::RotaryEmbedding rope(c.rope, c.head_dim, c.max_positions, f64);
    const Tensor positions = offset_positions();
    Tensor x = randn({kB * kT, c.hidden_size}, f64, 1301);
    const Tensor dy = randn({kB * kT, c.hidden_size}, f64, 1302);
    Context ctx = f64_context();
    auto loss = [&] {
      ctx.arena.reset();
      return dot(dy, block.forward(ctx, x, positions, Tensor(), rope));
    };
    loss();
    params.zero_grads();
    Tensor dx = Tensor::empty(x.shape(), f64);
    block.backward(ctx, dy, rope, dx);
    const Tensor g = params.grads().clone();
    expect_gradient("block x", x, dx, loss, kFdAll);
    // 2 norms, q k v o, gate up down (+ q, k, v biases and q, k norms)
    EXPECT_EQ(expect_param_gradients(params, g, loss), qwen3_like ? 14 : 9);
  }
}

// ---- CausalLM + causal_lm_loss ----

struct LmCase {
  const char* name;
  bool tied, qwen3_like, lora;
};

// The ids as labels, with the targets of rows 1, 5 and 7 ignored (labels are shifted by one).
Tensor lm_labels(const Tensor& ids) {
  Tensor labels = ids.clone();
  for (int64_t i : {2, 6, 8}) labels.data<int64_t>()[i] = -100;
  return labels;
}

TEST(NnGradCausalLM, EveryParameterGradientOfTheMeanLoss) {
  const LmCase cases[] = {
      {"untied llama", false, false, false},
      {"tied, qk_norm, qkv bias, windows {0, 3}, packed positions", true, true, false},
      {"LoRA on all-linear with dropout, frozen base", false, false, true},
  };
  uint64_t seed = 1400;
  for (const LmCase& lc : cases) {
    SCOPED_TRACE(lc.name);
    TransformerConfig c = tiny_config();
    c.tie_embeddings = lc.tied;
    if (lc.qwen3_like) {
      c.qk_norm = true;
      c.qkv_bias = true;
      c.sliding_window = {0, 3};
    }
    LoraConfig lora;
    lora.r = 3;
    lora.alpha = 6;
    lora.dropout = 0.3;
    lora.seed = 9;
    BuildOptions options;
    if (lc.lora) {
      options.base_role = Role::frozen;
      options.lora = &lora;
    }
    ParamStore params;
    nn::CausalLM lm(params, c, TensorNames{}, options);
    params.allocate(f64);
    fill_params(params, seed++);
    const Tensor ids = test::randint({kB, kT}, c.vocab_size, seed++);
    const Tensor labels = lm_labels(ids);
    const Tensor positions = lc.qwen3_like
                                 ? Tensor::from_i64({kB, kT}, {0, 1, 2, 0, 1, 3, 4, 5, 6, 7})
                                 : nn::default_positions(kB, kT);
    Context ctx;  // CausalLM::forward sets the activation dtype from the parameters
    ctx.step = 3;
    auto loss = [&] {
      ctx.arena.reset();
      Tensor none;
      return nn::causal_lm_loss(none, lm.forward(ctx, ids, positions), labels).mean();
    };
    ctx.arena.reset();
    const Tensor logits = lm.forward(ctx, ids, positions);
    EXPECT_EQ(ctx.dtype, f64);
    EXPECT_EQ(logits.shape(), (Shape{kB * kT, c.vocab_size}));
    EXPECT_EQ(lm.hidden_states().size(), 3u);
    Tensor dlogits = ctx.arena.alloc(logits.shape(), f64);
    const nn::LossResult r = nn::causal_lm_loss(dlogits, logits, labels);
    EXPECT_EQ(r.count, 5);  // 8 shifted targets, 3 of them -100
    params.zero_grads();
    lm.backward(ctx, dlogits);
    const Tensor g = params.grads().clone();

    int trainable = 0;
    for (const nn::ParamInfo& p : params.infos()) trainable += p.role == Role::trainable;
    EXPECT_EQ(params.index("lm_head.weight") >= 0, !lc.tied);
    // every Linear but lm_head carries A and B; the base is frozen
    if (lc.lora) EXPECT_EQ(trainable, 2 * 7 * 2);
    EXPECT_EQ(expect_param_gradients(params, g, loss), trainable);
  }
}

TEST(NnGradCausalLM, TwoBackwardPassesGiveTwiceTheGradient) {
  for (bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    TransformerConfig c = tiny_config();
    c.tie_embeddings = tied;
    c.qk_norm = true;
    c.qkv_bias = true;
    ParamStore params;
    nn::CausalLM lm(params, c, TensorNames{}, BuildOptions{});
    params.allocate(f64);
    fill_params(params, 1500);
    const Tensor ids = test::randint({kB, kT}, c.vocab_size, 1501);
    Context ctx;
    const Tensor logits = lm.forward(ctx, ids, nn::default_positions(kB, kT));
    Tensor dlogits = Tensor::empty(logits.shape(), f64);
    nn::causal_lm_loss(dlogits, logits, lm_labels(ids));
    params.zero_grads();
    lm.backward(ctx, dlogits);
    const Tensor once = params.grads().clone();
    lm.backward(ctx, dlogits);
    for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
      Tensor expected = grad_in(params, once, i).clone();
      ops::scale_inplace(expected, 2.0);
      EXPECT_GT(ops::sum_squares(expected), 0.0) << params.info(i).name;
      EXPECT_LT(rel_error(params.grad(i), expected), 1e-14) << params.info(i).name;
    }
  }
}

// ---- LoRA targets ----

TEST(LoraTargets, SuffixMatchesWholeNameComponentsOnly) {
  LoraConfig cfg;
  cfg.targets = {"q_proj", "mlp.down_proj"};
  EXPECT_TRUE(cfg.targets_module("model.layers.0.self_attn.q_proj"));
  EXPECT_TRUE(cfg.targets_module("q_proj"));
  EXPECT_FALSE(cfg.targets_module("model.layers.0.self_attn.xq_proj"));
  EXPECT_FALSE(cfg.targets_module("xq_proj"));
  EXPECT_FALSE(cfg.targets_module("model.layers.0.self_attn.k_proj"));
  EXPECT_FALSE(cfg.targets_module("model.layers.0.self_attn.q_proj.extra"));
  EXPECT_TRUE(cfg.targets_module("model.layers.3.mlp.down_proj"));
  EXPECT_FALSE(cfg.targets_module("model.layers.3.xmlp.down_proj"));
  EXPECT_FALSE(cfg.targets_module("model.layers.3.other.down_proj"));
}

TEST(LoraTargets, AllLinearExcludesTheOutputHead) {
  LoraConfig cfg;
  cfg.targets = {"all-linear"};
  EXPECT_TRUE(cfg.targets_module("model.layers.0.self_attn.q_proj"));
  EXPECT_TRUE(cfg.targets_module("model.layers.1.mlp.down_proj"));
  EXPECT_FALSE(cfg.targets_module("lm_head"));
  EXPECT_FALSE(cfg.targets_module("model.lm_head"));
}

TEST(LoraTargets, CausalLMAddsAdaptersToTargetedLinearsOnly) {
  LoraConfig cfg;
  cfg.targets = {"q_proj", "v_proj"};
  BuildOptions options;
  options.base_role = Role::frozen;
  options.lora = &cfg;
  ParamStore params;
  nn::CausalLM lm(params, tiny_config(), TensorNames{}, options);
  int adapted = 0;
  for (nn::Linear* l : lm.linears()) {
    const bool want = l->module().ends_with(".q_proj") || l->module().ends_with(".v_proj");
    EXPECT_EQ(l->has_lora(), want) << l->module();
    adapted += l->has_lora();
  }
  EXPECT_EQ(adapted, 4);
  EXPECT_GE(params.index("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"), 0);
  EXPECT_EQ(params.index("base_model.model.lm_head.lora_A.weight"), -1);
}

// PEFT puts an adapter on the output head only when it is named, tied or not.
TEST(LoraTargets, NamedLmHeadGetsAnAdapter) {
  for (bool tied : {false, true}) {
    LoraConfig cfg;
    cfg.targets = {"q_proj", "lm_head"};
    BuildOptions options;
    options.base_role = Role::frozen;
    options.lora = &cfg;
    TransformerConfig c = tiny_config();
    c.tie_embeddings = tied;
    ParamStore params;
    nn::CausalLM lm(params, c, TensorNames{}, options);
    EXPECT_TRUE(lm.linears().back()->has_lora()) << "tied " << tied;
    EXPECT_GE(params.index("base_model.model.lm_head.lora_B.weight"), 0);
  }
}

// ---- Arena across model steps ----

// A model step large enough to spill out of the arena's first block: after the first reset the
// arena holds one block, and a second step of the same shape allocates nothing new.
TEST(Arena, SecondModelStepOfTheSameShapeAllocatesNothing) {
  TransformerConfig c = tiny_config();
  c.vocab_size = 1000;  // logits and their gradient alone: 2 x 640 000 bytes
  c.max_positions = 64;
  ParamStore params;
  nn::CausalLM lm(params, c, TensorNames{}, BuildOptions{});
  params.allocate(f64);  // values do not matter here; zeros are fine
  const int64_t B = 2, T = 40;
  const Tensor ids = test::randint({B, T}, c.vocab_size, 1600);
  const Tensor positions = nn::default_positions(B, T);
  Context ctx;
  auto step = [&] {
    const Tensor logits = lm.forward(ctx, ids, positions);
    Tensor dlogits = ctx.arena.alloc(logits.shape(), logits.dtype());
    nn::causal_lm_loss(dlogits, logits, ids);
    lm.backward(ctx, dlogits);
  };
  step();
  const size_t peak = ctx.arena.peak_bytes();
  EXPECT_GT(peak, size_t{1} << 20);  // more than the first block
  ctx.arena.reset();
  const size_t capacity = ctx.arena.capacity_bytes();
  EXPECT_GE(capacity, peak);
  step();
  EXPECT_EQ(ctx.arena.capacity_bytes(), capacity);
  EXPECT_EQ(ctx.arena.peak_bytes(), peak);
  ctx.arena.reset();
  EXPECT_EQ(ctx.arena.capacity_bytes(), capacity);
}

}  // namespace
}  // namespace tune
