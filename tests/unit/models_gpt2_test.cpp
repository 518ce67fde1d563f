// GPT-2 in the model registry: config.json keys (n_embd, n_layer, ...) and their errors, the
// parameters keeping Hugging Face's names and Conv1D layouts (so a written-back model is what
// save_pretrained writes), checkpoints without the "transformer." prefix, and LoRA targets.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "test_util.h"
#include "tune/io/files.h"
#include "tune/io/safetensors.h"
#include "tune/models/model.h"

namespace tune {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::contains;
using test::error_of;

const std::string kCase = std::string(TUNE_TEST_DATA) + "/golden/gpt2_tiny";

json gpt2_config() {
  return io::read_json_file(kCase + "/config.json");
}

TEST(Gpt2Config, ReadsGpt2KeysAndSetsTheFeatures) {
  const models::ModelConfig m = models::parse_model_config(gpt2_config(), "config.json");
  const nn::TransformerConfig& a = m.arch;
  EXPECT_EQ(a.hidden_size, 64);
  EXPECT_EQ(a.num_layers, 2);
  EXPECT_EQ(a.num_heads, 4);
  EXPECT_EQ(a.num_kv_heads, 4);
  EXPECT_EQ(a.head_dim, 16);
  EXPECT_EQ(a.intermediate_size, 256);  // n_inner null: 4 * n_embd
  EXPECT_EQ(a.max_positions, 64);
  EXPECT_EQ(a.vocab_size, 512);
  EXPECT_DOUBLE_EQ(a.rms_norm_eps, 1e-5);
  EXPECT_TRUE(a.tie_embeddings);
  EXPECT_EQ(a.norm, nn::NormKind::layer);
  EXPECT_EQ(a.mlp, nn::MlpKind::gelu_tanh);
  EXPECT_EQ(a.positions, nn::PositionKind::learned);
  EXPECT_TRUE(a.fused_qkv && a.conv1d && a.qkv_bias && a.o_bias && a.mlp_bias);
  const auto types = models::supported_model_types();
  EXPECT_NE(std::find(types.begin(), types.end(), "gpt2"), types.end());

  json j = gpt2_config();
  j["n_inner"] = 100;
  EXPECT_EQ(models::parse_model_config(j, "config.json").arch.intermediate_size, 100);
}

TEST(Gpt2Config, UnsupportedSettingsAreNamed) {
  const std::pair<const char*, json> cases[] = {
      {"activation_function", "gelu"},
      {"scale_attn_by_inverse_layer_idx", true},
      {"add_cross_attention", true},
      {"tie_word_embeddings", false},
      {"n_head", 5},
  };
  for (const auto& [key, value] : cases) {
    json j = gpt2_config();
    j[key] = value;
    const std::string e = error_of([&] { models::parse_model_config(j, "config.json"); });
    EXPECT_TRUE(contains(e, str("\"", key, "\""))) << key << ": " << e;
  }
  json j = gpt2_config();
  j.erase("n_embd");
  EXPECT_TRUE(contains(error_of([&] { models::parse_model_config(j, "config.json"); }), "n_embd"));
}

TEST(Gpt2Model, ParametersAreTheCheckpointsTensorsWithTheirShapes) {
  auto model = models::load_model(kCase, {});
  auto file = io::SafetensorsFile::open(kCase + "/model.safetensors");
  std::set<std::string> params, tensors;
  for (const nn::ParamInfo& p : model->params().infos()) {
    params.insert(p.name);
    ASSERT_TRUE(file.contains(p.name)) << p.name;
    EXPECT_EQ(file.tensor(p.name).shape(), p.shape) << p.name;
  }
  for (const std::string& n : file.names()) tensors.insert(n);
  EXPECT_EQ(params, tensors);
  EXPECT_EQ(model->params().info(model->params().index("transformer.h.0.attn.c_attn.weight")).shape,
            (Shape{64, 192}));
}

TEST(Gpt2Model, CheckpointWithoutTransformerPrefixLoads) {
  const std::string dir = ::testing::TempDir() + "tune_gpt2_unprefixed";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(kCase + "/config.json", dir + "/config.json");
  {
    auto file = io::SafetensorsFile::open(kCase + "/model.safetensors");
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : file.names()) tensors.emplace_back(n.substr(12), file.tensor(n).clone());
    io::write_safetensors(dir + "/model.safetensors", tensors);
  }
  auto ours = models::load_model(dir, {});
  auto ref = models::load_model(kCase, {});
  EXPECT_EQ(test::rel_error(ours->params().trainable(), ref->params().trainable()), 0.0);
  fs::remove_all(dir);
}

TEST(Gpt2Model, LoraTargetsTheConv1DLayers) {
  models::ModelOptions options;
  options.training = models::Training::lora;
  options.lora.r = 4;
  options.lora.targets = {"c_attn", "c_proj"};  // c_proj: attention's and the MLP's
  auto model = models::load_model(kCase, options);
  int adapters = 0;
  for (nn::Linear* l : model->lm().linears()) adapters += l->has_lora();
  EXPECT_EQ(adapters, 2 * 3);
  const auto& p = model->params();
  EXPECT_EQ(p.info(p.index("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight")).shape,
            (Shape{192, 4}));
  EXPECT_EQ(p.info(p.index("base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight")).shape,
            (Shape{4, 256}));
}

}  // namespace
}  // namespace tune
