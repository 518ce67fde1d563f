// GPT-2: learned positions (wpe), LayerNorm with bias, a GELU (tanh) MLP, biases on every
// projection, a fused q|k|v projection (c_attn) and Conv1D weights stored [in, out], the head
// tied to wte. Its config.json has its own key names (n_embd, n_layer, ...), so the family
// reads every key itself. The parameters keep Hugging Face's names and layouts, so loading,
// gradients and written-back models need no conversion. LoRA adapts c_attn, c_proj and c_fc as
// PEFT does with fan_in_fan_out (the adapter matrices keep the usual [r, in] / [out, r]).
#include "models/family.h"

namespace tune::models {

namespace {

void configure(const ConfigReader& c, ModelConfig& out) {
  nn::TransformerConfig& a = out.arch;
  a.vocab_size = c.integer("vocab_size");
  a.hidden_size = c.integer("n_embd");
  a.num_layers = c.integer("n_layer");
  a.num_heads = c.integer("n_head");
  a.max_positions = c.integer("n_positions");
  for (auto [key, v] : {std::pair{"vocab_size", a.vocab_size},
                        {"n_embd", a.hidden_size},
                        {"n_layer", a.num_layers},
                        {"n_head", a.num_heads},
                        {"n_positions", a.max_positions}})
    if (v <= 0) c.fail(key, str("must be positive, got ", v));
  if (a.hidden_size % a.num_heads != 0)
    c.fail("n_head", str("(", a.num_heads, ") must divide n_embd (", a.hidden_size, ")"));
  a.intermediate_size = c.integer("n_inner", 4 * a.hidden_size);
  if (a.intermediate_size <= 0) c.fail("n_inner", "must be positive or null");
  a.num_kv_heads = a.num_heads;
  a.head_dim = a.hidden_size / a.num_heads;
  a.rms_norm_eps = c.number("layer_norm_epsilon", 1e-5);
  a.tie_embeddings = c.boolean("tie_word_embeddings", true);
  if (!a.tie_embeddings)
    c.fail("tie_word_embeddings", "is false; GPT-2 checkpoints have no separate lm_head");
  const std::string act = c.string("activation_function", "gelu_new");
  if (act != "gelu_new" && act != "gelu_pytorch_tanh")
    c.fail("activation_function", str("is \"", act,
                                      "\"; tune.cpp's GPT-2 supports the tanh approximation "
                                      "(gelu_new, gelu_pytorch_tanh) only"));
  if (!c.boolean("scale_attn_weights", true))
    c.fail("scale_attn_weights", "is false, which tune.cpp does not support");
  if (c.boolean("scale_attn_by_inverse_layer_idx", false))
    c.fail("scale_attn_by_inverse_layer_idx", "is set, which tune.cpp does not support");
  if (c.boolean("add_cross_attention", false))
    c.fail("add_cross_attention", "is set; tune.cpp supports decoder-only GPT-2");
  // resid_pdrop, embd_pdrop and attn_pdrop are not applied: tune.cpp trains without dropout.

  a.norm = nn::NormKind::layer;
  a.mlp = nn::MlpKind::gelu_tanh;
  a.positions = nn::PositionKind::learned;
  a.fused_qkv = a.conv1d = true;
  a.qkv_bias = a.o_bias = a.mlp_bias = true;

  nn::TensorNames& n = out.names;
  n.embed = "transformer.wte";
  n.pos_embed = "transformer.wpe";
  n.final_norm = "transformer.ln_f";
  n.lm_head = "lm_head";
  n.attn_norm = "transformer.h.%d.ln_1";
  n.mlp_norm = "transformer.h.%d.ln_2";
  n.qkv = "transformer.h.%d.attn.c_attn";
  n.o = "transformer.h.%d.attn.c_proj";
  n.up = "transformer.h.%d.mlp.c_fc";
  n.down = "transformer.h.%d.mlp.c_proj";
  n.q = n.k = n.v = n.gate = n.q_norm = n.k_norm = "";
}

}  // namespace

const Family& gpt2_family() {
  static const Family f{"gpt2", configure, Keys::own};
  return f;
}

}  // namespace tune::models
