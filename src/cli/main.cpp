// `tune`: one binary, one table of subcommands.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "cli/commands.h"
#include "tune/core/error.h"
#include "tune/version.h"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const tune::cli::Args&);
};

constexpr Command kCommands[] = {
    {"chat", "talk with a chat model on stdin/stdout (streams replies, keeps the conversation)",
     tune::cli::chat_command},
    {"chat-template", "render a conversation with a tokenizer's chat template",
     tune::cli::chat_template_command},
    {"check-golden", "compare a model against a Hugging Face golden case folder",
     tune::cli::check_golden_command},
    {"detokenize", "token ids -> text with a Hugging Face tokenizer",
     tune::cli::detokenize_command},
    {"env", "print how this tune was built and what it can see (BLAS, threads, CUDA)",
     tune::cli::env_command},
    {"export", "write a model (+ LoRA adapter) as a merged HF folder, a PEFT adapter or GGUF",
     tune::cli::export_command},
    {"generate", "continue a prompt (or a JSONL of prompts) with a model, streamed or as JSON",
     tune::cli::generate_command},
    {"serve", "an OpenAI-compatible HTTP server (chat/completions, streaming, LoRA adapters)",
     tune::cli::serve_command},
    {"train", "fine-tune or pretrain a model from a YAML config (LoRA or full)",
     tune::cli::train_command},
    {"tokenize", "text -> token ids with a Hugging Face tokenizer (TEXT or a JSONL file)",
     tune::cli::tokenize_command},
};

void print_help() {
  std::printf(
      "tune %s — train, fine-tune, serve and export Hugging Face-format language models\n\n",
      tune::version());
  std::printf("usage: tune <command> [options]\n\ncommands:\n");
  for (const Command& c : kCommands) std::printf("  %-14s %s\n", c.name, c.summary);
  std::printf("\n  tune <command> --help   options of one command\n  tune --version\n");
}

}  // namespace

// OpenMP threads that wait by spinning make every parallel region pay when another process
// wants the same cores: with one busy neighbour on 2 cores a training step took 1.9x as long as
// with passive waiting, while on an idle machine passive waiting costs a few percent. tune picks
// passive unless the user chose. libgomp reads OMP_WAIT_POLICY once, when it loads (before
// main), so the setting takes a re-exec of ourselves; if that fails we simply go on.
static void prefer_passive_openmp_waits(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);
}

int main(int argc, char** argv) {
  prefer_passive_openmp_waits(argv);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    print_help();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("tune %s\n", tune::version());
    return 0;
  }
  for (const Command& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      return c.run(tune::cli::Args(argv + 2, argv + argc));
    } catch (const tune::Error& e) {
      std::fprintf(stderr, "tune %s: error: %s\n", c.name, e.what());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tune %s: unexpected error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "tune: unknown command \"%s\"; run `tune --help` for the list\n", argv[1]);
  return 2;
}
