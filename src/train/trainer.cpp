// The training loop and everything around it: output folder rules, model and data set-up,
// gradient accumulation, evaluation, checkpoints, exact resume and the final outputs.
#include "tune/train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "tune/core/device.h"
#include "tune/core/error.h"
#include "tune/core/parallel.h"
#include "tune/data/data.h"
#include "tune/io/checkpoint.h"
#include "tune/io/files.h"
#include "tune/models/model.h"
#include "tune/models/peft.h"
#include "tune/nn/context.h"
#include "tune/nn/loss.h"
#include "tune/tokenizer/tokenizer.h"
#include "tune/train/checkpoints.h"
#include "tune/train/init.h"
#include "tune/train/optim.h"

namespace tune::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// Keys that only say how a run is observed or stored, not what it computes: a resume may change
// them freely. (max_steps and epochs may grow too: training longer is what resuming is for.)
const std::set<std::string> kResumeFreeKeys = {
    "training.save_every",
    "training.keep_last",
    "training.eval_every",
    "training.log_every",
    "training.threads",
    "training.max_steps",
    "training.epochs",
    "data.cache_dir",
    "output.dir",
    "training.activation_checkpointing"};  // changes memory, not one bit of the results

// Files of a finished run that --overwrite replaces (never anything else in the folder).
const char* const kRunFiles[] = {"config.yaml",
                                 "metrics.jsonl",
                                 "adapter_config.json",
                                 "adapter_model.safetensors",
                                 "config.json",
                                 "model.safetensors",
                                 "model.safetensors.index.json",
                                 "generation_config.json",
                                 "tokenizer.json",
                                 "tokenizer_config.json",
                                 "special_tokens_map.json",
                                 "chat_template.jinja"};

const char* const kTokenizerFiles[] = {"tokenizer.json", "tokenizer_config.json",
                                       "special_tokens_map.json", "chat_template.jinja"};

bool holds_run(const fs::path& dir) {
  return fs::exists(dir / "config.yaml") || fs::exists(dir / "checkpoints") ||
         fs::exists(dir / "metrics.jsonl");
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  TUNE_CHECK(in, "cannot read ", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// What differs between the checkpoint's config and this run's, one "key: was X, now Y" a line.
std::string config_differences(const nlohmann::ordered_json& before,
                               const nlohmann::ordered_json& now) {
  std::string out;
  for (const auto& [key, value] : now.items()) {
    if (kResumeFreeKeys.count(key)) continue;
    const nlohmann::ordered_json old =
        before.contains(key) ? before[key] : nlohmann::ordered_json("(absent)");
    if (old != value) out += str("\n  ", key, ": checkpoint ", old.dump(), ", now ", value.dump());
  }
  return out;
}

// Keeps the metrics lines of steps <= step (the ones the checkpoint's run had logged before it
// was saved); what an interrupted run logged after its last checkpoint is recomputed.
void truncate_metrics(const fs::path& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;  // a line cut short by a kill
    if (j.value("step", int64_t{0}) <= step) kept += line + "\n";
  }
  io::write_file_atomic(path.string(), kept);
}

// Norms and biases are never weight-decayed (as Hugging Face's Trainer does).
void exempt_norms_and_biases(nn::ParamStore& params) {
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    const std::string& name = params.info(i).name;
    if (name.ends_with(".bias") || name.find("norm") != std::string::npos) {
      params.set_decay(i, nn::Decay::no);
    }
  }
}

class Trainer {
 public:
  Trainer(const TrainConfig& cfg, const Options& options, const TrainerEvents& events)
      : cfg_(cfg), options_(options), events_(events), out_(cfg.output.dir) {}

  RunResult run(RunMode mode, const std::atomic<bool>* stop);

 private:
  void say(const std::string& line) const {
    if (events_.message) events_.message(line);
  }
  void prepare_output_dir(RunMode mode);
  void build_model();
  void prepare_data();
  void restore(const std::string& checkpoint);
  double evaluate();
  void save(bool final_save);
  void write_outputs();
  void log_json(const nlohmann::ordered_json& j);

  const TrainConfig& cfg_;
  const Options& options_;
  const TrainerEvents& events_;
  fs::path out_;
  std::optional<tok::Tokenizer> tokenizer_;
  std::unique_ptr<models::Model> model_;
  std::unique_ptr<AdamW> optimizer_;
  std::optional<LossScaler> scaler_;  // f16 only
  std::optional<data::PreparedData> data_;
  std::unique_ptr<data::Loader> loader_;
  nn::Context ctx_;
  TrainerState state_;
  int64_t total_steps_ = 0, warmup_ = 0, last_saved_ = -1;
  bool reported_memory_ = false;
  std::string last_checkpoint_;
  std::optional<EvalReport> last_eval_;
  std::unique_ptr<std::ofstream> metrics_;
};

void Trainer::prepare_output_dir(RunMode mode) {
  const bool existing = holds_run(out_);
  if (existing && mode == RunMode::fresh) {
    throw Error(str("output.dir ", out_.string(),
                    " already holds a run (config.yaml, metrics.jsonl or checkpoints/). Pass "
                    "--resume to continue it, --overwrite to replace it, or choose another "
                    "output.dir."));
  }
  if (existing && mode == RunMode::overwrite) {
    fs::remove_all(out_ / "checkpoints");
    for (const char* f : kRunFiles) fs::remove(out_ / f);
    for (const auto& e : fs::directory_iterator(out_)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("model-", 0) == 0 && n.ends_with(".safetensors")) fs::remove(e.path());
    }
  }
  fs::create_directories(out_);
  remove_stale_checkpoint_temps(out_.string());
}

void Trainer::build_model() {
  TUNE_CHECK(cfg_.training.device != Device::cuda || cuda_available(),
             "training.device is cuda but ", cuda_describe(),
             "; train on the CPU with training.device: cpu");
  models::ModelOptions mo;
  mo.dtype = cfg_.training.dtype;
  mo.device = cfg_.training.device;
  mo.training = cfg_.adapter.lora ? models::Training::lora : models::Training::full;
  mo.lora = cfg_.adapter.config;
  if (cfg_.model.init == Init::pretrained) {
    model_ = models::load_model(cfg_.model.path, mo);
  } else {
    const models::ModelConfig config = models::read_model_config(cfg_.model.config);
    model_ = std::make_unique<models::Model>(config, mo);
    init_scratch_weights(*model_, config.json.value("initializer_range", 0.02), cfg_.training.seed);
  }
  if (cfg_.adapter.lora) init_lora_weights(*model_, cfg_.training.seed);
  exempt_norms_and_biases(model_->params());
  const int64_t model_vocab = model_->config().arch.vocab_size;
  TUNE_CHECK(tokenizer_->vocab_size() <= model_vocab, "the tokenizer in ", cfg_.model.tokenizer,
             " has ", tokenizer_->vocab_size(), " tokens but the model's vocab_size is ",
             model_vocab, ": they do not belong together. Set model.tokenizer to the model's own.");
  AdamWConfig ac;
  ac.lr = cfg_.training.learning_rate;
  ac.beta1 = cfg_.training.adam_beta1;
  ac.beta2 = cfg_.training.adam_beta2;
  ac.eps = cfg_.training.adam_epsilon;
  ac.weight_decay = cfg_.training.weight_decay;
  optimizer_ = std::make_unique<AdamW>(model_->params(), ac);
  if (cfg_.training.dtype == DType::f16) scaler_.emplace();
  ctx_ = nn::Context(cfg_.training.device);
  const nn::ParamStore& p = model_->params();
  say(str("model: ", model_->config().model_type, ", ", p.frozen_numel() + p.trainable_numel(),
          " parameters, ", p.trainable_numel(), " trainable",
          cfg_.adapter.lora ? str(" (LoRA r=", cfg_.adapter.config.r, ")") : std::string()));
}

void Trainer::prepare_data() {
  data_ = data::prepare_data(cfg_.data, *tokenizer_, events_.data_progress);
  const data::PreparedData& d = *data_;
  say(str("data: ", d.train.size(), " training examples (", d.train.tokens(), " tokens, ",
          d.train.counted_tokens(), " counted), ", d.eval.size(), " held out",
          d.cache_hit ? ", from the cache " : ", cached in ", d.cache_path,
          d.skipped_records ? str("; ", d.skipped_records, " malformed records skipped") : "",
          d.truncated ? str("; ", d.truncated, " truncated to seq_len") : "",
          d.dropped ? str("; ", d.dropped, " dropped") : ""));
  const TrainingSection& t = cfg_.training;
  loader_ = std::make_unique<data::Loader>(d.train, cfg_.data.seq_len, cfg_.data.pack,
                                           t.micro_batch_size, t.seed, true);
  const int64_t per_epoch = (loader_->batches_per_epoch() + t.gradient_accumulation_steps - 1) /
                            t.gradient_accumulation_steps;
  total_steps_ = t.max_steps > 0 ? t.max_steps : t.epochs * per_epoch;
  warmup_ =
      t.warmup_steps > 0
          ? t.warmup_steps
          : static_cast<int64_t>(std::ceil(t.warmup_ratio * static_cast<double>(total_steps_)));
}

void Trainer::restore(const std::string& checkpoint) {
  TrainerState s = read_checkpoint_state(checkpoint);
  const std::string diff = config_differences(s.config, options_.to_json());
  if (!diff.empty()) {
    throw Error(str("cannot resume from ", checkpoint,
                    ": it was made with another config. What differs:", diff,
                    "\nResume with the config the run started with, or start a new run with "
                    "--overwrite or another output.dir."));
  }
  load_checkpoint_weights(checkpoint, model_->params(), *optimizer_, s.step);
  if (scaler_ && s.loss_scale > 0) scaler_->restore(s.loss_scale, s.loss_scale_finite_steps);
  loader_->set_state(s.loader);
  state_ = s;
  state_.config = options_.to_json();
  last_saved_ = s.step;
  last_checkpoint_ = checkpoint;
  say(str("resumed from ", checkpoint, " (step ", s.step, ")"));
}

void Trainer::log_json(const nlohmann::ordered_json& j) {
  *metrics_ << j.dump() << "\n";
  metrics_->flush();
}

double Trainer::evaluate() {
  const data::Dataset& ds = data_->eval;
  if (ds.size() == 0) return NAN;
  data::Loader loader(ds, cfg_.data.seq_len, cfg_.data.pack, cfg_.training.micro_batch_size,
                      cfg_.training.seed, false);
  nn::Context ctx(cfg_.training.device);
  ctx.mode = nn::Mode::eval;
  double sum = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < loader.batches_per_epoch(); ++i) {
    data::Batch b = loader.next();
    ctx.arena.reset();
    const nn::LossResult r = model_->lm().forward_loss(ctx, b.ids, b.positions, b.labels);
    sum += r.sum;
    count += r.count;
  }
  EvalReport e;
  e.step = state_.step;
  e.counted = count;
  e.loss = count ? sum / static_cast<double>(count) : NAN;
  e.perplexity = std::exp(e.loss);
  last_eval_ = e;
  log_json({{"step", e.step},
            {"eval_loss", e.loss},
            {"eval_perplexity", e.perplexity},
            {"eval_tokens", e.counted}});
  if (events_.eval) events_.eval(e);
  return e.loss;
}

void Trainer::save(bool final_save) {
  if (last_saved_ == state_.step) return;
  state_.loader = loader_->state();
  if (scaler_) {
    state_.loss_scale = scaler_->scale();
    state_.loss_scale_finite_steps = scaler_->finite_steps();
  }
  last_checkpoint_ = save_checkpoint(out_.string(), state_, model_->params(), *optimizer_,
                                     cfg_.training.keep_last);
  last_saved_ = state_.step;
  if (!final_save) say(str("checkpoint ", last_checkpoint_));
}

void Trainer::write_outputs() {
  const std::string base = cfg_.model.init == Init::pretrained ? cfg_.model.path : "";
  if (cfg_.adapter.lora) {
    // Under mixed precision the optimizer's f32 masters are the trained values.
    const Tensor trained = optimizer_->mixed_precision() ? optimizer_->weights() : Tensor();
    models::save_adapter(*model_, out_.string(), base, trained);
  } else {
    const models::ModelConfig& mc = model_->config();
    DType dtype = mc.dtype;
    if (cfg_.output.dtype == "float32") dtype = DType::f32;
    if (cfg_.output.dtype == "bfloat16") dtype = DType::bf16;
    if (cfg_.output.dtype == "float16") dtype = DType::f16;
    const nn::ParamStore& p = model_->params();
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (int i = 0; i < static_cast<int>(p.infos().size()); ++i) {
      const nn::ParamInfo& info = p.info(i);
      // Under mixed precision the optimizer's f32 masters are the trained values.
      const Tensor w =
          optimizer_->mixed_precision() && info.role == nn::Role::trainable
              ? optimizer_->weights().narrow(info.offset, numel_of(info.shape)).view(info.shape)
              : p.param(i);
      tensors.emplace_back(info.name, w.to(Device::cpu).to(dtype));
    }
    io::write_checkpoint_dir(out_.string(), tensors);
    nlohmann::json config = mc.json;
    const char* name = dtype == DType::bf16  ? "bfloat16"
                       : dtype == DType::f16 ? "float16"
                                             : "float32";
    config["torch_dtype"] = name;
    if (config.contains("dtype")) config["dtype"] = name;
    io::write_file_atomic((out_ / "config.json").string(), config.dump(2) + "\n");
  }
  // The tokenizer and generation settings travel with the result, so it loads on its own.
  const fs::path model_dir =
      cfg_.model.init == Init::pretrained ? fs::path(cfg_.model.path) : fs::path(cfg_.model.config);
  for (const char* f : kTokenizerFiles) {
    const fs::path src = fs::path(cfg_.model.tokenizer) / f;
    if (fs::is_regular_file(src)) io::write_file_atomic((out_ / f).string(), read_file(src));
  }
  if (fs::is_regular_file(model_dir / "generation_config.json")) {
    io::write_file_atomic((out_ / "generation_config.json").string(),
                          read_file(model_dir / "generation_config.json"));
  }
}

RunResult Trainer::run(RunMode mode, const std::atomic<bool>* stop) {
  if (cfg_.training.threads > 0) set_num_threads(cfg_.training.threads);
  prepare_output_dir(mode);
  tokenizer_ = tok::Tokenizer::load(cfg_.model.tokenizer);
  prepare_data();
  build_model();
  state_.config = options_.to_json();

  std::optional<std::string> checkpoint;
  if (mode == RunMode::resume) {
    checkpoint = latest_checkpoint(out_.string());
    if (!checkpoint)
      say(str("no checkpoint in ", out_.string(), "/checkpoints: starting at step 0"));
  }
  if (checkpoint) {
    restore(*checkpoint);
  } else {
    last_saved_ = -1;
  }
  truncate_metrics(out_ / "metrics.jsonl", state_.step);
  io::write_file_atomic((out_ / "config.yaml").string(), options_.to_yaml());
  metrics_ = std::make_unique<std::ofstream>(out_ / "metrics.jsonl", std::ios::app);
  TUNE_CHECK(*metrics_, "cannot write ", (out_ / "metrics.jsonl").string());

  const TrainingSection& t = cfg_.training;
  const int64_t G = t.gradient_accumulation_steps;
  nn::CausalLM& lm = model_->lm();
  nn::ParamStore& params = model_->params();
  const double start_elapsed = state_.elapsed_seconds;
  const auto run_start = Clock::now();
  RunResult result;
  result.total_steps = total_steps_;
  say(str("training: steps ", state_.step, " -> ", total_steps_, ", ", t.micro_batch_size,
          " rows x ", G, " accumulation of up to ", cfg_.data.seq_len, " tokens, ",
          t.device == Device::cuda ? str("on cuda in ", dtype_name(t.dtype))
                                   : str(num_threads(), " threads")));

  while (state_.step < total_steps_) {
    const auto step_start = Clock::now();
    std::vector<data::Batch> batches;
    int64_t counted = 0, tokens = 0;
    for (int64_t g = 0; g < G; ++g) {
      batches.push_back(loader_->next());
      counted += batches.back().counted;
      tokens += batches.back().tokens;
    }
    params.zero_grads();
    // f16: backward runs on the loss times the scale (the gradients come out scaled by it).
    const double loss_scale = scaler_ ? scaler_->scale() : 1.0;
    double loss_sum = 0;
    for (int64_t g = 0; g < G; ++g) {
      const data::Batch& b = batches[static_cast<size_t>(g)];
      ctx_.arena.reset();
      ctx_.mode = nn::Mode::train;
      ctx_.recompute_blocks = t.recompute_blocks;
      ctx_.offload_blocks = t.offload_blocks;
      ctx_.step = static_cast<uint64_t>(state_.step * G + g);  // dropout masks
      // The output head and the loss go in chunks: the [tokens, vocab] logits never exist whole.
      const double normalizer = static_cast<double>(std::max<int64_t>(counted, 1)) / loss_scale;
      const nn::LossResult r = lm.forward_backward(ctx_, b.ids, b.positions, b.labels, normalizer);
      loss_sum += r.sum;
    }
    const double lr =
        learning_rate_at(t.scheduler, t.learning_rate, state_.step, warmup_, total_steps_);
    double gnorm = 0;
    if (counted == 0) {
      say(str("step ", state_.step + 1, ": no counted tokens in this batch; no update"));
      optimizer_->set_steps_taken(optimizer_->steps_taken() + 1);
    } else if (optimizer_->mixed_precision()) {
      // Clipping and unscaling ride along in the update: no pass over the gradients of its own.
      const double scaled_norm = grad_norm(params);
      if (scaler_ && !scaler_->update(std::isfinite(scaled_norm))) {
        say(str("step ", state_.step + 1, ": f16 gradients overflowed at loss scale ", loss_scale,
                "; update skipped, scale now ", scaler_->scale()));
        gnorm = scaled_norm;
      } else {
        TUNE_CHECK(std::isfinite(scaled_norm), "step ", state_.step + 1, ": the gradient norm is ",
                   scaled_norm,
                   " (NaN or inf), so this step's update would ruin the weights; "
                   "lower the learning rate (or raise warmup), or check the data");
        gnorm = scaled_norm / loss_scale;
        optimizer_->step(lr, clip_factor(gnorm, t.max_grad_norm) / loss_scale);
      }
    } else {
      gnorm = clip_grad_norm(params, t.max_grad_norm);
      optimizer_->step(lr);
    }
    state_.step += 1;
    state_.tokens_seen += tokens;
    const double step_seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    state_.elapsed_seconds =
        start_elapsed + std::chrono::duration<double>(Clock::now() - run_start).count();

    StepReport rep;
    rep.step = state_.step;
    rep.total_steps = total_steps_;
    const data::Loader::State ls = loader_->state();
    rep.epoch = static_cast<double>(ls.epoch) +
                static_cast<double>(ls.position) /
                    static_cast<double>(std::max<int64_t>(1, loader_->rows_per_epoch()));
    rep.loss = counted ? loss_sum / static_cast<double>(counted) : 0.0;
    rep.learning_rate = lr;
    rep.grad_norm = gnorm;
    rep.tokens = tokens;
    rep.counted = counted;
    rep.tokens_per_second = static_cast<double>(tokens) / std::max(step_seconds, 1e-9);
    rep.elapsed_seconds = state_.elapsed_seconds;
    if (state_.step % t.log_every == 0 || state_.step == total_steps_) {
      log_json({{"step", rep.step},
                {"epoch", rep.epoch},
                {"loss", rep.loss},
                {"lr", rep.learning_rate},
                {"grad_norm", rep.grad_norm},
                {"tokens", rep.tokens},
                {"counted_tokens", rep.counted},
                {"tokens_per_s", rep.tokens_per_second},
                {"elapsed_s", rep.elapsed_seconds}});
    }
    if (events_.step) events_.step(rep);
    if (!reported_memory_) {
      reported_memory_ = true;
      say(str("activation memory: ", ctx_.arena.peak_bytes() >> 20, " MiB per micro-batch",
              t.offload_blocks     ? " (blocks recomputed, their inputs in host memory)"
              : t.recompute_blocks ? " (blocks recomputed)"
                                   : "",
              t.device == Device::cuda
                  ? str("; device memory in use ", cuda_memory_in_use() >> 20, " MiB")
                  : std::string()));
    }

    const bool last = state_.step == total_steps_;
    if (t.eval_every > 0 && state_.step % t.eval_every == 0 && !last) evaluate();
    if (t.save_every > 0 && state_.step % t.save_every == 0 && !last) save(false);
    if (!last && stop && stop->load()) {
      save(false);
      result.interrupted = true;
      break;
    }
  }
  if (!result.interrupted) {
    // A run resumed after it had finished was evaluated then; only its outputs are rewritten.
    if (last_saved_ != total_steps_) evaluate();
    save(true);
    write_outputs();
  }
  result.steps_done = state_.step;
  result.output_dir = out_.string();
  result.checkpoint = last_checkpoint_;
  result.last_eval = last_eval_;
  return result;
}

}  // namespace

RunResult run_training(const TrainConfig& config, const Options& options, RunMode mode,
                       const TrainerEvents& events, const std::atomic<bool>* stop) {
  Trainer trainer(config, options, events);
  return trainer.run(mode, stop);
}

}  // namespace tune::train
