// `tune chat`: an interactive conversation on stdin/stdout. Each reply streams as it is
// generated; the conversation is rendered with the model's chat template every turn, and the
// Generator reuses its KV cache for the part of the rendered conversation it has already seen.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "tune/core/error.h"
#include "tune/core/options.h"
#include "tune/infer/session.h"

namespace tune::cli {

namespace {

void print_help(const Options& options) {
  std::printf(
      "usage: tune chat --model DIR [--adapter DIR] [--system TEXT] [--max-new-tokens N]\n"
      "                 [--temperature T] [--top-k K] [--top-p P] [--min-p P]\n"
      "                 [--repetition-penalty R] [--seed S] [--stop STR ...]\n\n"
      "Talks with a chat model: type a message and press Enter; the reply streams to stdout,\n"
      "and its speed (tokens/s) goes to stderr. The conversation is kept and rendered with the\n"
      "model's chat template each turn; the part already seen is not recomputed.\n"
      "Commands: /reset clears the conversation, /exit (or end of input) quits.\n"
      "Sampling follows generation_config.json unless options say otherwise (see\n"
      "`tune generate --help`).\n\n"
      "options:\n%s  -h, --help                        this help\n",
      options.help_text(true).c_str());
}

nlohmann::ordered_json fresh_conversation(const std::string& system) {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
  return messages;
}

}  // namespace

int chat_command(const Args& raw_args) {
  Options o(infer::generation_option_specs());
  if (Options::wants_help(raw_args)) {
    print_help(o);
    return 0;
  }
  // --stop is repeatable: each occurrence literally, or a list "[a, b]".
  std::vector<std::string> stop;
  Args args;
  for (size_t i = 0; i < raw_args.size(); ++i) {
    if (raw_args[i] != "--stop") {
      args.push_back(raw_args[i]);
      continue;
    }
    const std::string v = option_value(raw_args, i, "a stop string");
    if (v.size() >= 2 && v.front() == '[' && v.back() == ']') {
      o.set("stop", v, "command line");
      for (const std::string& s : o.list("stop")) stop.push_back(s);
    } else {
      stop.push_back(v);
    }
  }
  const std::vector<std::string> positionals = o.parse_args(args);
  TUNE_CHECK(positionals.empty(), "unexpected argument \"",
             positionals.empty() ? "" : positionals[0], "\"; see `tune chat --help`");

  infer::LoadedModel loaded =
      infer::load_for_generation(o.text("model"), o.text("adapter"), o.text("tokenizer"),
                                 infer::placement(o).device, infer::placement(o).dtype);
  const infer::GenerateOptions options = infer::generate_options(o, loaded, stop);
  infer::Generator gen(loaded.model->lm(), &*loaded.tokenizer);
  // Fails now, not at the first message, when the tokenizer has no chat template.
  infer::render_chat(loaded, fresh_conversation(o.text("system")), true);

  const bool interactive = isatty(STDIN_FILENO);
  if (interactive)
    std::fprintf(stderr, "chatting with %s — /reset clears, /exit quits\n", loaded.dir.c_str());
  nlohmann::ordered_json messages = fresh_conversation(o.text("system"));
  std::string line;
  while (true) {
    if (interactive) std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      messages = fresh_conversation(o.text("system"));
      gen.reset();
      std::fprintf(stderr, "[conversation cleared]\n");
      continue;
    }
    messages.push_back({{"role", "user"}, {"content", line}});
    const std::vector<int64_t> ids = infer::encode_chat(loaded, messages);
    const infer::Generation g = gen.generate(ids, options, [](std::string_view piece) {
      write_all(stdout, piece, "stdout");
      std::fflush(stdout);
    });
    write_all(stdout, "\n", "stdout");
    std::fflush(stdout);
    std::fprintf(stderr, "[%lld tokens, %.1f tokens/s; prompt %lld tokens, %lld reused]\n",
                 static_cast<long long>(g.tokens.size()), g.decode_tokens_per_second(),
                 static_cast<long long>(g.prompt_tokens), static_cast<long long>(g.reused_tokens));
    messages.push_back({{"role", "assistant"}, {"content", g.text}});
  }
  return 0;
}

}  // namespace tune::cli
