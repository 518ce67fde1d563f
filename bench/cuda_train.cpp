// cuda_train: training steps on CUDA — LoRA or full fine-tuning of the model an HF config.json
// describes (bench/shapes/*.json), random weights and random tokens (labels = ids), bf16 or f16.
// Its peer is bench/cuda_train_hf.py (transformers + PEFT on the same shape, batch and length);
// bench/run_cuda_train.sh runs both on the GPU machine and prints the ratios.
//
// One step is what a trainer does: zero the gradients, rewind the activation arena,
// CausalLM::forward_backward (the head and loss in chunks, no [B*T, V] logits), clipping of the
// gradient norm to 1 (transformers' Trainer's default; the peer clips too) and an AdamW update
// (f32 master weights and moments on the device under bf16/f16; every parameter decayed, as
// torch's AdamW does with one parameter group). W warm-up steps (the first sizes the arena), then
// N timed steps, each between two device syncs on a host clock; the median is reported. One more,
// untimed step is cut into phases by syncs: forward + backward, clipping, optimizer.
//
// Peak memory is the high mark of the device's memory pool over the warm-up and timed steps
// (tune::cuda_peak_memory(): parameters, gradients, optimizer state, arena, scratch — what
// torch.cuda.max_memory_allocated() counts on the other side); the memory the process holds on
// the device at the end (context and pool cache included) is printed beside it.
//
// Weights are drawn on the host, uniform with std 0.02 (1-D weights 1, biases 0), chunk by chunk,
// and copied to the device, as bench/cuda_decode.cpp does (8B normal draws on one host thread
// would take minutes); LoRA B is 0 as PEFT starts it, so LoRA A gets no gradient signal in the
// first step — the work done is the same.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tune/core/device.h"
#include "tune/core/error.h"
#include "tune/core/rng.h"
#include "tune/io/files.h"
#include "tune/models/model.h"
#include "tune/nn/context.h"
#include "tune/nn/loss.h"
#include "tune/ops/ops.h"
#include "tune/train/optim.h"

namespace {

enum class Checkpointing : uint8_t { none, blocks, blocks_offload };

struct Options {
  std::string shape = "bench/shapes/llama3_1b.json";
  std::string mode = "lora";  // lora | full
  int64_t batch = 4;
  int64_t seq = 2048;
  Checkpointing checkpointing = Checkpointing::none;
  std::string checkpointing_name = "none";
  std::string dtype = "bf16";
  bool cpu = false;  // --device cpu: f32 on the host, a check of this program without a GPU
  int steps = 8;
  int warmup = 3;
  double lr = 1e-4;
  double max_grad_norm = 1.0;
  uint64_t seed = 1234;
};

void usage() {
  std::printf(
      "usage: cuda_train [--shape FILE] [--mode lora|full] [--batch B] [--seq T]\n"
      "                  [--checkpointing none|blocks|blocks+offload] [--dtype bf16|f16]\n"
      "                  [--device cuda|cpu]\n"
      "                  [--steps N] [--warmup W] [--lr LR] [--max-grad-norm X] [--seed S]\n\n"
      "Times training steps on CUDA (forward + loss + backward + gradient clipping + AdamW) of\n"
      "the model that the HF config.json FILE describes (default bench/shapes/llama3_1b.json),\n"
      "with random weights and random tokens (labels = ids). --mode lora: LoRA r=16, alpha=16,\n"
      "dropout 0 on q,k,v,o,gate,up,down (GPT-2: every Linear but the head), base frozen;\n"
      "--mode full: every parameter trained. --checkpointing blocks reruns each block's forward\n"
      "in backward. W warm-up steps (default 3), then the median of N timed steps (default 8).\n"
      "--max-grad-norm 0 skips clipping. Prints one JSON line: tokens/s, step time, peak device\n"
      "memory, TFLOP/s and the time of each phase; on failure a line with \"error\".\n"
      "--device cpu runs the same steps in f32 on the host (peak_gib: peak RSS), to check this\n"
      "program on a machine without a GPU.\n");
}

[[noreturn]] void bad_usage(const std::string& message) {
  std::fprintf(stderr, "cuda_train: %s; see --help\n", message.c_str());
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) bad_usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage();
      std::exit(0);
    } else if (a == "--shape") {
      o.shape = value();
    } else if (a == "--mode") {
      o.mode = value();
      if (o.mode != "lora" && o.mode != "full") bad_usage("--mode is lora or full");
    } else if (a == "--batch") {
      o.batch = std::stoll(value());
    } else if (a == "--seq") {
      o.seq = std::stoll(value());
    } else if (a == "--checkpointing") {
      o.checkpointing_name = value();
      if (o.checkpointing_name == "none") {
        o.checkpointing = Checkpointing::none;
      } else if (o.checkpointing_name == "blocks") {
        o.checkpointing = Checkpointing::blocks;
      } else if (o.checkpointing_name == "blocks+offload") {
        o.checkpointing = Checkpointing::blocks_offload;
      } else {
        bad_usage("--checkpointing is none, blocks or blocks+offload");
      }
    } else if (a == "--dtype") {
      o.dtype = value();
      if (o.dtype != "bf16" && o.dtype != "f16") bad_usage("--dtype is bf16 or f16");
    } else if (a == "--device") {
      const std::string d = value();
      if (d != "cuda" && d != "cpu") bad_usage("--device is cuda or cpu");
      o.cpu = d == "cpu";
    } else if (a == "--steps") {
      o.steps = std::stoi(value());
    } else if (a == "--warmup") {
      o.warmup = std::stoi(value());
    } else if (a == "--lr") {
      o.lr = std::stod(value());
    } else if (a == "--max-grad-norm") {
      o.max_grad_norm = std::stod(value());
    } else if (a == "--seed") {
      o.seed = std::stoull(value());
    } else {
      bad_usage("unknown option \"" + a + "\"");
    }
  }
  if (o.cpu) o.dtype = "f32";
  if (o.batch <= 0 || o.seq <= 0 || o.steps <= 0 || o.warmup < 0)
    bad_usage("--batch, --seq and --steps must be positive, --warmup not negative");
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

size_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<size_t>(u.ru_maxrss) * 1024;  // ru_maxrss is in KiB on Linux
}

bool is_lora(const std::string& name) {
  return name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight");
}

// Every parameter ~ uniform with std 0.02, then 1-D weights (norms) = 1, biases and LoRA B = 0.
// Drawn on the host in chunks and copied to the device.
void init_weights(tune::nn::ParamStore& params, uint64_t seed) {
  const float amplitude = 0.02f * std::sqrt(3.0f);
  constexpr int64_t kChunk = int64_t{1} << 26;
  tune::Tensor host = tune::Tensor::empty({kChunk}, params.dtype());
  tune::Tensor host_f32 = tune::Tensor::empty({kChunk}, tune::DType::f32);
  uint64_t stream = 0;
  for (tune::Tensor* buffer : {&params.frozen(), &params.trainable()}) {
    if (!buffer->defined()) continue;
    const int64_t n = buffer->numel();
    for (int64_t start = 0; start < n; start += kChunk) {
      const int64_t len = std::min(kChunk, n - start);
      float* p = host_f32.data<float>();
#pragma omp parallel for schedule(static)
      for (int64_t j = 0; j < len; ++j)
        p[j] = amplitude *
               (2.0f * tune::uniform01(seed, stream, static_cast<uint64_t>(start + j)) - 1.0f);
      tune::Tensor src = host_f32.narrow(0, len);
      tune::Tensor staged = host.narrow(0, len);
      staged.copy_from(src);
      tune::Tensor dst = buffer->narrow(start, len);
      dst.copy_from(staged);
    }
    ++stream;
  }
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    const std::string& name = params.info(i).name;
    tune::Tensor w = params.param(i);
    if (name.ends_with(".bias") || name.ends_with(".lora_B.weight")) {
      tune::ops::fill(w, 0.0);
    } else if (w.dim() == 1) {
      tune::ops::fill(w, 1.0);
    }
  }
}

// Model FLOPs per token, the convention of PaLM (Chowdhery et al. 2022, appendix B) and llm.c,
// with causal attention counted at half: recomputation is not counted (MFU, not hardware FLOPs).
//   A weight matrix of n values costs 2n per token in forward, 2n for the input's gradient and 2n
//   for its own gradient. Full fine-tuning: 6·N; LoRA: 4·N_frozen (a frozen weight needs no
//   gradient of its own) + 6·N_adapters. N counts every matrix multiplied with the activations:
//   the blocks' projections and the output head (the tied embedding counted once, as the head);
//   the embedding lookups (token, position) are not products and are left out.
//   Attention per layer and token at position t: q·kᵀ and p·v are 2·t·(H·hd) FLOPs each in
//   forward, twice that in backward; averaged over a causal sequence of T, t ≈ T/2:
//   (2 + 4)·2·(T/2)·H·hd = 6·T·H·hd per layer and token.
double flops_per_token(const tune::models::Model& model, int64_t seq) {
  const tune::models::ModelConfig& config = model.config();
  const tune::nn::TransformerConfig& a = config.arch;
  const std::string embed = config.names.embed + ".weight";
  const std::string pos_embed = config.names.pos_embed + ".weight";
  double frozen = 0, trained = 0;
  for (const tune::nn::ParamInfo& info : model.params().infos()) {
    if (info.shape.size() < 2 || info.name == pos_embed) continue;
    // The token embedding is a lookup, unless it doubles as the head.
    if (info.name == embed && !a.tie_embeddings) continue;
    const auto n = static_cast<double>(tune::numel_of(info.shape));
    (info.role == tune::nn::Role::frozen ? frozen : trained) += n;
  }
  const double attention = 6.0 * static_cast<double>(a.num_layers * seq * a.num_heads * a.head_dim);
  return 4.0 * frozen + 6.0 * trained + attention;
}

nlohmann::ordered_json header(const Options& o) {
  return {{"side", "tune.cpp"}, {"shape", o.shape}, {"mode", o.mode},
          {"batch", o.batch},   {"seq", o.seq},     {"checkpointing", o.checkpointing_name},
          {"dtype", o.dtype}};
}

int run(const Options& o) {
  using Clock = std::chrono::steady_clock;
  const tune::Device device = o.cpu ? tune::Device::cpu : tune::Device::cuda;
  TUNE_CHECK(o.cpu || tune::cuda_available(), "no CUDA device (", tune::cuda_describe(), ")");
  auto sync = [&] {
    if (!o.cpu) tune::cuda_synchronize();
  };
  const tune::DType dtype = o.cpu              ? tune::DType::f32
                            : o.dtype == "f16" ? tune::DType::f16
                                               : tune::DType::bf16;

  tune::models::ModelConfig config =
      tune::models::parse_model_config(tune::io::read_json_file(o.shape), o.shape);
  const int64_t vocab = config.arch.vocab_size;
  tune::models::ModelOptions options;
  options.dtype = dtype;
  options.device = device;
  if (o.mode == "lora") {
    options.training = tune::models::Training::lora;
    options.lora.r = 16;
    options.lora.alpha = 16;
    options.lora.dropout = 0.0;
    // Llama-family names as the peer lists them; GPT-2 (c_attn, c_proj, c_fc): every Linear.
    if (!config.names.q.empty())
      options.lora.targets = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                              "gate_proj", "up_proj", "down_proj"};
    else
      options.lora.targets = {"all-linear"};
    options.lora.seed = o.seed;
  } else {
    options.training = tune::models::Training::full;
  }
  tune::models::Model model(config, options);
  tune::nn::ParamStore& params = model.params();
  init_weights(params, o.seed);
  int64_t n_params = 0, n_trainable = 0;
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    const tune::nn::ParamInfo& info = params.info(i);
    const int64_t n = tune::numel_of(info.shape);
    n_params += n;
    if (info.role == tune::nn::Role::trainable) {
      n_trainable += n;
      // torch.optim.AdamW over model.parameters() decays every one; so do we, for the same work.
      params.set_decay(i, tune::nn::Decay::yes);
    }
  }
  tune::train::AdamWConfig adamw;
  adamw.lr = o.lr;
  tune::train::AdamW opt(params, adamw);

  std::vector<int64_t> token_ids(static_cast<size_t>(o.batch * o.seq));
  for (size_t i = 0; i < token_ids.size(); ++i)
    token_ids[i] = static_cast<int64_t>(tune::uniform01(o.seed, 1u << 20, i) * vocab) % vocab;
  // Host tensors, as the trainer passes them: the model copies them over without a sync.
  const tune::Tensor ids = tune::Tensor::from_i64({o.batch, o.seq}, token_ids);
  const tune::Tensor labels = ids;
  const tune::Tensor positions = tune::nn::default_positions(o.batch, o.seq);

  tune::nn::Context ctx(device);
  ctx.dtype = dtype;
  ctx.recompute_blocks = o.checkpointing != Checkpointing::none;
  ctx.offload_blocks = o.checkpointing == Checkpointing::blocks_offload;
  tune::nn::CausalLM& lm = model.lm();

  struct Phases {
    // issue_forward_backward: the host's time to issue forward + backward (before the sync);
    // near forward_backward, the GPU waits on the host's launches.
    double forward_backward = 0, issue_forward_backward = 0, clip = 0, optimizer = 0;
  };
  // One training step; with `phases`, a sync after each part to time it.
  auto step = [&](Phases* phases) {
    const auto t0 = Clock::now();
    params.zero_grads();
    ctx.arena.reset();
    const tune::nn::LossResult r = lm.forward_backward(ctx, ids, positions, labels, 0);
    const auto issued = Clock::now();
    if (phases) sync();
    const auto t1 = Clock::now();
    // As the trainer does: under mixed precision the clipping factor rides along in the update.
    double grad_scale = 1.0;
    if (opt.mixed_precision())
      grad_scale = tune::train::clip_factor(tune::train::grad_norm(params), o.max_grad_norm);
    else if (o.max_grad_norm > 0)
      tune::train::clip_grad_norm(params, o.max_grad_norm);
    if (phases) sync();
    const auto t2 = Clock::now();
    opt.step(o.lr, grad_scale);
    if (phases) {
      sync();
      auto ms = [](Clock::duration d) { return std::chrono::duration<double>(d).count() * 1e3; };
      *phases = {ms(t1 - t0), ms(issued - t0), ms(t2 - t1), ms(Clock::now() - t2)};
    }
    ++ctx.step;
    return r.mean();
  };

  sync();
  if (!o.cpu) tune::cuda_reset_peak_memory();  // from here: weights, masters, moments, steps
  std::vector<double> step_ms;
  double first_loss = 0, last_loss = 0;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    sync();
    const auto t0 = Clock::now();
    const double loss = step(nullptr);
    sync();
    const double ms = std::chrono::duration<double>(Clock::now() - t0).count() * 1e3;
    if (s == 0) first_loss = loss;
    last_loss = loss;
    if (s >= o.warmup) step_ms.push_back(ms);
  }
  const size_t peak = o.cpu ? peak_rss_bytes() : tune::cuda_peak_memory();
  Phases phases;
  sync();
  step(&phases);

  const int64_t tokens = o.batch * o.seq;
  const double ms = median(step_ms);
  const double per_token = flops_per_token(model, o.seq);
  nlohmann::ordered_json out = header(o);
  out["tokens_per_s"] = static_cast<double>(tokens) / (ms * 1e-3);
  out["step_ms"] = ms;
  out["peak_gib"] = static_cast<double>(peak) / kGiB;
  out["tflops"] = per_token * static_cast<double>(tokens) / (ms * 1e-3) / 1e12;
  out["flops_per_token"] = per_token;
  out["min_step_ms"] = *std::min_element(step_ms.begin(), step_ms.end());
  out["max_step_ms"] = *std::max_element(step_ms.begin(), step_ms.end());
  out["phases_ms"] = {{"forward_backward", phases.forward_backward},
                      {"issue_forward_backward", phases.issue_forward_backward},
                      {"clip", phases.clip},
                      {"optimizer", phases.optimizer}};
  if (!o.cpu) out["device_in_use_gib"] = static_cast<double>(tune::cuda_memory_in_use()) / kGiB;
  out["arena_gib"] = static_cast<double>(ctx.arena.capacity_bytes()) / kGiB;
  out["params"] = n_params;
  out["trainable_params"] = n_trainable;
  out["loss_first"] = first_loss;
  out["loss_last"] = last_loss;
  out["steps"] = o.steps;
  out["warmup"] = o.warmup;
  out["device"] = o.cpu ? "cpu" : tune::cuda_describe();
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    // A JSON line on stdout too, so that the side-by-side script can put the failure in its table.
    const std::string what = e.what();
    nlohmann::ordered_json out = header(o);
    out["error"] = what.find("out of memory") != std::string::npos ? "oom" : "failed";
    out["message"] = what;
    std::printf("%s\n", out.dump().c_str());
    std::fprintf(stderr, "cuda_train: %s\n", what.c_str());
    return 1;
  }
}
