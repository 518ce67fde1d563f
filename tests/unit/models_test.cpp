// Models: config.json parsing in both rope layouts, the family registry, loading weights (single
// file, sharded, bf16) and PEFT adapters, and the errors a user gets for bad model folders.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "tune/io/checkpoint.h"
#include "tune/io/files.h"
#include "tune/io/safetensors.h"
#include "tune/models/model.h"
#include "tune/models/peft.h"

namespace tune {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::contains;
using test::error_of;

const std::string kGolden = std::string(TUNE_TEST_DATA) + "/golden";

json base_config() {
  return json::parse(R"({
    "model_type": "llama", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 24,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0})");
}

// A scratch copy of a golden case, removed at the end of the test.
struct ScratchModel {
  std::string dir;
  explicit ScratchModel(const std::string& golden_case) {
    dir = ::testing::TempDir() + "tune_models_" +
          ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors"})
      fs::copy_file(kGolden + "/" + golden_case + "/" + f, dir + "/" + f);
    fs::permissions(dir + "/model.safetensors", fs::perms::owner_write, fs::perm_options::add);
  }
  ~ScratchModel() { fs::remove_all(dir); }
  // Rewrites model.safetensors through `edit` on its (name, tensor) list.
  template <typename F>
  void rewrite_weights(F&& edit) {
    auto file = io::SafetensorsFile::open(dir + "/model.safetensors");
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : file.names()) tensors.emplace_back(n, file.tensor(n).clone());
    edit(tensors);
    file = io::SafetensorsFile();
    fs::remove(dir + "/model.safetensors");
    io::write_safetensors(dir + "/model.safetensors", tensors);
  }
  void write_config(const json& j) { io::write_file_atomic(dir + "/config.json", j.dump()); }
};

Tensor logits_of(models::Model& m) {
  nn::Context ctx;
  Tensor ids = test::randint({2, 6}, m.config().arch.vocab_size, 7);
  return m.lm().forward(ctx, ids, nn::default_positions(2, 6)).clone();
}

TEST(ModelConfig, ReadsTheOlderRopeLayout) {
  json j = base_config();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  j["torch_dtype"] = "bfloat16";
  models::ModelConfig c = models::parse_model_config(j, "config.json");
  EXPECT_EQ(c.arch.rope.type, nn::RopeType::linear);
  EXPECT_EQ(c.arch.rope.factor, 2.0);
  EXPECT_EQ(c.arch.rope.theta, 10000.0);
  EXPECT_EQ(c.dtype, DType::bf16);
  EXPECT_EQ(c.arch.head_dim, 4);
  EXPECT_EQ(c.arch.num_kv_heads, 2);
}

TEST(ModelConfig, ReadsTransformers5RopeParameters) {
  json j = base_config();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},
                          {"factor", 8.0},           {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 32}};
  j["dtype"] = "float32";
  models::ModelConfig c = models::parse_model_config(j, "config.json");
  EXPECT_EQ(c.arch.rope.type, nn::RopeType::llama3);
  EXPECT_EQ(c.arch.rope.theta, 500000.0);
  EXPECT_EQ(c.arch.rope.original_max_positions, 32);
}

TEST(ModelConfig, FamiliesSetTheirFeatures) {
  json j = base_config();
  j["model_type"] = "qwen2";
  j["use_sliding_window"] = true;
  j["sliding_window"] = 8;
  j["layer_types"] = {"full_attention", "sliding_attention"};
  auto qwen2 = models::parse_model_config(j, "config.json");
  EXPECT_TRUE(qwen2.arch.qkv_bias);
  EXPECT_FALSE(qwen2.arch.o_bias);
  EXPECT_EQ(qwen2.arch.sliding_window, (std::vector<int64_t>{0, 8}));

  j = base_config();
  j["model_type"] = "qwen3";
  j["head_dim"] = 8;
  auto qwen3 = models::parse_model_config(j, "config.json");
  EXPECT_TRUE(qwen3.arch.qk_norm);
  EXPECT_EQ(qwen3.arch.head_dim, 8);

  j = base_config();
  j["model_type"] = "mistral";
  j["sliding_window"] = 6;
  EXPECT_EQ(models::parse_model_config(j, "c").arch.sliding_window, (std::vector<int64_t>{6, 6}));

  j = base_config();
  j["attention_bias"] = true;
  auto llama = models::parse_model_config(j, "c");
  EXPECT_TRUE(llama.arch.qkv_bias && llama.arch.o_bias);
}

TEST(ModelConfig, UnsupportedModelTypeListsTheSupportedOnes) {
  json j = base_config();
  j["model_type"] = "gpt_neox";
  std::string e = error_of([&] { models::parse_model_config(j, "/m/config.json"); });
  EXPECT_TRUE(contains(e, "/m/config.json"));
  EXPECT_TRUE(contains(e, "\"gpt_neox\""));
  EXPECT_TRUE(contains(e, "llama, mistral, qwen2, qwen3"));
}

TEST(ModelConfig, MissingRequiredKeyIsNamed) {
  json j = base_config();
  j.erase("hidden_size");
  std::string e = error_of([&] { models::parse_model_config(j, "/m/config.json"); });
  EXPECT_TRUE(contains(e, "/m/config.json"));
  EXPECT_TRUE(contains(e, "\"hidden_size\" is required but missing"));
}

TEST(ModelConfig, WrongTypesAndValuesAreNamed) {
  json j = base_config();
  j["num_hidden_layers"] = "two";
  EXPECT_TRUE(contains(error_of([&] { models::parse_model_config(j, "c"); }),
                       "\"num_hidden_layers\" must be an integer"));
  j = base_config();
  j["num_key_value_heads"] = 3;
  EXPECT_TRUE(contains(error_of([&] { models::parse_model_config(j, "c"); }),
                       "must divide num_attention_heads"));
  j = base_config();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_TRUE(contains(error_of([&] { models::parse_model_config(j, "c"); }), "\"yarn\""));
}

TEST(ModelLoad, MissingTensorIsNamed) {
  ScratchModel m("llama_gqa");
  m.rewrite_weights([](auto& ts) {
    std::erase_if(ts, [](auto& p) { return p.first == "model.layers.1.mlp.up_proj.weight"; });
  });
  std::string e = error_of([&] { models::load_model(m.dir, {}); });
  EXPECT_TRUE(contains(e, "\"model.layers.1.mlp.up_proj.weight\" is missing"));
  EXPECT_TRUE(contains(e, m.dir));
}

TEST(ModelLoad, WrongShapeIsNamed) {
  ScratchModel m("llama_gqa");
  m.rewrite_weights([](auto& ts) {
    for (auto& [name, t] : ts)
      if (name == "model.norm.weight") t = Tensor::zeros({63}, DType::f32);
  });
  std::string e = error_of([&] { models::load_model(m.dir, {}); });
  EXPECT_TRUE(contains(e, "\"model.norm.weight\""));
  EXPECT_TRUE(contains(e, "has shape (63)"));
  EXPECT_TRUE(contains(e, "implies (64)"));
}

TEST(ModelLoad, MissingConfigSaysWhatToDo) {
  std::string e = error_of([&] { models::load_model("/nonexistent/model", {}); });
  EXPECT_TRUE(contains(e, "no config.json in /nonexistent/model"));
}

TEST(ModelLoad, ShardedAndBf16CheckpointsLoad) {
  ScratchModel m("llama_gqa");
  auto reference = models::load_model(m.dir, {});
  Tensor expected = logits_of(*reference);

  // Sharded: several files and an index, as transformers writes for large models.
  auto file = io::SafetensorsFile::open(m.dir + "/model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& n : file.names()) tensors.emplace_back(n, file.tensor(n).clone());
  std::string sharded = m.dir + "/sharded";
  fs::create_directories(sharded);
  fs::copy_file(m.dir + "/config.json", sharded + "/config.json");
  io::write_checkpoint_dir(sharded, tensors, 100000);
  EXPECT_TRUE(fs::exists(sharded + "/model.safetensors.index.json"));
  EXPECT_EQ(test::rel_error(logits_of(*models::load_model(sharded, {})), expected), 0.0);

  // bf16 on disk: loaded values are the bf16-rounded weights.
  m.rewrite_weights([](auto& ts) {
    for (auto& [name, t] : ts) t = t.to(DType::bf16);
  });
  auto bf16 = models::load_model(m.dir, {});
  Tensor w = bf16->params().param("model.norm.weight");
  Tensor w_ref = reference->params().param("model.norm.weight");
  EXPECT_EQ(w.item(3),
            static_cast<double>(bf16_to_f32(f32_to_bf16(static_cast<float>(w_ref.item(3))))));
  EXPECT_LT(test::rel_error(logits_of(*bf16), expected), 1e-2);
}

TEST(Peft, AdapterRoundTripsThroughPeftLayout) {
  std::string golden = kGolden + "/llama_gqa";
  nn::LoraConfig lora = models::read_adapter_config(golden + "/adapter");
  EXPECT_EQ(lora.r, 4);
  EXPECT_EQ(lora.alpha, 8);
  EXPECT_EQ(lora.targets.size(), 7u);
  auto model = models::load_model(golden, {DType::f32, models::Training::lora, lora});
  models::load_adapter(*model, golden + "/adapter");
  Tensor before = logits_of(*model);

  std::string out = ::testing::TempDir() + "tune_peft_roundtrip";
  fs::remove_all(out);
  models::save_adapter(*model, out, "tests/golden/llama_gqa");
  json config = io::read_json_file(out + "/adapter_config.json");
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["r"], 4);
  EXPECT_EQ(config["lora_alpha"], 8.0);
  EXPECT_EQ(config["task_type"], "CAUSAL_LM");
  // The same tensor names PEFT writes.
  auto saved = io::SafetensorsFile::open(out + "/adapter_model.safetensors");
  auto original = io::SafetensorsFile::open(golden + "/adapter/adapter_model.safetensors");
  EXPECT_EQ(saved.names().size(), original.names().size());
  for (const auto& n : original.names()) {
    ASSERT_TRUE(saved.contains(n)) << n;
    EXPECT_EQ(test::rel_error(saved.tensor(n), original.tensor(n)), 0.0) << n;
  }
  auto reloaded = models::load_model(
      golden, {DType::f32, models::Training::lora, models::read_adapter_config(out)});
  models::load_adapter(*reloaded, out);
  EXPECT_EQ(test::rel_error(logits_of(*reloaded), before), 0.0);
  fs::remove_all(out);
}

TEST(Peft, AdapterWithUnsupportedFeaturesIsRejected) {
  std::string dir = ::testing::TempDir() + "tune_peft_dora";
  fs::create_directories(dir);
  io::write_file_atomic(dir + "/adapter_config.json",
                        R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "use_dora": true,
                            "target_modules": ["q_proj"]})");
  EXPECT_TRUE(contains(error_of([&] { models::read_adapter_config(dir); }), "DoRA"));
  io::write_file_atomic(dir + "/adapter_config.json",
                        R"({"peft_type": "LORA", "r": 8, "target_modules": ".*proj"})");
  EXPECT_TRUE(contains(error_of([&] { models::read_adapter_config(dir); }), "regular expression"));
  fs::remove_all(dir);
}

TEST(Peft, AdapterForAnotherModelIsRejected) {
  std::string golden = kGolden + "/llama_gqa";
  nn::LoraConfig lora = models::read_adapter_config(golden + "/adapter");
  lora.targets = {"q_proj"};  // the file has tensors for seven projections
  auto model = models::load_model(golden, {DType::f32, models::Training::lora, lora});
  std::string e = error_of([&] { models::load_adapter(*model, golden + "/adapter"); });
  EXPECT_TRUE(contains(e, "has no place in this model"));
}

}  // namespace
}  // namespace tune
