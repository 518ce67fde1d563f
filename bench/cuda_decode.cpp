// cuda_decode: greedy generation speed on CUDA — prefill a random prompt, then decode one token
// per step — for the model an HF config.json describes (bench/shapes/*.json), with random weights
// in bf16. Its peer is bench/cuda_decode_hf.py (transformers `generate` on the same shape);
// bench/run_cuda_decode.sh runs both on the GPU machine and prints the ratio.
//
// Batch 1 goes through infer::Generator (what `tune generate --device cuda` runs: one KV cache,
// the decode step replayed from a CUDA graph, sampling on the host). Batch B > 1 is B requests
// decoding together as the serving engine runs them on CUDA: an infer::PagedDecoder with B slots,
// each prompt prefilled into its slot, then one graph-replayed decode step for all B per token,
// greedy tokens chosen on the device (ops::argmax_rows).
//
// Weights are drawn on the host (uniform with std 0.02; 1-D parameters = 1), chunk by chunk,
// and copied to the device. The run: W warm-up generations, then N timed ones; each reports
// prefill time, decode tokens/s (new tokens after the first, over the decode time) and
// tokens/s over the whole call. Prints one JSON line.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tune/core/device.h"
#include "tune/core/rng.h"
#include "tune/infer/generator.h"
#include "tune/infer/paged_decoder.h"
#include "tune/io/files.h"
#include "tune/models/model.h"
#include "tune/ops/ops.h"

namespace {

struct Options {
  std::string shape = "bench/shapes/llama3_8b.json";
  std::vector<int64_t> batches = {1};
  int64_t prompt = 128;
  int64_t new_tokens = 256;
  int runs = 3;
  int warmup = 1;
  std::string dtype = "bf16";
  uint64_t seed = 1234;
};

void usage() {
  std::printf(
      "usage: cuda_decode [--shape FILE] [--batch B[,B...]] [--prompt N] [--new-tokens N] [--runs "
      "N]\n"
      "                   [--warmup W] [--dtype bf16|f16|f32] [--seed S]\n\n"
      "Greedy generation on CUDA of the model the HF config.json FILE describes (default\n"
      "bench/shapes/llama3_8b.json) with random weights: a random prompt of N tokens (default\n"
      "128), then --new-tokens (default 256). Prints one JSON line with the median decode\n"
      "tokens/s, prefill time and the device memory in use, per batch size (default 1).\n");
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "cuda_decode: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage();
      std::exit(0);
    } else if (a == "--shape") {
      o.shape = value();
    } else if (a == "--batch") {
      o.batches.clear();
      std::string list = value();
      for (size_t start = 0; start <= list.size();) {
        size_t end = list.find(',', start);
        if (end == std::string::npos) end = list.size();
        o.batches.push_back(std::stoll(list.substr(start, end - start)));
        start = end + 1;
      }
    } else if (a == "--prompt") {
      o.prompt = std::stoll(value());
    } else if (a == "--new-tokens") {
      o.new_tokens = std::stoll(value());
    } else if (a == "--runs") {
      o.runs = std::stoi(value());
    } else if (a == "--warmup") {
      o.warmup = std::stoi(value());
    } else if (a == "--dtype") {
      o.dtype = value();
    } else if (a == "--seed") {
      o.seed = std::stoull(value());
    } else {
      std::fprintf(stderr, "cuda_decode: unknown option \"%s\"; see --help\n", a.c_str());
      std::exit(2);
    }
  }
  if (*std::min_element(o.batches.begin(), o.batches.end()) <= 0 || o.prompt <= 0 ||
      o.new_tokens <= 1 || o.runs <= 0 || o.warmup < 0) {
    std::fprintf(stderr, "cuda_decode: --prompt, --runs must be positive, --new-tokens > 1\n");
    std::exit(2);
  }
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Every parameter ~ uniform with std 0.02 (a normal's cost is not worth paying for 8B values),
// 1-D parameters (norm weights) = 1. Drawn on the host in chunks, copied to the device.
void init_weights(tune::nn::ParamStore& params, uint64_t seed) {
  const float amplitude = 0.02f * std::sqrt(3.0f);
  constexpr int64_t kChunk = int64_t{1} << 26;
  tune::Tensor host = tune::Tensor::empty({kChunk}, params.dtype());
  tune::Tensor host_f32 = tune::Tensor::empty({kChunk}, tune::DType::f32);
  for (tune::Tensor* buffer : {&params.frozen(), &params.trainable()}) {
    const int64_t n = buffer->numel();
    for (int64_t start = 0; start < n; start += kChunk) {
      const int64_t len = std::min(kChunk, n - start);
      float* p = host_f32.data<float>();
#pragma omp parallel for schedule(static)
      for (int64_t j = 0; j < len; ++j)
        p[j] =
            amplitude * (2.0f * tune::uniform01(seed, 0, static_cast<uint64_t>(start + j)) - 1.0f);
      tune::Tensor src = host_f32.narrow(0, len);
      tune::Tensor staged = host.narrow(0, len);
      staged.copy_from(src);
      tune::Tensor dst = buffer->narrow(start, len);
      dst.copy_from(staged);
    }
  }
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    tune::Tensor w = params.param(i);
    if (w.dim() == 1) tune::ops::fill(w, 1.0);
  }
}

struct Timing {
  double prefill_s = 0, decode_s = 0;
  int64_t new_tokens = 0;  // over all sequences
};

// B sequences through a PagedDecoder: prefill each prompt, then decode together, greedy.
Timing run_batch(tune::nn::CausalLM& lm, const std::vector<std::vector<int64_t>>& prompts,
                 int64_t new_tokens) {
  using Clock = std::chrono::steady_clock;
  const auto batch = static_cast<int64_t>(prompts.size());
  const int64_t capacity = static_cast<int64_t>(prompts[0].size()) + new_tokens;
  tune::infer::PagedDecoder decoder(lm, batch, capacity);
  std::vector<int64_t> slots, tokens(static_cast<size_t>(batch));
  tune::Tensor chosen = tune::Tensor::empty({batch}, tune::DType::i64, tune::Device::cuda);
  Timing t;
  const auto t0 = Clock::now();
  for (int64_t b = 0; b < batch; ++b) {
    slots.push_back(decoder.acquire());
    tune::Tensor logits = decoder.prefill(slots.back(), prompts[static_cast<size_t>(b)]);
    tune::Tensor one = chosen.narrow(b, 1);
    tune::ops::argmax_rows(one, logits);
  }
  tune::Tensor host = chosen.to(tune::Device::cpu);  // waits for the prefills
  t.prefill_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto t1 = Clock::now();
  for (int64_t step = 1; step < new_tokens; ++step) {
    std::copy_n(host.data<int64_t>(), batch, tokens.begin());
    tune::Tensor logits = decoder.decode(slots, tokens);
    tune::ops::argmax_rows(chosen, logits);
    host = chosen.to(tune::Device::cpu);  // the next step's tokens: waits for this one
  }
  t.decode_s = std::chrono::duration<double>(Clock::now() - t1).count();
  t.new_tokens = batch * new_tokens;
  return t;
}

void report(tune::models::Model& model, const Options& o, int64_t batch, int64_t n_params) {
  const int64_t vocab = model.config().arch.vocab_size;
  std::vector<std::vector<int64_t>> prompts(static_cast<size_t>(batch));
  for (size_t b = 0; b < prompts.size(); ++b) {
    for (int64_t i = 0; i < o.prompt; ++i) {
      const uint64_t index = b * static_cast<uint64_t>(o.prompt) + static_cast<uint64_t>(i);
      prompts[b].push_back(static_cast<int64_t>(tune::uniform01(o.seed, 1u << 20, index) * vocab) %
                           vocab);
    }
  }

  tune::infer::GenerateOptions gen;
  gen.max_new_tokens = o.new_tokens;
  gen.min_new_tokens = o.new_tokens;  // no end-of-sequence id: every run decodes as far
  std::vector<double> decode_tps, prefill_s, overall_tps;
  for (int r = 0; r < o.warmup + o.runs; ++r) {
    Timing t;
    if (batch == 1) {
      tune::infer::Generator generator(model.lm(), nullptr);
      const tune::infer::Generation g = generator.generate(prompts[0], gen);
      t = {g.prefill_seconds, g.decode_seconds, static_cast<int64_t>(g.tokens.size())};
    } else {
      t = run_batch(model.lm(), prompts, o.new_tokens);
    }
    if (r < o.warmup) continue;
    // Every sequence's first new token comes from its prefill; the decode steps make the rest.
    decode_tps.push_back(static_cast<double>(t.new_tokens - batch) / t.decode_s);
    prefill_s.push_back(t.prefill_s);
    overall_tps.push_back(static_cast<double>(t.new_tokens) / (t.prefill_s + t.decode_s));
  }
  nlohmann::ordered_json out = {
      {"impl", "tune.cpp"},
      {"device", tune::cuda_describe()},
      {"params", n_params},
      {"dtype", o.dtype},
      {"batch", batch},
      {"prompt_tokens", o.prompt},
      {"new_tokens", o.new_tokens},
      {"decode_tokens_per_s", median(decode_tps)},
      {"min_decode_tokens_per_s", *std::min_element(decode_tps.begin(), decode_tps.end())},
      {"max_decode_tokens_per_s", *std::max_element(decode_tps.begin(), decode_tps.end())},
      {"prefill_s", median(prefill_s)},
      // New tokens over the whole generate call, prefill included (what transformers'
      // generate is timed by).
      {"tokens_per_s", median(overall_tps)},
      {"device_memory_gib", static_cast<double>(tune::cuda_memory_in_use()) / (1 << 30)},
      {"shape", o.shape},
  };
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
}

int run(const Options& o) {
  const tune::DType dtype = o.dtype == "f32"   ? tune::DType::f32
                            : o.dtype == "f16" ? tune::DType::f16
                                               : tune::DType::bf16;
  tune::models::ModelConfig config =
      tune::models::parse_model_config(tune::io::read_json_file(o.shape), o.shape);
  tune::models::ModelOptions options;
  options.dtype = dtype;
  options.training = tune::models::Training::none;
  options.device = tune::Device::cuda;
  tune::models::Model model(config, options);
  init_weights(model.params(), o.seed);
  int64_t n_params = 0;
  for (const auto& info : model.params().infos()) n_params += tune::numel_of(info.shape);

  for (int64_t batch : o.batches) report(model, o, batch, n_params);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_decode: %s\n", e.what());
    return 1;
  }
}
