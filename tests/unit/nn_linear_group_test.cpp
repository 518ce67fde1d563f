// Grouped projections (Linear::forward_group / backward_group): attention's q|k|v and the MLP's
// gate|up as one stacked base product and one x·A^T over the adapters give what the Linears run
// one by one give. Each case trains one step of a small Llama-shaped model two ways with the same
// values: the model under test groups; the reference is built so that nothing can group (base
// weights apart in the buffer, adapters with dropout run in eval mode, which skips it) while
// computing the same function. Logits, loss and every gradient must agree to f64 rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "nn_gradcheck.h"
#include "test_util.h"
#include "tune/nn/loss.h"
#include "tune/nn/transformer.h"

namespace tune {
namespace {

using nn::BuildOptions;
using nn::Context;
using nn::Linear;
using nn::LoraConfig;
using nn::ParamStore;
using nn::Role;
using nn::TensorNames;
using nn::TransformerConfig;

constexpr DType f64 = DType::f64;
constexpr int64_t kB = 2, kT = 5;

// Hidden 16, 4 query heads of 4 over 2 kv heads (q and k, v differ in width, so a wrong column
// offset reads the wrong projection), SwiGLU width 24, vocabulary 11, two layers.
TransformerConfig tiny_config(bool qk_norm) {
  TransformerConfig c;
  c.vocab_size = 11;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.max_positions = 16;
  c.qk_norm = qk_norm;  // Qwen3: per-head norms between the projections and RoPE
  return c;
}

struct Step {
  Tensor logits, grads;
  double loss = 0;
};

Step train_step(nn::CausalLM& lm, ParamStore& params, nn::Mode mode) {
  const Tensor ids = test::randint({kB, kT}, 11, 77);
  const Tensor labels = ids.clone();
  Context ctx;
  ctx.mode = mode;
  Step s;
  s.logits = lm.forward(ctx, ids, nn::default_positions(kB, kT)).clone();
  Tensor dlogits = Tensor::zeros(s.logits.shape(), f64);
  s.loss = nn::causal_lm_loss(dlogits, s.logits, labels).mean();
  params.zero_grads();
  lm.backward(ctx, dlogits);
  s.grads = params.grads().clone();
  return s;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(t.data<double>()[i]));
  return m;
}

// |a - b| <= 1e-12 * max|b| elementwise, with the name of the first that differs.
void expect_close(const std::string& what, const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  const double tol = 1e-12 * std::max(max_abs(b), 1e-300);
  for (int64_t i = 0; i < a.numel(); ++i) {
    ASSERT_NEAR(a.data<double>()[i], b.data<double>()[i], tol) << what << " [" << i << "]";
  }
}

// The per-layer Linears of CausalLM::linears(): q, k, v, o, gate, up, down, then the head.
void expect_grouping(nn::CausalLM& lm, bool qkv, bool gate_up) {
  const std::vector<Linear*> ls = lm.linears();
  for (size_t l = 0; l + 1 < ls.size(); l += 7) {
    EXPECT_EQ(Linear::shares_adapters({ls[l], ls[l + 1], ls[l + 2]}), qkv) << ls[l]->module();
    EXPECT_EQ(Linear::shares_adapters({ls[l + 4], ls[l + 5]}), gate_up) << ls[l + 4]->module();
  }
}

// Every parameter of `params` has the same name in `ref`: copy the values over.
void copy_values(const ParamStore& params, ParamStore& ref) {
  for (const nn::ParamInfo& p : params.infos()) {
    const int j = ref.index(p.name);
    ASSERT_GE(j, 0) << p.name;
    Tensor dst = ref.param(j);
    dst.copy_from(params.param(p.name));
  }
}

void expect_same_step(const ParamStore& params, const Step& got, const ParamStore& ref,
                      const Step& want) {
  expect_close("logits", got.logits, want.logits);
  EXPECT_NEAR(got.loss, want.loss, 1e-12 * std::abs(want.loss));
  int compared = 0;
  for (size_t i = 0; i < params.infos().size(); ++i) {
    const nn::ParamInfo& p = params.infos()[i];
    if (p.role != Role::trainable) continue;
    const int j = ref.index(p.name);
    const Tensor g = test::grad_in(params, got.grads, static_cast<int>(i));
    const Tensor w = test::grad_in(ref, want.grads, j);
    EXPECT_GT(max_abs(w), 0) << p.name << ": a zero gradient would test nothing";
    expect_close(p.name, g, w);
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

struct LoraCase {
  const char* name;
  std::vector<std::string> targets;
  bool qk_norm;
  bool qkv, gate_up;
};

TEST(LinearGroup, LoraStepMatchesTheLinearsOneByOne) {
  const LoraCase cases[] = {
      {"all-linear", {"all-linear"}, false, true, true},
      {"all-linear, qk_norm", {"all-linear"}, true, true, true},
      // k_proj without an adapter inside a grouped q|v; up_proj alone is not a group
      {"q, v, up", {"q_proj", "v_proj", "up_proj"}, false, true, false},
  };
  for (const LoraCase& lc : cases) {
    SCOPED_TRACE(lc.name);
    const TransformerConfig c = tiny_config(lc.qk_norm);
    LoraConfig lora;
    lora.r = 3;
    lora.alpha = 5;
    lora.targets = lc.targets;
    ParamStore params;
    nn::CausalLM lm(params, c, TensorNames{}, {Role::frozen, &lora});
    params.allocate(f64);
    test::fill_params(params, 31);  // B too: LoRA's zero B would leave dA zero
    expect_grouping(lm, lc.qkv, lc.gate_up);

    // The reference: dropout keeps the adapters apart (eval mode then skips it). Every
    // Linear but the head gets an adapter there: those the model under test lacks stay zero and
    // add nothing.
    LoraConfig lora_ref = lora;
    lora_ref.dropout = 0.25;
    lora_ref.targets = {"all-linear"};
    ParamStore ref;
    nn::CausalLM lm_ref(ref, c, TensorNames{}, {Role::trainable, &lora_ref});
    ref.allocate(f64);
    copy_values(params, ref);
    expect_grouping(lm_ref, false, false);

    const Step got = train_step(lm, params, nn::Mode::train);
    const Step want = train_step(lm_ref, ref, nn::Mode::eval);
    expect_same_step(params, got, ref, want);
  }
}

// A group's adapters run together only when their A's lie stacked in the trainable buffer:
// declared by add_lora_group with r * in a whole number of the buffer's 16-element alignment (the
// step then reads A_stack and accumulates dA_stack in place), not one by one with B's in between,
// nor with padding between them.
TEST(LinearGroup, AdaptersRunTogetherOnlyWhenTheirAsLieStacked) {
  LoraConfig lora;
  lora.r = 4;
  for (const auto& [in, together, share] :
       {std::tuple{8, true, true}, {8, false, false}, {7, true, false}}) {
    SCOPED_TRACE(str("in ", in, together ? ", add_lora_group" : ", add_lora one by one"));
    ParamStore params;
    Linear a(params, "a", in, 5, nn::Bias::no, Role::frozen);
    Linear b(params, "b", in, 6, nn::Bias::no, Role::frozen);
    if (together) {
      const std::pair<Linear*, uint64_t> members[] = {{&a, 0}, {&b, 1}};
      Linear::add_lora_group(lora, members);
    } else {
      a.add_lora(lora, 0);
      b.add_lora(lora, 1);
    }
    params.allocate(f64);
    EXPECT_EQ(Linear::shares_adapters({&a, &b}), share);
  }
}

// Decoding's stacked products still leave adapters out: stacked_weight refuses them.
TEST(LinearGroup, StackedWeightStillRefusesAdapters) {
  LoraConfig lora;
  lora.r = 2;
  ParamStore params;
  nn::CausalLM lm(params, tiny_config(false), TensorNames{}, {Role::frozen, &lora});
  params.allocate(f64);
  const std::vector<Linear*> ls = lm.linears();
  EXPECT_FALSE(Linear::stacked_weight({ls[0], ls[1], ls[2]}).defined());
}

}  // namespace
}  // namespace tune
