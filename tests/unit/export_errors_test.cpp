// Exports that must not happen, and what they say: each error names the file, tensor or key and
// what to do, and leaves no temporary folder and no damaged output behind.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tune/io/files.h"
#include "tune/io/safetensors.h"
#include "tune/models/merge.h"

namespace tune {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::contains;
using test::error_of;

const std::string kGolden = std::string(TUNE_TEST_DATA) + "/golden";

// A writable copy of a golden case's adapter, to be edited.
std::string copy_adapter(const test::TempDir& dir, const std::string& golden_case) {
  const std::string out = dir.file("adapter");
  fs::create_directories(out);
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"})
    fs::copy_file(kGolden + "/" + golden_case + "/adapter/" + f, out + "/" + f);
  return out;
}

void edit_config(const std::string& adapter, const std::function<void(json&)>& edit) {
  json c = io::read_json_file(adapter + "/adapter_config.json");
  edit(c);
  io::write_file_atomic(adapter + "/adapter_config.json", c.dump(2));
}

models::ExportOptions options(const std::string& golden_case, const std::string& adapter,
                              const std::string& out) {
  models::ExportOptions o;
  o.model_dir = kGolden + "/" + golden_case;
  o.adapter_dir = adapter;
  o.out = out;
  return o;
}

// Nothing but `expected` in the folder: no OUT.tmp.* left over.
void expect_listing(const test::TempDir& dir, const std::vector<std::string>& expected) {
  EXPECT_EQ(dir.listing(), expected);
}

TEST(ExportErrors, MissingModelFolder) {
  test::TempDir dir("export_missing");
  auto o = options("no_such_case", "", dir.file("out"));
  const std::string e = error_of([&] { models::export_hf(o); });
  EXPECT_TRUE(contains(e, "no_such_case: no such directory"));
  EXPECT_TRUE(contains(e, "config.json"));
  expect_listing(dir, {});
}

TEST(ExportErrors, AdapterTargetingAModuleTheModelLacks) {
  test::TempDir dir("export_target");
  const std::string adapter = copy_adapter(dir, "llama_gqa");
  edit_config(adapter, [](json& c) { c["target_modules"].push_back("c_attn"); });
  auto o = options("llama_gqa", adapter, dir.file("out"));
  const std::string e = error_of([&] { models::export_hf(o); });
  EXPECT_TRUE(contains(e, "adapter_config.json: target_modules lists \"c_attn\""));
  EXPECT_TRUE(contains(e, "matches no module of this model (llama"));
  EXPECT_TRUE(contains(e, "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"));
  // The same check guards the PEFT export.
  o.out = dir.file("peft");
  EXPECT_TRUE(contains(error_of([&] { models::export_peft(o); }), "target_modules lists"));
  expect_listing(dir, {"adapter"});
}

TEST(ExportErrors, AdapterTensorForAModuleNotListed) {
  test::TempDir dir("export_unlisted");
  const std::string adapter = copy_adapter(dir, "llama_gqa");
  edit_config(adapter, [](json& c) { c["target_modules"] = {"q_proj"}; });
  const std::string e =
      error_of([&] { models::export_hf(options("llama_gqa", adapter, dir.file("out"))); });
  EXPECT_TRUE(contains(e, "adapter_model.safetensors: tensor \"base_model.model.model.layers.0"));
  EXPECT_TRUE(contains(e, "which adapter_config.json's target_modules does not list"));
}

TEST(ExportErrors, AdapterOfAnotherBaseModel) {
  test::TempDir dir("export_shapes");
  // llama3_rope_tied has the same module names as llama_gqa, one key/value head instead of two.
  const std::string adapter = copy_adapter(dir, "llama3_rope_tied");
  const std::string e =
      error_of([&] { models::export_hf(options("llama_gqa", adapter, dir.file("out"))); });
  EXPECT_TRUE(contains(e, "adapter_model.safetensors: tensor \"base_model.model."));
  EXPECT_TRUE(contains(e, "the adapter was trained on a different base model"));
  expect_listing(dir, {"adapter"});

  // A wrong r in adapter_config.json reads the same way, with the r it assumed.
  const std::string own = dir.file("own");
  fs::create_directories(own);
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"})
    fs::copy_file(kGolden + "/llama_gqa/adapter/" + f, own + "/" + f);
  edit_config(own, [](json& c) { c["r"] = 8; });
  const std::string r = error_of([&] { models::export_hf(options("llama_gqa", own, "x")); });
  EXPECT_TRUE(contains(r, "with r = 8"));
  EXPECT_TRUE(contains(r, "has shape (4, "));
  EXPECT_TRUE(contains(r, "needs (8, "));
}

TEST(ExportErrors, MissingAdapterTensor) {
  test::TempDir dir("export_missing_tensor");
  const std::string adapter = copy_adapter(dir, "llama_gqa");
  auto file = io::SafetensorsFile::open(adapter + "/adapter_model.safetensors");
  std::vector<std::pair<std::string, Tensor>> kept;
  for (const std::string& n : file.names())
    if (n.find("layers.1.mlp.up_proj.lora_B") == std::string::npos)
      kept.emplace_back(n, file.tensor(n).clone());
  file = io::SafetensorsFile();
  io::write_safetensors(adapter + "/adapter_model.safetensors", kept);
  const std::string e =
      error_of([&] { models::export_hf(options("llama_gqa", adapter, dir.file("out"))); });
  EXPECT_TRUE(contains(e, "missing tensor \"base_model.model.model.layers.1.mlp.up_proj.lora_B"));
}

TEST(ExportErrors, AdapterOnATiedHeadCannotBeMerged) {
  test::TempDir dir("export_tied");
  const std::string adapter = copy_adapter(dir, "llama3_rope_tied");
  edit_config(adapter, [](json& c) { c["target_modules"] = {"q_proj", "lm_head"}; });
  // Tensors for q_proj and the head, shapes as the model needs them (r = 4).
  auto file = io::SafetensorsFile::open(adapter + "/adapter_model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& n : file.names())
    if (n.find("q_proj") != std::string::npos) tensors.emplace_back(n, file.tensor(n).clone());
  const int64_t r = file.info(tensors[0].first).shape[0];
  tensors.emplace_back("base_model.model.lm_head.lora_A.weight",
                       test::randn({r, 64}, DType::f32, 1));
  tensors.emplace_back("base_model.model.lm_head.lora_B.weight",
                       test::randn({512, r}, DType::f32, 2));
  file = io::SafetensorsFile();
  io::write_safetensors(adapter + "/adapter_model.safetensors", tensors);
  const std::string e =
      error_of([&] { models::export_hf(options("llama3_rope_tied", adapter, dir.file("out"))); });
  EXPECT_TRUE(contains(e, "adapts \"lm_head\", whose weight is tied to the token embeddings"));
  EXPECT_TRUE(contains(e, "--format peft"));
  // The adapter alone is fine.
  models::export_peft(options("llama3_rope_tied", adapter, dir.file("peft")));
  EXPECT_TRUE(fs::exists(dir.file("peft/adapter_model.safetensors")));
}

TEST(ExportErrors, BadDtypeAndGgufOptions) {
  test::TempDir dir("export_options");
  auto o = options("llama_gqa", "", dir.file("out"));
  o.dtype = "fp8";
  const std::string e = error_of([&] { models::export_hf(o); });
  EXPECT_TRUE(contains(e, "--dtype \"fp8\" is not an export dtype; use bf16, f16 or f32"));
  o.dtype = "";
  o.quant = "q4_k_m";
  EXPECT_TRUE(contains(error_of([&] { models::export_hf(o); }), "--quant q4_k_m is a GGUF option"));
  o.adapter_dir = kGolden + "/llama_gqa/adapter";
  EXPECT_TRUE(contains(error_of([&] { models::export_peft(o); }), "is a GGUF option"));
  o.quant = "";
  o.adapter_dir = "";
  EXPECT_TRUE(contains(error_of([&] { models::export_peft(o); }), "pass --adapter DIR"));
  expect_listing(dir, {});
}

// An existing output is replaced only when it looks like an export, never when it is (or holds)
// an input, and a failed export leaves it as it was.
TEST(ExportErrors, ExistingOutputIsReplacedSafely) {
  test::TempDir dir("export_replace");
  const std::string out = dir.file("out");
  auto o = options("llama_gqa", "", out);
  models::export_hf(o);
  o.dtype = "bf16";
  models::export_hf(o);  // an earlier export: replaced
  EXPECT_EQ(io::read_json_file(out + "/config.json")["dtype"], "bfloat16");
  expect_listing(dir, {"out"});

  // A failing export (an adapter for another model) leaves the old one whole.
  const std::string adapter = copy_adapter(dir, "llama3_rope_tied");
  o.adapter_dir = adapter;
  o.dtype = "f32";
  EXPECT_FALSE(error_of([&] { models::export_hf(o); }).empty());
  EXPECT_EQ(io::read_json_file(out + "/config.json")["dtype"], "bfloat16");
  expect_listing(dir, {"adapter", "out"});

  const std::string notes = dir.file("notes");
  fs::create_directories(notes);
  io::write_file_atomic(notes + "/todo.txt", "keep me");
  o = options("llama_gqa", "", notes);
  EXPECT_TRUE(contains(error_of([&] { models::export_hf(o); }),
                       "does not look like an earlier export; not replacing it"));
  EXPECT_TRUE(fs::exists(notes + "/todo.txt"));

  o = options("llama_gqa", "", kGolden);
  EXPECT_TRUE(contains(error_of([&] { models::export_hf(o); }), "is or contains the input folder"));
  o.out = kGolden + "/llama_gqa/";
  EXPECT_TRUE(contains(error_of([&] { models::export_hf(o); }), "is or contains the input folder"));
  EXPECT_TRUE(fs::exists(kGolden + "/llama_gqa/model.safetensors"));
}

}  // namespace
}  // namespace tune
