// `tune generate`: a continuation of one prompt (streamed to stdout, or one JSON object with
// --json), or a JSONL file of prompts with one model load for all (--input/--output).
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "tune/core/error.h"
#include "tune/core/options.h"
#include "tune/infer/session.h"
#include "tune/io/files.h"

namespace tune::cli {

namespace {

std::vector<OptionSpec> generate_specs() {
  std::vector<OptionSpec> specs = infer::generation_option_specs();
  using K = OptionKind;
  specs.insert(specs.begin() + 3,
               {{"prompt", K::text, "", "the prompt text (with --chat: the user's message)"},
                {"chat", K::flag, "false",
                 "render the prompt as a user message with the model's chat template, followed "
                 "by the assistant's turn (add_generation_prompt)"}});
  specs.push_back({"json", K::flag, "false",
                   "print one JSON object {prompt, completion, tokens, finish_reason, "
                   "prompt_tokens} instead of streaming text"});
  specs.push_back({"input", K::text, "",
                   "JSONL of prompts, one {\"prompt\": \"...\"} or {\"messages\": [...]} per "
                   "line"});
  specs.push_back({"output", K::text, "",
                   "with --input: where the results go (JSONL, written atomically; default "
                   "stdout)"});
  return specs;
}

void print_help(const Options& options) {
  std::printf(
      "usage: tune generate --model DIR [--adapter DIR] --prompt TEXT [--chat] [--system TEXT]\n"
      "                     [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]\n"
      "                     [--min-p P] [--repetition-penalty R] [--seed S] [--stop STR ...]\n"
      "                     [--json]\n"
      "       tune generate --model DIR [options] --input PROMPTS.jsonl [--output "
      "RESULTS.jsonl]\n\n"
      "Continues a prompt with a Hugging Face causal language model (with a LoRA adapter if\n"
      "given). The text streams to stdout as it is generated; speed goes to stderr.\n"
      "Decoding is greedy unless generation_config.json says do_sample, or --do-sample or a\n"
      "sampling option is given. Generation stops at an end-of-sequence token\n"
      "(generation_config.json's eos_token_id, else config.json's, else the tokenizer's\n"
      "eos_token), at a --stop string, or after --max-new-tokens.\n\n"
      "Batch mode: each --input line is {\"prompt\": \"...\"} (a chat user message with --chat)\n"
      "or {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}; each output line repeats it\n"
      "with \"completion\", \"tokens\" (new tokens) and \"finish_reason\" (\"stop\" or "
      "\"length\").\n\n"
      "options:\n%s  -h, --help                        this help\n",
      options.help_text(true).c_str());
}

struct Result {
  std::string completion;
  int64_t tokens = 0, prompt_tokens = 0;
  std::string finish_reason;
};

std::vector<int64_t> encode_request(const infer::LoadedModel& loaded, const Options& o,
                                    const nlohmann::ordered_json& request) {
  if (request.contains("messages")) return infer::encode_chat(loaded, request["messages"]);
  const std::string prompt = request["prompt"].get<std::string>();
  if (!o.flag("chat")) return infer::encode_text(loaded, prompt);
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (!o.text("system").empty())
    messages.push_back({{"role", "system"}, {"content", o.text("system")}});
  messages.push_back({{"role", "user"}, {"content", prompt}});
  return infer::encode_chat(loaded, messages);
}

// One request {"prompt"} or {"messages"}; errors name `where`.
void check_request(const nlohmann::ordered_json& r, const std::string& where) {
  TUNE_CHECK(r.is_object(), where,
             ": expected a JSON object {\"prompt\": \"...\"} or "
             "{\"messages\": [...]}");
  const bool has_prompt = r.contains("prompt"), has_messages = r.contains("messages");
  TUNE_CHECK(has_prompt != has_messages, where,
             ": give exactly one of \"prompt\" (a string) and \"messages\" (a list)");
  if (has_prompt) TUNE_CHECK(r["prompt"].is_string(), where, ": \"prompt\" must be a string");
  if (has_messages)
    TUNE_CHECK(r["messages"].is_array() && !r["messages"].empty(), where,
               ": \"messages\" must be a non-empty list of {\"role\", \"content\"}");
}

Result run_one(infer::Generator& gen, const infer::LoadedModel& loaded, const Options& o,
               const infer::GenerateOptions& options, const nlohmann::ordered_json& request,
               bool stream) {
  const std::vector<int64_t> ids = encode_request(loaded, o, request);
  infer::StreamCallback on_text;
  if (stream) {
    on_text = [](std::string_view piece) {
      write_all(stdout, piece, "stdout");
      std::fflush(stdout);
    };
  }
  const infer::Generation g = gen.generate(ids, options, on_text);
  if (stream) {
    std::fprintf(stderr, "[%lld prompt tokens, %lld new tokens, %.1f tokens/s]\n",
                 static_cast<long long>(g.prompt_tokens), static_cast<long long>(g.tokens.size()),
                 g.decode_tokens_per_second());
  }
  return {g.text, static_cast<int64_t>(g.tokens.size()), g.prompt_tokens,
          infer::finish_reason_name(g.finish)};
}

// --stop values, each taken literally unless written as a list "[a, b]"; removed from args.
std::vector<std::string> take_stop_strings(Args& args, Options& options) {
  std::vector<std::string> stop;
  Args rest;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string value;
    if (args[i] == "--stop") {
      value = option_value(args, i, "a stop string");
    } else if (args[i].rfind("--stop=", 0) == 0) {
      value = args[i].substr(7);
    } else {
      rest.push_back(args[i]);
      continue;
    }
    if (value.size() >= 2 && value.front() == '[' && value.back() == ']') {
      options.set("stop", value, "command line");
      for (const std::string& s : options.list("stop")) stop.push_back(s);
    } else {
      stop.push_back(value);
    }
  }
  args = rest;
  return stop;
}

}  // namespace

int generate_command(const Args& raw_args) {
  Options o(generate_specs());
  if (Options::wants_help(raw_args)) {
    print_help(o);
    return 0;
  }
  Args args = raw_args;
  const std::vector<std::string> stop = take_stop_strings(args, o);
  const std::vector<std::string> positionals = o.parse_args(args);
  TUNE_CHECK(positionals.empty(), "unexpected argument \"",
             positionals.empty() ? "" : positionals[0],
             "\": the prompt goes after --prompt; see `tune generate --help`");
  const bool batch = o.is_set("input");
  TUNE_CHECK(batch || o.is_set("prompt"),
             "--prompt TEXT (or --input PROMPTS.jsonl) is required; see `tune generate --help`");
  TUNE_CHECK(!(batch && o.is_set("prompt")), "give --prompt or --input, not both");
  TUNE_CHECK(batch || !o.is_set("output"), "--output goes with --input (batch mode)");

  // Read the input before loading the model, so that a bad file fails fast.
  std::vector<nlohmann::ordered_json> requests;
  if (batch) {
    const std::string path = o.text("input");
    std::ifstream in(path, std::ios::binary);
    TUNE_CHECK(in.good(), "--input ", path, ": cannot open the file");
    std::string line;
    for (size_t n = 1; std::getline(in, line); ++n) {
      if (line.empty() || line == "\r") continue;
      const std::string where = str(path, ":", n);
      nlohmann::ordered_json r;
      try {
        r = nlohmann::ordered_json::parse(line);
      } catch (const nlohmann::json::parse_error& e) {
        throw Error(str(where, ": not valid JSON (", e.what(), ")"));
      }
      check_request(r, where);
      requests.push_back(std::move(r));
    }
  } else {
    requests.push_back({{"prompt", o.text("prompt")}});
  }

  infer::LoadedModel loaded =
      infer::load_for_generation(o.text("model"), o.text("adapter"), o.text("tokenizer"),
                                 infer::placement(o).device, infer::placement(o).dtype);
  const infer::GenerateOptions options = infer::generate_options(o, loaded, stop);
  infer::Generator gen(loaded.model->lm(), &*loaded.tokenizer);

  if (!batch) {
    const bool json = o.flag("json");
    const Result r = run_one(gen, loaded, o, options, requests[0], !json);
    if (json) {
      nlohmann::ordered_json out = {{"prompt", o.text("prompt")},
                                    {"completion", r.completion},
                                    {"tokens", r.tokens},
                                    {"finish_reason", r.finish_reason},
                                    {"prompt_tokens", r.prompt_tokens}};
      write_all(stdout, out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                "stdout");
    } else {
      write_all(stdout, "\n", "stdout");
    }
    TUNE_CHECK(std::fflush(stdout) == 0, "could not write to stdout");
    return 0;
  }

  std::string lines;
  for (size_t i = 0; i < requests.size(); ++i) {
    const Result r = run_one(gen, loaded, o, options, requests[i], false);
    nlohmann::ordered_json out = requests[i];
    out["completion"] = r.completion;
    out["tokens"] = r.tokens;
    out["finish_reason"] = r.finish_reason;
    lines += out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::fprintf(stderr, "\r%zu/%zu prompts", i + 1, requests.size());
  }
  std::fprintf(stderr, "\n");
  if (o.is_set("output")) {
    io::write_file_atomic(o.text("output"), lines);
  } else {
    write_all(stdout, lines, "stdout");
    TUNE_CHECK(std::fflush(stdout) == 0, "could not write to stdout");
  }
  return 0;
}

}  // namespace tune::cli
