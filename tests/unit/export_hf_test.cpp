// The hf and peft exports on the golden cases (tiny random models with random, nonzero LoRA B,
// and one real adapter trained by tune and read back by PEFT): a merged export gives the logits
// of base + adapter (the Llama family, GPT-2's Conv1D, tied embeddings), single file and sharded;
// the PEFT export reloads to the same logits.
//
// With TUNE_EXPORT_DUMP=DIR the exports and tune's logits are kept in DIR/<case>/ for
// tests/reference/check_export_transformers.py, which loads them in transformers and PEFT.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "test_util.h"
#include "tune/io/checkpoint.h"
#include "tune/io/files.h"
#include "tune/io/safetensors.h"
#include "tune/models/merge.h"
#include "tune/models/peft.h"

namespace tune {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::contains;

const std::string kGolden = std::string(TUNE_TEST_DATA) + "/golden";

// The exports of one case: under TUNE_EXPORT_DUMP when set (kept), else a temporary folder.
struct Outputs {
  std::string dir;
  bool keep = false;
  explicit Outputs(const std::string& name) {
    const char* dump = std::getenv("TUNE_EXPORT_DUMP");
    keep = dump && *dump;
    dir = keep ? (fs::path(dump) / name).string()
               : str(::testing::TempDir(), "tune_export_", name, "_", ::getpid());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Outputs() {
    if (!keep) fs::remove_all(dir);
  }
  std::string path(const std::string& name) const { return (fs::path(dir) / name).string(); }
};

struct Logits {
  Tensor ids, values;
};

// Logits of the golden case's input_ids ([B, T] -> [B*T, V]) in f32.
Tensor logits_of(models::Model& m, const Tensor& ids) {
  nn::Context ctx;
  return m.lm().forward(ctx, ids, nn::default_positions(ids.size(0), ids.size(1))).clone();
}

Tensor golden_ids(const std::string& golden) {
  return io::SafetensorsFile::open(golden + "/golden.safetensors")
      .tensor("input_ids")
      .to(DType::i64);
}

Tensor base_plus_adapter(const std::string& golden, const Tensor& ids) {
  const std::string adapter = golden + "/adapter";
  auto model = models::load_model(
      golden, {DType::f32, models::Training::lora, models::read_adapter_config(adapter)});
  models::load_adapter(*model, adapter);
  return logits_of(*model, ids);
}

Tensor plain(const std::string& dir, const Tensor& ids) {
  auto model = models::load_model(dir, {DType::f32, models::Training::full, {}});
  return logits_of(*model, ids);
}

// max |a - b| / max |b|: every logit held to the tolerance, not only their norm.
double max_rel(const Tensor& a, const Tensor& b) {
  double ref = 0;
  for (int64_t i = 0; i < b.numel(); ++i) ref = std::max(ref, std::abs(b.item(i)));
  return test::max_abs_diff(a, b) / ref;
}

class ExportGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(ExportGolden, MergedHfGivesTheLogitsOfBasePlusAdapter) {
  const std::string name = GetParam();
  const std::string golden = kGolden + "/" + name;
  Outputs out(name);
  const Tensor ids = golden_ids(golden);
  const Tensor reference = base_plus_adapter(golden, ids);
  const Tensor base = plain(golden, ids);
  // The adapter matters: otherwise the comparison below could not fail.
  ASSERT_GT(test::rel_error(base, reference), 1e-3);

  models::ExportOptions o;
  o.model_dir = golden;
  o.adapter_dir = golden + "/adapter";
  o.dtype = "f32";
  o.out = out.path("merged");
  models::export_hf(o);
  const Tensor merged = plain(o.out, ids);
  EXPECT_LE(test::rel_error(merged, reference), 1e-5);
  EXPECT_LE(max_rel(merged, reference), 1e-5);
  std::printf("[ %s ] merged vs base+adapter in tune: rel %.3e, max %.3e\n", name.c_str(),
              test::rel_error(merged, reference), max_rel(merged, reference));
  // PEFT's own logits of base + adapter (golden.safetensors, made by PEFT), to check-golden's
  // LoRA tolerance.
  const auto ref = io::SafetensorsFile::open(golden + "/golden.safetensors");
  EXPECT_LE(test::rel_error(merged, ref.tensor("lora.logits")), 1e-4);

  // A merged folder is a plain model: no adapter files, config.json's keys as they were.
  EXPECT_FALSE(fs::exists(o.out + "/adapter_config.json"));
  EXPECT_FALSE(fs::exists(o.out + "/adapter"));
  json in = io::read_json_file(golden + "/config.json");
  json config = io::read_json_file(o.out + "/config.json");
  EXPECT_EQ(config.size(),
            in.size() + (in.contains("dtype") || in.contains("torch_dtype") ? 0 : 1));
  EXPECT_EQ(config["model_type"], in["model_type"]);
  if (fs::exists(golden + "/generation_config.json"))
    EXPECT_TRUE(fs::exists(o.out + "/generation_config.json"));
  // Tied embeddings stay tied: the head is not written as a tensor of its own.
  auto ckpt = io::CheckpointReader::open_dir(o.out);
  const auto names = ckpt.names();
  const bool tied = in.value("tie_word_embeddings", in["model_type"] == "gpt2");
  EXPECT_EQ(ckpt.contains("lm_head.weight"), !tied) << name;
  EXPECT_EQ(names.size(), io::CheckpointReader::open_dir(golden).names().size());

  // Sharded: the same tensors, split under a limit far below the model's size.
  o.out = out.path("merged_sharded");
  models::export_hf(o, 64'000);
  EXPECT_FALSE(fs::exists(o.out + "/model.safetensors"));
  json index = io::read_json_file(o.out + "/model.safetensors.index.json");
  uint64_t total = 0;
  std::set<std::string> shards;
  for (const auto& [tensor, file] : index["weight_map"].items()) shards.insert(file);
  ASSERT_GT(shards.size(), 2u);
  for (const std::string& file : shards) {
    auto shard = io::SafetensorsFile::open(o.out + "/" + file);
    total += shard.data_size();
    // Over the limit only when one tensor alone is.
    if (shard.data_size() > 64'000) EXPECT_EQ(shard.names().size(), 1u) << file;
    EXPECT_EQ(shard.metadata().at("format"), "pt");
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  EXPECT_EQ(index["weight_map"].size(), names.size());
  EXPECT_EQ(test::rel_error(plain(o.out, ids), merged), 0.0);

  // The PEFT export: the same adapter (names as PEFT writes them today), reloaded exactly.
  o.out = out.path("peft");
  o.dtype = "";
  models::export_peft(o);
  json adapter_config = io::read_json_file(o.out + "/adapter_config.json");
  EXPECT_EQ(adapter_config["fan_in_fan_out"].get<bool>(), in["model_type"] == "gpt2");
  EXPECT_EQ(adapter_config["inference_mode"], true);
  auto reloaded = models::load_model(
      golden, {DType::f32, models::Training::lora, models::read_adapter_config(o.out)});
  models::load_adapter(*reloaded, o.out);
  EXPECT_EQ(test::rel_error(logits_of(*reloaded, ids), reference), 0.0);

  if (out.keep) {
    io::write_safetensors(
        out.path("tune_logits.safetensors"),
        {{"input_ids", ids}, {"base_plus_adapter", reference}, {"merged", merged}, {"base", base}});
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, ExportGolden,
                         ::testing::Values("llama_gqa", "llama3_rope_tied", "mistral_swa",
                                           "qwen2_bias", "qwen3_qknorm", "gpt2_tiny",
                                           "tune_trained_peft"));

// A random adapter made here (rsLoRA scale alpha / sqrt(r), every linear layer) on a base stored
// in bf16: the merge reads bf16, computes in f32, and gives tune's unmerged logits.
TEST(ExportHf, RandomRsloraAdapterOnABf16Base) {
  Outputs out("rslora");
  models::ExportOptions o;
  o.model_dir = kGolden + "/qwen3_qknorm";
  o.dtype = "bf16";
  o.out = out.path("base_bf16");
  models::export_hf(o);

  nn::LoraConfig lora;
  lora.r = 6;
  lora.alpha = 10;
  lora.scaling = nn::LoraScaling::rslora;
  lora.targets = {"all-linear"};
  auto model = models::load_model(o.out, {DType::f32, models::Training::lora, lora});
  nn::ParamStore& params = model->params();
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    if (params.info(i).role != nn::Role::trainable) continue;
    Tensor p = params.param(i);
    p.copy_from(test::randn(p.shape(), DType::f32, 100 + i, 0.1));
  }
  models::save_adapter(*model, out.path("adapter"));
  const Tensor ids = test::randint({2, 9}, model->config().arch.vocab_size, 3);
  const Tensor reference = logits_of(*model, ids);

  o.model_dir = out.path("base_bf16");
  o.adapter_dir = out.path("adapter");
  o.dtype = "f32";
  o.out = out.path("merged");
  models::export_hf(o);
  const Tensor merged = plain(o.out, ids);
  ASSERT_GT(test::rel_error(plain(o.model_dir, ids), reference), 1e-3);
  EXPECT_LE(test::rel_error(merged, reference), 1e-5);
  EXPECT_LE(max_rel(merged, reference), 1e-5);
}

// Without an adapter: a dtype conversion. Floats are rounded to nearest even, config.json says
// the new dtype under the key it already used.
TEST(ExportHf, ReexportConvertsTheDtype) {
  const std::string golden = kGolden + "/tune_trained_peft";  // config.json has "torch_dtype"
  Outputs out("reexport");
  models::ExportOptions o;
  o.model_dir = golden;
  o.dtype = "bf16";
  o.out = out.path("bf16");
  models::export_hf(o);
  json config = io::read_json_file(o.out + "/config.json");
  EXPECT_EQ(config["torch_dtype"], "bfloat16");
  EXPECT_FALSE(config.contains("dtype"));
  auto in = io::SafetensorsFile::open(golden + "/model.safetensors");
  auto written = io::SafetensorsFile::open(o.out + "/model.safetensors");
  ASSERT_EQ(written.names().size(), in.names().size());
  for (const std::string& n : in.names()) {
    ASSERT_EQ(written.info(n).dtype, DType::bf16) << n;
    EXPECT_EQ(test::max_abs_diff(written.tensor(n), in.tensor(n).to(DType::bf16)), 0.0) << n;
  }
  // And back to f32 from the bf16 export: exact, with "dtype" unchanged in meaning.
  o.model_dir = o.out;
  o.dtype = "";
  o.out = out.path("same");
  models::export_hf(o);
  EXPECT_EQ(io::read_json_file(o.out + "/config.json")["torch_dtype"], "bfloat16");
  auto again = io::SafetensorsFile::open(o.out + "/model.safetensors");
  for (const std::string& n : in.names())
    EXPECT_EQ(test::max_abs_diff(again.tensor(n), written.tensor(n)), 0.0) << n;
}

// A model folder as users have them: tokenizer files, chat template and generation config come
// along; weights and adapter files of the input do not.
TEST(ExportHf, CopiesTokenizerAndGenerationFiles) {
  Outputs out("side_files");
  const std::string model = out.path("model");
  fs::create_directories(model);
  for (const char* f : {"config.json", "model.safetensors", "generation_config.json"})
    fs::copy_file(kGolden + "/llama_gqa/" + f, model + "/" + f);
  const std::vector<std::pair<std::string, std::string>> side = {
      {"tokenizer.json", R"({"model": {"type": "BPE"}})"},
      {"tokenizer_config.json", R"({"eos_token": "</s>"})"},
      {"special_tokens_map.json", "{}"},
      {"chat_template.jinja", "{{ messages }}"}};
  for (const auto& [f, text] : side) io::write_file_atomic(model + "/" + f, text);
  fs::copy(kGolden + "/llama_gqa/adapter", model + "/adapter");
  fs::copy_file(kGolden + "/llama_gqa/adapter/adapter_config.json", model + "/adapter_config.json");

  models::ExportOptions o;
  o.model_dir = model;
  o.out = out.path("out");
  models::export_hf(o);
  for (const auto& [f, text] : side) {
    std::ifstream in(o.out + "/" + f);
    std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(got, text) << f;
  }
  EXPECT_TRUE(fs::exists(o.out + "/generation_config.json"));
  EXPECT_FALSE(fs::exists(o.out + "/adapter_config.json"));
  EXPECT_FALSE(fs::exists(o.out + "/adapter"));
  EXPECT_EQ(io::read_json_file(o.out + "/config.json")["dtype"], "float32");
}

TEST(ExportHf, ShardSizesReadAsTransformersWritesThem) {
  EXPECT_EQ(models::parse_byte_size("5GB", "--max-shard-size"), 5'000'000'000ull);
  EXPECT_EQ(models::parse_byte_size("200MB", "--max-shard-size"), 200'000'000ull);
  EXPECT_EQ(models::parse_byte_size("1GiB", "--max-shard-size"), 1073741824ull);
  EXPECT_EQ(models::parse_byte_size("64kb", "--max-shard-size"), 64'000ull);
  EXPECT_EQ(models::parse_byte_size("4096", "--max-shard-size"), 4096ull);
  EXPECT_EQ(models::parse_byte_size("1.5MB", "--max-shard-size"), 1'500'000ull);
  for (const char* bad : {"", "GB", "five GB", "-1GB", "0", "5TB"})
    EXPECT_TRUE(contains(test::error_of([&] { models::parse_byte_size(bad, "--max-shard-size"); }),
                         "is not a size"))
        << bad;
}

}  // namespace
}  // namespace tune
