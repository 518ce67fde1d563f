// `tune train`: a YAML config plus `key.sub=value` overrides in, a fine-tuned adapter or model
// out (src/train/trainer.cpp does the work). This file is the user's view of it: options and
// help, a live progress bar on a terminal (plain lines otherwise), and Ctrl-C handling — the
// first Ctrl-C finishes the step, saves a checkpoint and exits; a second one quits at once.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "tune/core/error.h"
#include "tune/core/options.h"
#include "tune/train/config.h"
#include "tune/train/trainer.h"

namespace tune::cli {

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_interrupt(int) {
  if (g_stop.exchange(true)) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
    return;
  }
  const char msg[] =
      "\ntune train: stopping after this step and saving a checkpoint (Ctrl-C again quits "
      "now)\n";
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
}

void print_help(const Options& options) {
  std::printf(
      "usage: tune train [CONFIG.yaml] [key.sub=value ...] [--resume | --overwrite] "
      "[--print-config]\n\n"
      "Fine-tunes (LoRA or full) or pretrains a causal language model. The config is a YAML file\n"
      "with the sections below; `key.sub=value` (or `--key.sub value`) overrides one key.\n"
      "Relative paths are relative to the current directory. Outputs go to output.dir: the\n"
      "adapter (PEFT layout) or model (Hugging Face layout), the tokenizer, config.yaml,\n"
      "metrics.jsonl (one JSON object per step: step, loss, lr, grad_norm, tokens_per_s, ...)\n"
      "and checkpoints/.\n\n"
      "  --resume        continue the run in output.dir from its latest checkpoint, exactly\n"
      "  --overwrite     replace the run already in output.dir\n"
      "  --print-config  print the resolved config (every key, defaults included) and exit\n"
      "  -h, --help      this help\n\n"
      "Ctrl-C saves a checkpoint and exits; `tune train CONFIG --resume` continues.\n"
      "Examples: examples/lora.yaml, examples/full.yaml (see examples/README.md).\n\n"
      "config keys:\n%s",
      options.help_text(false).c_str());
}

std::string duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s % 3600 / 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  }
  return buf;
}

// The progress line: a bar on a terminal, rewritten in place; plain lines in a log.
class Progress {
 public:
  explicit Progress(int64_t log_every) : tty_(isatty(STDERR_FILENO)), log_every_(log_every) {}

  void step(const train::StepReport& r) {
    // Tokens/s smoothed over recent steps, and the ETA from this run's own pace.
    speed_ = speed_ == 0 ? r.tokens_per_second : 0.8 * speed_ + 0.2 * r.tokens_per_second;
    if (first_step_ < 0) first_step_ = r.step - 1, first_elapsed_ = r.elapsed_seconds;
    const double done = static_cast<double>(r.step - first_step_);
    const double per_step = done > 0 ? (r.elapsed_seconds - first_elapsed_) / done : 0;
    const double eta = per_step * static_cast<double>(r.total_steps - r.step);
    if (tty_) {
      const int width = 24;
      const int filled = static_cast<int>(width * r.step / std::max<int64_t>(1, r.total_steps));
      std::string bar(static_cast<size_t>(filled), '#');
      bar += std::string(static_cast<size_t>(width - filled), '.');
      std::fprintf(stderr, "\r\033[K%lld/%lld [%s] loss %.4f  lr %.2e  %.0f tok/s  ETA %s",
                   static_cast<long long>(r.step), static_cast<long long>(r.total_steps),
                   bar.c_str(), r.loss, r.learning_rate, speed_, duration(eta).c_str());
      open_line_ = true;
      if (r.step == r.total_steps) line_break();
    } else if (r.step % log_every_ == 0 || r.step == r.total_steps) {
      std::fprintf(stderr,
                   "step %lld/%lld  loss %.4f  lr %.3e  grad_norm %.3f  %.0f tok/s  elapsed %s  "
                   "ETA %s\n",
                   static_cast<long long>(r.step), static_cast<long long>(r.total_steps), r.loss,
                   r.learning_rate, r.grad_norm, r.tokens_per_second,
                   duration(r.elapsed_seconds).c_str(), duration(eta).c_str());
    }
    std::fflush(stderr);
  }

  void message(const std::string& line) {
    line_break();
    std::fprintf(stderr, "%s\n", line.c_str());
  }

  void data(int64_t done, int64_t total) {
    if (!tty_) return;
    std::fprintf(stderr, "\r\033[Ktokenizing %lld/%lld", static_cast<long long>(done),
                 static_cast<long long>(total));
    open_line_ = true;
    if (done == total) line_break();
  }

  void line_break() {
    if (open_line_) std::fputc('\n', stderr);
    open_line_ = false;
  }

 private:
  bool tty_;
  int64_t log_every_;
  bool open_line_ = false;
  double speed_ = 0;
  int64_t first_step_ = -1;
  double first_elapsed_ = 0;
};

}  // namespace

int train_command(const Args& args) {
  Options options(train::train_option_specs());
  if (Options::wants_help(args)) {
    print_help(options);
    return 0;
  }
  bool resume = false, overwrite = false, print_config = false;
  Args rest;
  for (const std::string& a : args) {
    if (a == "--resume") {
      resume = true;
    } else if (a == "--overwrite") {
      overwrite = true;
    } else if (a == "--print-config") {
      print_config = true;
    } else {
      rest.push_back(a);
    }
  }
  TUNE_CHECK(!(resume && overwrite),
             "--resume and --overwrite exclude each other: continue the run, or replace it");
  // The config file first, then the overrides on top of it, whatever their order.
  Options overrides(train::train_option_specs());
  const std::vector<std::string> positionals = overrides.parse_args(rest);
  TUNE_CHECK(positionals.size() <= 1, "tune train takes one config file, got ", positionals.size(),
             " (", positionals[0], ", ", positionals[1],
             ", ...). Overrides are written key.sub=value.");
  if (!positionals.empty()) load_yaml_config(options, positionals[0]);
  options.parse_args(rest);

  if (print_config) {
    std::fputs(options.to_yaml().c_str(), stdout);
    return 0;
  }
  const train::TrainConfig config = train::make_train_config(options);
  Progress progress(config.training.log_every);
  train::TrainerEvents events;
  events.message = [&](const std::string& line) { progress.message(line); };
  events.data_progress = [&](int64_t done, int64_t total) { progress.data(done, total); };
  events.step = [&](const train::StepReport& r) { progress.step(r); };
  events.eval = [&](const train::EvalReport& e) {
    progress.message(str("eval at step ", e.step, ": loss ", e.loss, ", perplexity ", e.perplexity,
                         " over ", e.counted, " tokens"));
  };

  g_stop = false;
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  // A file-size limit then fails the write (EFBIG) like a full disk, instead of killing us.
  std::signal(SIGXFSZ, SIG_IGN);
  const train::RunMode mode = resume      ? train::RunMode::resume
                              : overwrite ? train::RunMode::overwrite
                                          : train::RunMode::fresh;
  const train::RunResult result = train::run_training(config, options, mode, events, &g_stop);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  progress.line_break();
  if (result.interrupted) {
    std::fprintf(stderr,
                 "interrupted at step %lld of %lld; checkpoint %s\ncontinue with: tune train "
                 "... --resume\n",
                 static_cast<long long>(result.steps_done),
                 static_cast<long long>(result.total_steps), result.checkpoint.c_str());
    return 130;
  }
  std::fprintf(stderr, "done: %lld steps; outputs in %s\n",
               static_cast<long long>(result.steps_done), result.output_dir.c_str());
  return 0;
}

}  // namespace tune::cli
