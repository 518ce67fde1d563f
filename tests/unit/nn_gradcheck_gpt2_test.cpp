// Finite-difference gradient checks in f64 for what GPT-2 adds to the transformer: LayerNorm,
// Conv1D-layout Linears ([in, out] weights), the fused q|k|v projection, the GELU (tanh) MLP,
// learned position embeddings, and a whole tiny GPT-2 CausalLM through causal_lm_loss.
// The harness is nn_gradcheck.h.
#include <gtest/gtest.h>

#include <string>

#include "nn_gradcheck.h"
#include "test_util.h"
#include "tune/nn/loss.h"
#include "tune/nn/transformer.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using nn::BuildOptions;
using nn::Context;
using nn::ParamStore;
using nn::Role;
using nn::TransformerConfig;
using test::dot;
using test::expect_gradient;
using test::expect_param_gradients;
using test::fill_params;
using test::kFdAll;
using test::randn;
using test::rel_error;

constexpr DType f64 = DType::f64;
constexpr int64_t kB = 2, kT = 5;

Context f64_context() {
  Context ctx;
  ctx.dtype = f64;
  return ctx;
}

// GPT-2's names, as src/models/gpt2.cpp sets them.
nn::TensorNames gpt2_names() {
  nn::TensorNames n;
  n.embed = "transformer.wte";
  n.pos_embed = "transformer.wpe";
  n.final_norm = "transformer.ln_f";
  n.attn_norm = "transformer.h.%d.ln_1";
  n.mlp_norm = "transformer.h.%d.ln_2";
  n.qkv = "transformer.h.%d.attn.c_attn";
  n.o = "transformer.h.%d.attn.c_proj";
  n.up = "transformer.h.%d.mlp.c_fc";
  n.down = "transformer.h.%d.mlp.c_proj";
  return n;
}

// Hidden 16, 4 heads of 4, MLP width 24, vocabulary 11, 12 positions, tied head.
TransformerConfig tiny_gpt2() {
  TransformerConfig c;
  c.vocab_size = 11;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 4;
  c.head_dim = 4;
  c.max_positions = 12;
  c.rms_norm_eps = 1e-5;
  c.norm = nn::NormKind::layer;
  c.mlp = nn::MlpKind::gelu_tanh;
  c.positions = nn::PositionKind::learned;
  c.fused_qkv = c.conv1d = true;
  c.qkv_bias = c.o_bias = c.mlp_bias = true;
  c.tie_embeddings = true;
  return c;
}

TEST(NnGradLayerNorm, InputWeightAndBiasGradients) {
  for (Role role : {Role::trainable, Role::frozen}) {
    SCOPED_TRACE(role == Role::trainable ? "trainable" : "frozen");
    ParamStore params;
    nn::LayerNorm norm(params, "transformer.ln_f", 6, 1e-5, role);
    params.allocate(f64);
    fill_params(params, 90, 1.0);
    Tensor x = randn({7, 6}, f64, 91, 2.0);
    const Tensor dy = randn({7, 6}, f64, 92);
    Context ctx = f64_context();
    auto loss = [&] {
      ctx.arena.reset();
      return dot(dy, norm.forward(ctx, x));
    };
    loss();
    params.zero_grads();
    const Tensor dx = norm.backward(ctx, dy).clone();
    const Tensor g = params.grads().clone();
    expect_gradient("layernorm x", x, dx, loss, kFdAll);
    EXPECT_EQ(expect_param_gradients(params, g, loss, kFdAll), role == Role::trainable ? 2 : 0);
  }
}

TEST(NnGradLinear, Conv1DLayoutIsXTimesWPlusB) {
  ParamStore params;
  nn::Linear lin(params, "c_fc", 5, 3, nn::Bias::yes, Role::trainable, nn::Decay::yes,
                 nn::Layout::in_out);
  params.allocate(f64);
  fill_params(params, 95, 1.0);
  EXPECT_EQ(params.info(params.index("c_fc.weight")).shape, (Shape{5, 3}));
  Tensor x = randn({4, 5}, f64, 96);
  const Tensor dy = randn({4, 3}, f64, 97);
  Context ctx = f64_context();
  // y = x W + b with W [in, out], checked against a loop.
  const Tensor w = params.param("c_fc.weight"), b = params.param("c_fc.bias");
  Tensor y = lin.forward(ctx, x).clone(), expected = Tensor::empty({4, 3}, f64);
  for (int64_t n = 0; n < 4; ++n)
    for (int64_t o = 0; o < 3; ++o) {
      double acc = b.item(o);
      for (int64_t i = 0; i < 5; ++i) acc += x.item(n * 5 + i) * w.item(i * 3 + o);
      expected.data<double>()[n * 3 + o] = acc;
    }
  EXPECT_LT(rel_error(y, expected), 1e-14);
  auto loss = [&] {
    ctx.arena.reset();
    return dot(dy, lin.forward(ctx, x));
  };
  loss();
  params.zero_grads();
  Tensor dx = Tensor::empty({4, 5}, f64);
  lin.backward(ctx, dy, dx, nn::Accumulate::no);
  const Tensor g = params.grads().clone();
  expect_gradient("conv1d x", x, dx, loss, kFdAll);
  EXPECT_EQ(expect_param_gradients(params, g, loss, kFdAll), 2);
}

TEST(NnGradLinear, Conv1DLayoutWithLora) {
  // PEFT's fan_in_fan_out: the base weight is [in, out], A [r, in] and B [out, r] as usual.
  ParamStore params;
  nn::LoraConfig lora;
  lora.r = 2;
  lora.alpha = 6;
  nn::Linear lin(params, "c_attn", 5, 6, nn::Bias::yes, Role::frozen, nn::Decay::yes,
                 nn::Layout::in_out);
  lin.add_lora(lora, 0);
  params.allocate(f64);
  fill_params(params, 98, 1.0);
  EXPECT_EQ(params.info(params.index("base_model.model.c_attn.lora_A.weight")).shape,
            (Shape{2, 5}));
  EXPECT_EQ(params.info(params.index("base_model.model.c_attn.lora_B.weight")).shape,
            (Shape{6, 2}));
  Tensor x = randn({4, 5}, f64, 99);
  const Tensor dy = randn({4, 6}, f64, 100);
  Context ctx = f64_context();
  auto loss = [&] {
    ctx.arena.reset();
    return dot(dy, lin.forward(ctx, x));
  };
  loss();
  params.zero_grads();
  Tensor dx = Tensor::empty({4, 5}, f64);
  lin.backward(ctx, dy, dx, nn::Accumulate::no);
  const Tensor g = params.grads().clone();
  expect_gradient("conv1d + lora x", x, dx, loss, kFdAll);
  EXPECT_EQ(expect_param_gradients(params, g, loss, kFdAll), 2);
}

TEST(NnGradGpt2, FusedAttentionGeluMlpAndBlock) {
  const TransformerConfig c = tiny_gpt2();
  const nn::TensorNames names = gpt2_names();
  const Tensor positions = Tensor::from_i64({kB, kT}, {0, 1, 2, 3, 4, 6, 7, 8, 9, 10});
  nn::RotaryEmbedding no_rope;  // learned positions: attention never touches it
  uint64_t seed = 2000;
  {
    SCOPED_TRACE("attention");
    ParamStore params;
    nn::Attention attn(params, c, names, 0, BuildOptions{});
    params.allocate(f64);
    EXPECT_EQ(params.info(params.index("transformer.h.0.attn.c_attn.weight")).shape,
              (Shape{16, 48}));
    EXPECT_EQ(params.infos().size(), 4u);  // c_attn and c_proj, weights and biases
    fill_params(params, seed++);
    Tensor x = randn({kB * kT, 16}, f64, seed++);
    const Tensor dy = randn({kB * kT, 16}, f64, seed++);
    Context ctx = f64_context();
    auto loss = [&] {
      ctx.arena.reset();
      return dot(dy, attn.forward(ctx, x, positions, Tensor(), no_rope));
    };
    loss();
    params.zero_grads();
    Tensor dx = Tensor::empty(x.shape(), f64);
    attn.backward(ctx, dy, dx, no_rope);
    const Tensor g = params.grads().clone();
    expect_gradient("attention x", x, dx, loss);
    EXPECT_EQ(expect_param_gradients(params, g, loss), 4);
  }
  {
    SCOPED_TRACE("mlp");
    ParamStore params;
    nn::Mlp mlp(params, c, names, 0, BuildOptions{});
    params.allocate(f64);
    EXPECT_EQ(params.info(params.index("transformer.h.0.mlp.c_fc.weight")).shape, (Shape{16, 24}));
    EXPECT_EQ(params.infos().size(), 4u);
    fill_params(params, seed++);
    Tensor x = randn({kB * kT, 16}, f64, seed++);
    const Tensor dy = randn({kB * kT, 16}, f64, seed++);
    Context ctx = f64_context();
    auto loss = [&] {
      ctx.arena.reset();
      return dot(dy, mlp.forward(ctx, x));
    };
    loss();
    params.zero_grads();
    Tensor dx = Tensor::empty(x.shape(), f64);
    mlp.backward(ctx, dy, dx);
    const Tensor g = params.grads().clone();
    expect_gradient("mlp x", x, dx, loss);
    EXPECT_EQ(expect_param_gradients(params, g, loss), 4);
  }
  {
    SCOPED_TRACE("block");
    ParamStore params;
    nn::DecoderBlock block(params, c, names, 0, BuildOptions{});
    params.allocate(f64);
    EXPECT_EQ(params.infos().size(), 12u);  // + ln_1, ln_2 weights and biases
    fill_params(params, seed++);
    Tensor x = randn({kB * kT, 16}, f64, seed++);
    const Tensor dy = randn({kB * kT, 16}, f64, seed++);
    Context ctx = f64_context();
    auto loss = [&] {
      ctx.arena.reset();
      return dot(dy, block.forward(ctx, x, positions, Tensor(), no_rope));
    };
    loss();
    params.zero_grads();
    Tensor dx = Tensor::empty(x.shape(), f64);
    block.backward(ctx, dy, no_rope, dx);
    const Tensor g = params.grads().clone();
    expect_gradient("block x", x, dx, loss);
    EXPECT_EQ(expect_param_gradients(params, g, loss), 12);
  }
}

TEST(NnGradGpt2, CausalLMEveryParameterGradient) {
  for (bool recompute : {false, true}) {
    SCOPED_TRACE(recompute ? "recomputed blocks" : "saved activations");
    const TransformerConfig c = tiny_gpt2();
    ParamStore params;
    nn::CausalLM lm(params, c, gpt2_names(), BuildOptions{});
    params.allocate(f64);
    // wte, wpe, ln_f (2), and 12 per block; the head is tied to wte.
    EXPECT_EQ(params.infos().size(), 2u + 2u + 2u * 12u);
    EXPECT_LT(params.index("lm_head.weight"), 0);
    EXPECT_EQ(params.info(params.index("transformer.wpe.weight")).shape, (Shape{12, 16}));
    fill_params(params, 2100);
    const Tensor ids = test::randint({kB, kT}, c.vocab_size, 2101);
    Tensor labels = ids.clone();
    for (int64_t i : {2, 6, 8}) labels.data<int64_t>()[i] = -100;
    // Packed second row: positions restart, and the learned table is read at those positions.
    const Tensor positions = Tensor::from_i64({kB, kT}, {0, 1, 2, 0, 1, 3, 4, 5, 6, 7});
    Context ctx;
    ctx.recompute_blocks = recompute;
    auto loss = [&] {
      ctx.arena.reset();
      Tensor none;
      return nn::causal_lm_loss(none, lm.forward(ctx, ids, positions), labels).mean();
    };
    ctx.arena.reset();
    const Tensor logits = lm.forward(ctx, ids, positions);
    EXPECT_EQ(lm.hidden_states().size(), 3u);
    Tensor dlogits = ctx.arena.alloc(logits.shape(), f64);
    nn::causal_lm_loss(dlogits, logits, labels);
    params.zero_grads();
    lm.backward(ctx, dlogits);
    const Tensor g = params.grads().clone();
    EXPECT_EQ(expect_param_gradients(params, g, loss), static_cast<int>(params.infos().size()));
  }
}

TEST(NnGpt2, CachedGenerationMatchesFullForward) {
  const TransformerConfig c = tiny_gpt2();
  ParamStore params;
  nn::CausalLM lm(params, c, gpt2_names(), BuildOptions{});
  params.allocate(f64);
  fill_params(params, 2200);
  const Tensor ids = test::randint({1, 7}, c.vocab_size, 2201);
  Context ctx;
  const Tensor full = lm.forward(ctx, ids, nn::default_positions(1, 7)).clone();
  nn::KvCache cache = lm.make_cache(12);
  Context gen;
  const Tensor first = lm.forward_cached(gen, ids.view({7}).narrow(0, 4), cache, nn::Logits::all);
  EXPECT_LT(rel_error(first, full.narrow(0, 4)), 1e-12);
  for (int64_t t = 4; t < 7; ++t) {
    gen.arena.reset();
    const Tensor step = lm.forward_cached(gen, ids.view({7}).narrow(t, 1), cache);
    EXPECT_LT(rel_error(step, full.narrow(t, 1)), 1e-12) << t;
  }
}

}  // namespace
}  // namespace tune
