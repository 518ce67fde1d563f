// cpu_train_step: one full fine-tuning step (forward + loss + backward + AdamW) of a Llama shape
// on the CPU, in f32, timed. Its peer is bench/cpu_train_step.py (the same model in PyTorch);
// bench/run_cpu_train_step.sh runs both side by side and prints the ratio.
//
// The model is built from an HF config.json (bench/shapes/*.json), weights drawn at random
// (normal * 0.02, norms at 1, as transformers initialises a Llama), token ids at random and
// labels = ids. W warm-up steps (the first one sizes the activation arena), then N timed steps;
// the median step time is reported as one JSON line, with the median of each phase beside it.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tune/core/parallel.h"
#include "tune/core/rng.h"
#include "tune/io/files.h"
#include "tune/models/model.h"
#include "tune/nn/loss.h"
#include "tune/train/optim.h"

namespace {

struct Options {
  std::string shape = "bench/shapes/llama_20m.json";
  int64_t batch = 4;
  int64_t seq = 256;
  int steps = 10;
  int warmup = 3;
  int threads = 0;  // 0: the OpenMP default
  uint64_t seed = 1234;
};

void usage() {
  std::printf(
      "usage: cpu_train_step [--shape FILE] [--batch B] [--seq T] [--steps N] [--warmup W]\n"
      "                      [--threads N] [--seed S]\n\n"
      "Times full fine-tuning steps (forward + loss + backward + AdamW, f32) of the model that\n"
      "the HF config.json FILE describes (default bench/shapes/llama_20m.json), with random\n"
      "weights and tokens, and prints one JSON line: parameters, tokens per step, median step\n"
      "time, tokens/s, threads, peak RSS, and the median of each phase.\n");
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "cpu_train_step: %s needs a value\n", a.c_str());
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
      o.batch = std::stoll(value());
    } else if (a == "--seq") {
      o.seq = std::stoll(value());
    } else if (a == "--steps") {
      o.steps = std::stoi(value());
    } else if (a == "--warmup") {
      o.warmup = std::stoi(value());
    } else if (a == "--threads") {
      o.threads = std::stoi(value());
    } else if (a == "--seed") {
      o.seed = std::stoull(value());
    } else {
      std::fprintf(stderr, "cpu_train_step: unknown option \"%s\"; see --help\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.batch <= 0 || o.seq <= 0 || o.steps <= 0 || o.warmup < 0) {
    std::fprintf(stderr, "cpu_train_step: --batch, --seq and --steps must be positive\n");
    std::exit(2);
  }
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// Matrices and embeddings ~ N(0, 0.02²); 1-D parameters (RMSNorm weights) = 1.
void init_weights(tune::nn::ParamStore& params, uint64_t seed) {
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    tune::Tensor w = params.param(i);
    float* p = w.data<float>();
    bool norm = w.dim() == 1;
    for (int64_t j = 0; j < w.numel(); ++j)
      p[j] = norm ? 1.0f : 0.02f * tune::normal01(seed, static_cast<uint64_t>(i), j);
  }
}

int run(const Options& o) {
  if (o.threads > 0) tune::set_num_threads(o.threads);

  tune::models::ModelConfig config =
      tune::models::parse_model_config(tune::io::read_json_file(o.shape), o.shape);
  const int64_t vocab = config.arch.vocab_size;
  tune::models::Model model(config, {tune::DType::f32, tune::models::Training::full, {}});
  tune::nn::ParamStore& params = model.params();
  init_weights(params, o.seed);
  int64_t n_params = 0;
  for (const auto& info : params.infos()) n_params += tune::numel_of(info.shape);

  // torch.optim.AdamW(model.parameters()) decays every parameter; so do we, for the same work.
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i)
    params.set_decay(i, tune::nn::Decay::yes);
  tune::train::AdamWConfig adamw;
  adamw.lr = 1e-4;
  tune::train::AdamW opt(params, adamw);

  std::vector<int64_t> token_ids(static_cast<size_t>(o.batch * o.seq));
  for (size_t i = 0; i < token_ids.size(); ++i)
    token_ids[i] = static_cast<int64_t>(tune::uniform01(o.seed, 1u << 20, i) * vocab) % vocab;
  tune::Tensor ids = tune::Tensor::from_i64({o.batch, o.seq}, token_ids);
  tune::Tensor labels = ids;
  tune::Tensor positions = tune::nn::default_positions(o.batch, o.seq);

  tune::nn::Context ctx;
  tune::nn::CausalLM& lm = model.lm();
  std::vector<double> step_s, forward_s, loss_s, backward_s, optimizer_s;
  double first_loss = 0, last_loss = 0;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    ctx.arena.reset();
    params.zero_grads();
    tune::Tensor logits = lm.forward(ctx, ids, positions);  // [B*T, V]
    double t_forward = seconds_since(t0);
    tune::Tensor dlogits = ctx.arena.alloc(logits.shape(), logits.dtype());
    double loss = tune::nn::causal_lm_loss(dlogits, logits, labels).mean();
    double t_loss = seconds_since(t0);
    lm.backward(ctx, dlogits);
    double t_backward = seconds_since(t0);
    opt.step(adamw.lr);
    double t_step = seconds_since(t0);
    if (s == 0) first_loss = loss;
    last_loss = loss;
    if (s < o.warmup) continue;
    step_s.push_back(t_step);
    forward_s.push_back(t_forward);
    loss_s.push_back(t_loss - t_forward);
    backward_s.push_back(t_backward - t_loss);
    optimizer_s.push_back(t_step - t_backward);
  }

  const int64_t tokens = o.batch * o.seq;
  const double step = median(step_s);
  nlohmann::ordered_json out = {
      {"impl", "tune.cpp"},
      {"params", n_params},
      {"tokens_per_step", tokens},
      {"median_step_s", step},
      {"tokens_per_s", static_cast<double>(tokens) / step},
      {"threads", tune::num_threads()},
      {"peak_rss_mib", peak_rss_mib()},
      {"arena_mib", static_cast<double>(ctx.arena.capacity_bytes()) / (1024.0 * 1024.0)},
      {"min_step_s", *std::min_element(step_s.begin(), step_s.end())},
      {"max_step_s", *std::max_element(step_s.begin(), step_s.end())},
      {"phases_s",
       {{"forward", median(forward_s)},
        {"loss", median(loss_s)},
        {"backward", median(backward_s)},
        {"optimizer", median(optimizer_s)}}},
      {"loss_first", first_loss},
      {"loss_last", last_loss},
      {"shape", o.shape},
      {"batch", o.batch},
      {"seq", o.seq},
      {"steps", o.steps},
      {"warmup", o.warmup},
  };
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_args(argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cpu_train_step: %s\n", e.what());
    return 1;
  }
}
