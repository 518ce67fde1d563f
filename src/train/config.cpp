// The training config schema and its typed view.
#include "tune/train/config.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numbers>

#include "tune/core/error.h"

namespace tune::train {

namespace fs = std::filesystem;
using K = OptionKind;

std::vector<OptionSpec> train_option_specs() {
  return {
      // model
      {"model.path", K::text, "",
       "the model to fine-tune: a Hugging Face model directory, or a Hub id (org/name) found in "
       "the local Hugging Face cache"},
      {"model.init",
       K::choice,
       "pretrained",
       "pretrained: start from model.path's weights; scratch: random weights of the "
       "architecture in model.config",
       {"pretrained", "scratch"}},
      {"model.config", K::text, "",
       "init: scratch — a directory (or config.json) describing the architecture"},
      {"model.tokenizer", K::text, "",
       "directory with tokenizer.json and tokenizer_config.json (default: model.path, or "
       "model.config's directory)"},
      // data
      {"data.path", K::list, "",
       "training files: .jsonl, .json (an array of records), .csv (header row) or .txt"},
      {"data.format",
       K::choice,
       "messages",
       "messages: chat conversations rendered with the chat template; text: plain text; "
       "completion: prompt + completion; alpaca: instruction/input/output",
       {"messages", "text", "completion", "alpaca"}},
      {"data.fields.text", K::text, "text", "field holding the text (format text)"},
      {"data.fields.prompt", K::text, "prompt", "prompt field (format completion)"},
      {"data.fields.completion", K::text, "completion", "completion field (format completion)"},
      {"data.fields.instruction", K::text, "instruction", "instruction field (format alpaca)"},
      {"data.fields.input", K::text, "input", "input field (format alpaca)"},
      {"data.fields.output", K::text, "output", "output field (format alpaca)"},
      {"data.fields.messages", K::text, "messages",
       "conversation field (format messages; \"conversations\" for ShareGPT)"},
      {"data.fields.role", K::text, "role", "role key of a message (\"from\" for ShareGPT)"},
      {"data.fields.content", K::text, "content",
       "content key of a message (\"value\" for ShareGPT)"},
      {"data.chat_template", K::text, "",
       "chat template: empty for the tokenizer's own, a template name from "
       "tokenizer_config.json, or the template text itself"},
      {"data.train_on",
       K::choice,
       "responses",
       "responses: count the loss on assistant turns / completions only; all: on every token",
       {"responses", "all"}},
      {"data.seq_len", K::integer, "1024", "tokens per training row"},
      {"data.pack", K::flag, "true",
       "pack several examples into each row (attention stays inside each example)"},
      {"data.truncation",
       K::choice,
       "right",
       "examples longer than seq_len: right keeps the first seq_len tokens, drop skips them",
       {"right", "drop"}},
      {"data.sample_by",
       K::choice,
       "line",
       ".txt files: one example per line, per blank-line-separated paragraph, or per file",
       {"line", "paragraph", "document"}},
      {"data.eval_fraction", K::number, "0",
       "fraction of examples held out for evaluation (seeded, stable)"},
      {"data.on_error",
       K::choice,
       "fail",
       "a malformed record: fail names its file and line; skip counts and reports it",
       {"fail", "skip"}},
      {"data.cache_dir", K::text, "",
       "tokenized-data cache (default: $TUNE_CACHE_DIR or ~/.cache/tune/datasets)"},
      // adapter
      {"adapter.type",
       K::choice,
       "lora",
       "lora: train low-rank adapters on a frozen base; none: full fine-tuning",
       {"lora", "none"}},
      {"adapter.r", K::integer, "16", "LoRA rank"},
      {"adapter.alpha", K::number, "16", "LoRA alpha (scale alpha / r)"},
      {"adapter.dropout", K::number, "0", "dropout on the LoRA input"},
      {"adapter.rslora", K::flag, "false", "rank-stabilised scale alpha / sqrt(r)"},
      {"adapter.targets", K::list, "all-linear",
       "modules to adapt: names such as q_proj, v_proj, or all-linear (every projection but "
       "the output head)"},
      // training
      {"training.epochs", K::integer, "1", "passes over the training data (when max_steps is 0)"},
      {"training.max_steps", K::integer, "0",
       "optimizer steps to run; 0: as many as `epochs` takes"},
      {"training.micro_batch_size", K::integer, "4", "rows per forward/backward pass"},
      {"training.gradient_accumulation_steps", K::integer, "1",
       "micro-batches per optimizer step; the loss is averaged over the counted tokens of all "
       "of them, so the update equals one large batch's"},
      {"training.learning_rate", K::number, "2e-4", "peak learning rate"},
      {"training.scheduler",
       K::choice,
       "linear",
       "learning-rate schedule after warm-up",
       {"constant", "linear", "cosine"}},
      {"training.warmup_steps", K::integer, "0", "linear warm-up steps"},
      {"training.warmup_ratio", K::number, "0",
       "warm-up as a fraction of all steps (when warmup_steps is 0)"},
      {"training.weight_decay", K::number, "0",
       "AdamW weight decay (never applied to norms and biases)"},
      {"training.max_grad_norm", K::number, "1.0", "clip the global gradient norm; 0: no clipping"},
      {"training.optimizer", K::choice, "adamw", "optimizer", {"adamw"}},
      {"training.adam_beta1", K::number, "0.9", "AdamW beta1"},
      {"training.adam_beta2", K::number, "0.999", "AdamW beta2"},
      {"training.adam_epsilon", K::number, "1e-8", "AdamW epsilon"},
      {"training.seed", K::integer, "42",
       "seed for data order, held-out split, initialisation and dropout"},
      {"training.eval_every", K::integer, "0",
       "evaluate on the held-out split every N steps (and at the end); 0: only at the end"},
      {"training.save_every", K::integer, "0",
       "write a checkpoint every N steps; 0: only at the end (and on Ctrl-C)"},
      {"training.keep_last", K::integer, "2", "checkpoints kept in output.dir/checkpoints"},
      {"training.log_every", K::integer, "1", "write a metrics line every N steps"},
      {"training.threads", K::integer, "0", "CPU threads; 0: all cores"},
      {"training.device",
       K::choice,
       "cpu",
       "where the model trains: cpu, or cuda (the first GPU)",
       {"cpu", "cuda"}},
      {"training.precision",
       K::choice,
       "auto",
       "weights, activations and gradients: auto is f32 on the CPU and bf16 on CUDA; bf16 and "
       "f16 (CUDA only) keep f32 master weights and f32 optimizer state for what trains, f16 "
       "with dynamic loss scaling",
       {"auto", "f32", "bf16", "f16"}},
      {"training.activation_checkpointing",
       K::choice,
       "none",
       "blocks: keep only each decoder block's input (on CUDA also its attention output and "
       "logsumexp) and recompute the rest of the block in backward (same gradients, much less "
       "activation memory, ~1/3 more compute); blocks+offload (CUDA): keep only those inputs, "
       "in pinned host memory, copied while the next block computes",
       {"none", "blocks", "blocks+offload"}},
      // output
      {"output.dir", K::text, "output",
       "where the adapter or model, tokenizer, config.yaml, metrics.jsonl and checkpoints go"},
      {"output.dtype",
       K::choice,
       "auto",
       "dtype of a fully fine-tuned model's weights: auto keeps the input model's",
       {"auto", "float32", "bfloat16", "float16"}},
  };
}

namespace {

Error bad(const Options& o, const std::string& key, const std::string& what) {
  return Error(str(o.origin(key), ": ", key, " ", what));
}

int64_t positive(const Options& o, const std::string& key, int64_t min) {
  const int64_t v = o.integer(key);
  if (v < min) throw bad(o, key, str("= ", v, " must be at least ", min));
  return v;
}

double non_negative(const Options& o, const std::string& key) {
  const double v = o.number(key);
  if (!(v >= 0) || !std::isfinite(v)) throw bad(o, key, str("= ", v, " must be >= 0"));
  return v;
}

template <typename E>
E pick(const Options& o, const std::string& key,
       std::initializer_list<std::pair<const char*, E>> m) {
  const std::string v = o.text(key);
  for (const auto& [name, value] : m) {
    if (v == name) return value;
  }
  throw bad(o, key, "has an unexpected value " + v);
}

std::string config_dir(const std::string& path) {
  if (fs::is_regular_file(path)) return fs::path(path).parent_path().string();
  return path;
}

}  // namespace

std::string resolve_model_path(const std::string& path) {
  if (fs::is_directory(path)) return path;
  std::vector<std::string> looked = {path};
  const size_t slash = path.find('/');
  const bool hub_id = slash != std::string::npos && slash > 0 &&
                      path.find('/', slash + 1) == std::string::npos && path[0] != '.';
  if (hub_id) {
    std::vector<fs::path> caches;
    if (const char* c = std::getenv("HF_HUB_CACHE")) caches.emplace_back(c);
    if (const char* h = std::getenv("HF_HOME")) caches.push_back(fs::path(h) / "hub");
    if (const char* home = std::getenv("HOME")) {
      caches.push_back(fs::path(home) / ".cache" / "huggingface" / "hub");
    }
    const std::string folder = "models--" + path.substr(0, slash) + "--" + path.substr(slash + 1);
    for (const fs::path& cache : caches) {
      const fs::path repo = cache / folder;
      looked.push_back((repo / "snapshots").string());
      if (!fs::is_directory(repo / "snapshots")) continue;
      std::ifstream ref(repo / "refs" / "main");
      std::string revision;
      if (ref && std::getline(ref, revision) && fs::is_directory(repo / "snapshots" / revision)) {
        return (repo / "snapshots" / revision).string();
      }
      fs::path newest;
      for (const auto& e : fs::directory_iterator(repo / "snapshots")) {
        if (e.is_directory() &&
            (newest.empty() || e.last_write_time() > fs::last_write_time(newest))) {
          newest = e.path();
        }
      }
      if (!newest.empty()) return newest.string();
    }
  }
  std::string where;
  for (const std::string& l : looked) where += "\n  " + l;
  throw Error(str("model \"", path, "\" not found. Looked in:", where,
                  "\nGive a Hugging Face model directory, or download the model into the "
                  "Hugging Face cache first (tune reads it there and downloads nothing)."));
}

TrainConfig make_train_config(const Options& o) {
  TrainConfig c;
  // model
  c.model.init =
      pick<Init>(o, "model.init", {{"pretrained", Init::pretrained}, {"scratch", Init::scratch}});
  if (c.model.init == Init::pretrained) {
    if (o.text("model.path").empty()) {
      throw Error(
          "model.path is not set: give a Hugging Face model directory or Hub id, or set "
          "model.init: scratch with model.config to train a new model");
    }
    c.model.path = resolve_model_path(o.text("model.path"));
  } else {
    if (o.text("model.config").empty()) {
      throw Error(
          "model.init is scratch but model.config is not set: give a directory (or "
          "config.json) describing the architecture");
    }
    c.model.config = config_dir(o.text("model.config"));
    if (!fs::is_regular_file(fs::path(c.model.config) / "config.json")) {
      throw bad(o, "model.config", "= " + o.text("model.config") + " holds no config.json");
    }
  }
  c.model.tokenizer = o.text("model.tokenizer");
  if (c.model.tokenizer.empty()) {
    c.model.tokenizer = c.model.init == Init::scratch ? c.model.config : c.model.path;
  }

  // data
  data::DataConfig& d = c.data;
  d.paths = o.list("data.path");
  if (d.paths.empty()) throw Error("data.path is not set: give one or more training files");
  d.format = pick<data::Format>(o, "data.format",
                                {{"messages", data::Format::messages},
                                 {"text", data::Format::text},
                                 {"completion", data::Format::completion},
                                 {"alpaca", data::Format::alpaca}});
  d.text_field = o.text("data.fields.text");
  d.prompt_field = o.text("data.fields.prompt");
  d.completion_field = o.text("data.fields.completion");
  d.instruction_field = o.text("data.fields.instruction");
  d.input_field = o.text("data.fields.input");
  d.output_field = o.text("data.fields.output");
  d.messages_field = o.text("data.fields.messages");
  d.role_field = o.text("data.fields.role");
  d.content_field = o.text("data.fields.content");
  d.chat_template = o.text("data.chat_template");
  d.train_on = pick<data::TrainOn>(
      o, "data.train_on", {{"responses", data::TrainOn::responses}, {"all", data::TrainOn::all}});
  d.seq_len = positive(o, "data.seq_len", 2);
  d.pack = o.flag("data.pack");
  d.truncation = pick<data::Truncation>(
      o, "data.truncation", {{"right", data::Truncation::right}, {"drop", data::Truncation::drop}});
  d.sample_by = pick<data::SampleBy>(o, "data.sample_by",
                                     {{"line", data::SampleBy::line},
                                      {"paragraph", data::SampleBy::paragraph},
                                      {"document", data::SampleBy::document}});
  d.eval_fraction = non_negative(o, "data.eval_fraction");
  if (d.eval_fraction >= 1) throw bad(o, "data.eval_fraction", "must be below 1");
  d.on_error = pick<data::OnError>(o, "data.on_error",
                                   {{"fail", data::OnError::fail}, {"skip", data::OnError::skip}});
  d.cache_dir = o.text("data.cache_dir");
  d.seed = static_cast<uint64_t>(o.integer("training.seed"));

  // adapter
  c.adapter.lora = o.text("adapter.type") == "lora";
  nn::LoraConfig& l = c.adapter.config;
  l.r = positive(o, "adapter.r", 1);
  l.alpha = o.number("adapter.alpha");
  if (!(l.alpha > 0)) throw bad(o, "adapter.alpha", "must be > 0");
  l.dropout = non_negative(o, "adapter.dropout");
  if (l.dropout >= 1) throw bad(o, "adapter.dropout", "must be below 1");
  l.scaling = o.flag("adapter.rslora") ? nn::LoraScaling::rslora : nn::LoraScaling::standard;
  l.targets = o.list("adapter.targets");
  if (l.targets.empty()) throw bad(o, "adapter.targets", "is empty: name modules or all-linear");
  l.seed = static_cast<uint64_t>(o.integer("training.seed"));

  // training
  TrainingSection& t = c.training;
  t.epochs = positive(o, "training.epochs", 1);
  t.max_steps = positive(o, "training.max_steps", 0);
  t.micro_batch_size = positive(o, "training.micro_batch_size", 1);
  t.gradient_accumulation_steps = positive(o, "training.gradient_accumulation_steps", 1);
  t.learning_rate = non_negative(o, "training.learning_rate");
  t.scheduler = pick<Schedule>(o, "training.scheduler",
                               {{"constant", Schedule::constant},
                                {"linear", Schedule::linear},
                                {"cosine", Schedule::cosine}});
  t.warmup_steps = positive(o, "training.warmup_steps", 0);
  t.warmup_ratio = non_negative(o, "training.warmup_ratio");
  if (t.warmup_ratio > 1) throw bad(o, "training.warmup_ratio", "must be at most 1");
  t.weight_decay = non_negative(o, "training.weight_decay");
  t.max_grad_norm = non_negative(o, "training.max_grad_norm");
  t.adam_beta1 = non_negative(o, "training.adam_beta1");
  t.adam_beta2 = non_negative(o, "training.adam_beta2");
  t.adam_epsilon = non_negative(o, "training.adam_epsilon");
  if (t.adam_beta1 >= 1) throw bad(o, "training.adam_beta1", "must be below 1");
  if (t.adam_beta2 >= 1) throw bad(o, "training.adam_beta2", "must be below 1");
  t.seed = static_cast<uint64_t>(positive(o, "training.seed", 0));
  t.eval_every = positive(o, "training.eval_every", 0);
  t.save_every = positive(o, "training.save_every", 0);
  t.keep_last = positive(o, "training.keep_last", 1);
  t.log_every = positive(o, "training.log_every", 1);
  t.threads = static_cast<int>(positive(o, "training.threads", 0));
  const std::string checkpointing = o.text("training.activation_checkpointing");
  t.recompute_blocks = checkpointing != "none";
  t.offload_blocks = checkpointing == "blocks+offload";
  t.device = o.text("training.device") == "cuda" ? Device::cuda : Device::cpu;
  const std::string precision = o.text("training.precision");
  t.dtype = precision == "bf16"        ? DType::bf16
            : precision == "f16"       ? DType::f16
            : precision == "f32"       ? DType::f32
            : t.device == Device::cuda ? DType::bf16
                                       : DType::f32;
  if (t.device == Device::cpu && t.offload_blocks) {
    throw bad(o, "training.activation_checkpointing",
              "is blocks+offload, which moves block inputs from the GPU to host memory; on the "
              "CPU use blocks");
  }
  if (t.device == Device::cpu && t.dtype != DType::f32) {
    throw bad(o, "training.precision",
              str("is ", precision,
                  " but the CPU trains in f32 only; set training.device: cuda "
                  "or training.precision: f32"));
  }

  // output
  c.output.dir = o.text("output.dir");
  if (c.output.dir.empty()) throw bad(o, "output.dir", "is empty");
  c.output.dtype = o.text("output.dtype") == "auto" ? "" : o.text("output.dtype");
  return c;
}

double learning_rate_at(Schedule schedule, double base_lr, int64_t step, int64_t warmup,
                        int64_t total) {
  if (step < warmup) return base_lr * static_cast<double>(step) / static_cast<double>(warmup);
  if (schedule == Schedule::constant) return base_lr;
  const double span = static_cast<double>(std::max<int64_t>(1, total - warmup));
  const double progress = static_cast<double>(step - warmup) / span;
  if (schedule == Schedule::linear) return base_lr * std::max(0.0, 1.0 - progress);
  return base_lr * std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
}

}  // namespace tune::train
