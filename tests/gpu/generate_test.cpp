// Generation on CUDA against the CPU, on every golden model (tests/golden/*: tiny random Hugging
// Face models of each supported architecture): the logits of a prefill and of the decode steps that
// follow (KV cache on the device) within 1e-4 relative in f32 and 2e-2 in bf16 of the CPU's f32
// logits, and greedy tokens equal to Hugging Face's where the case has a generate.json.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tune/infer/generator.h"
#include "tune/io/files.h"
#include "tune/models/model.h"
#include "tune/models/peft.h"

namespace tune {
namespace {

namespace fs = std::filesystem;

const std::string kGolden = std::string(TUNE_TEST_DATA) + "/golden";

std::vector<std::string> rope_cases() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(kGolden)) {
    if (!fs::exists(e.path() / "config.json")) continue;
    // GPT-2 (LayerNorm, GELU, learned positions) has no CUDA kernels yet.
    if (io::read_json_file((e.path() / "config.json").string()).value("model_type", "") == "gpt2")
      continue;
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::unique_ptr<models::Model> load(const std::string& name, Device device, DType dtype,
                                    bool adapter) {
  const std::string dir = kGolden + "/" + name;
  models::ModelOptions options;
  options.device = device;
  options.dtype = dtype;
  options.training = models::Training::none;
  if (adapter) {
    options.training = models::Training::lora;
    options.lora = models::read_adapter_config(dir + "/adapter");
  }
  auto model = models::load_model(dir, options);
  if (adapter) models::load_adapter(*model, dir + "/adapter");
  return model;
}

// Relative error of the whole tensor: max |a - b| / max |b|.
double relative_error(const Tensor& got, const Tensor& want) {
  const std::vector<float> a = got.to(Device::cpu).to_f32_vector();
  const std::vector<float> b = want.to(Device::cpu).to_f32_vector();
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return diff / std::max(scale, 1e-30);
}

// Prefill `prompt` (all logits), then feed `steps` more tokens one by one, on both models; every
// step's logits must agree within `tolerance`.
void expect_same_logits(models::Model& cpu, models::Model& gpu, double tolerance) {
  const int64_t vocab = cpu.config().arch.vocab_size;
  std::vector<int64_t> prompt;
  for (int64_t i = 0; i < 37; ++i) prompt.push_back((i * 37 + 11) % vocab);
  nn::Context cpu_ctx, gpu_ctx(Device::cuda);
  cpu_ctx.mode = gpu_ctx.mode = nn::Mode::eval;
  nn::KvCache cpu_cache = cpu.lm().make_cache(64), gpu_cache = gpu.lm().make_cache(64);
  const Tensor ids = Tensor::from_i64({static_cast<int64_t>(prompt.size())}, prompt);
  Tensor want = cpu.lm().forward_cached(cpu_ctx, ids, cpu_cache, nn::Logits::all);
  Tensor got = gpu.lm().forward_cached(gpu_ctx, ids, gpu_cache, nn::Logits::all);
  EXPECT_LE(relative_error(got, want), tolerance) << "prefill of " << prompt.size() << " tokens";
  for (int64_t s = 0; s < 9; ++s) {
    cpu_ctx.arena.reset();
    gpu_ctx.arena.reset();
    const Tensor next = Tensor::from_i64({1}, {(s * 53 + 7) % vocab});
    want = cpu.lm().forward_cached(cpu_ctx, next, cpu_cache);
    got = gpu.lm().forward_cached(gpu_ctx, next, gpu_cache);
    EXPECT_LE(relative_error(got, want), tolerance) << "decode step " << s;
  }
}

TEST(CudaGenerate, LogitsMatchTheCpuInF32AndBf16) {
  for (const std::string& name : rope_cases()) {
    SCOPED_TRACE(name);
    auto cpu = load(name, Device::cpu, DType::f32, false);
    auto gpu32 = load(name, Device::cuda, DType::f32, false);
    expect_same_logits(*cpu, *gpu32, 1e-4);
    auto gpu16 = load(name, Device::cuda, DType::bf16, false);
    expect_same_logits(*cpu, *gpu16, 2e-2);
  }
}

TEST(CudaGenerate, LogitsWithAnAdapterMatchTheCpu) {
  for (const std::string& name : rope_cases()) {
    if (!fs::exists(kGolden + "/" + name + "/adapter/adapter_config.json")) continue;
    SCOPED_TRACE(name);
    auto cpu = load(name, Device::cpu, DType::f32, true);
    auto gpu = load(name, Device::cuda, DType::f32, true);
    expect_same_logits(*cpu, *gpu, 1e-4);
  }
}

TEST(CudaGenerate, GreedyTokensEqualHuggingFaces) {
  int checked = 0;
  for (const std::string& name : rope_cases()) {
    const std::string ref = kGolden + "/" + name + "/generate.json";
    if (!fs::exists(ref)) continue;
    SCOPED_TRACE(name);
    const nlohmann::json j = io::read_json_file(ref);
    auto gpu = load(name, Device::cuda, DType::f32, false);
    infer::GenerateOptions options;
    options.max_new_tokens = j.at("max_new_tokens").get<int64_t>();
    options.min_new_tokens = j.at("min_new_tokens").get<int64_t>();
    options.eos_token_ids = j.at("eos_token_id").get<std::vector<int64_t>>();
    for (size_t p = 0; p < j.at("prompts").size(); ++p) {
      const auto prompt = j.at("prompts")[p].get<std::vector<int64_t>>();
      const auto want = j.at("outputs")[p].get<std::vector<int64_t>>();
      infer::Generator generator(gpu->lm(), nullptr);
      const infer::Generation g = generator.generate(prompt, options);
      EXPECT_EQ(g.tokens, want) << "prompt " << p;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace tune

namespace tune {
namespace {

// Plain greedy decoding takes its argmax on the device (ops::argmax_rows); the tokens must be
// the CPU Generator's.
TEST(CudaGenerate, DeviceGreedyEqualsCpuGreedy) {
  for (const std::string& name : rope_cases()) {
    SCOPED_TRACE(name);
    auto cpu = load(name, Device::cpu, DType::f32, false);
    auto gpu = load(name, Device::cuda, DType::f32, false);
    const int64_t vocab = cpu->config().arch.vocab_size;
    std::vector<int64_t> prompt;
    for (int64_t i = 0; i < 11; ++i) prompt.push_back((i * 29 + 5) % vocab);
    infer::GenerateOptions options;
    options.max_new_tokens = 24;
    infer::Generator on_cpu(cpu->lm(), nullptr), on_gpu(gpu->lm(), nullptr);
    EXPECT_EQ(on_gpu.generate(prompt, options).tokens, on_cpu.generate(prompt, options).tokens);
  }
}

}  // namespace
}  // namespace tune
