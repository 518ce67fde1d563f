// `tune serve`: the OpenAI-compatible server. Loads the base model once, each --adapter
// NAME=DIR into an adapter bank, starts the batch engine and the HTTP server, and stops on
// SIGTERM/SIGINT: no new connections, in-flight requests finish, exit 0.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "tune/core/error.h"
#include "tune/core/options.h"
#include "tune/infer/batch_engine.h"
#include "tune/infer/session.h"
#include "tune/server/openai_server.h"

namespace tune::cli {

namespace {

std::vector<OptionSpec> serve_specs() {
  using K = OptionKind;
  return {
      {"model", K::text, "",
       "Hugging Face model directory (config.json, model.safetensors, "
       "tokenizer.json, generation_config.json)"},
      {"adapter", K::text, "",
       "NAME=DIR: serve the PEFT LoRA adapter in DIR as model NAME (repeat for several)"},
      {"tokenizer", K::text, "", "directory with tokenizer.json when the model's has none"},
      {"device", K::choice, "cpu", "where the model runs", {"cpu", "cuda"}},
      {"dtype",
       K::choice,
       "",
       "weights and activations: f32 on the CPU; bf16 (default), f16 or f32 on CUDA",
       {"f32", "bf16", "f16"}},
      {"served_model_name", K::text, "",
       "the base model's id in the API (default: the model directory's name)"},
      {"host", K::text, "127.0.0.1", "address to listen on (0.0.0.0: every interface)"},
      {"port", K::integer, "8080", "port to listen on; 0 picks a free one (printed at start)"},
      {"max_batch", K::integer, "64", "most sequences decoded together; more requests queue"},
      {"max_context", K::integer, "4096",
       "on CUDA without adapters: positions (prompt + new tokens) each of the max_batch KV "
       "slots holds"},
      {"max_tokens", K::integer, "4096", "the most max_tokens a request may ask for"},
      {"max_n", K::integer, "16", "the most choices (n) a request may ask for"},
      {"max_body", K::integer, "1048576", "largest request body in bytes (larger: 413)"},
      {"http_threads", K::integer, "128",
       "connections served at once (each streaming response holds one)"},
      {"row_matmul",
       K::choice,
       "independent",
       "independent: each sequence's GEMMs alone, so an answer does not depend on the batch "
       "(bit for bit); batched: one GEMM over the batch's rows",
       {"independent", "batched"}},
      {"log_json", K::flag, "false", "request log lines as JSON objects (JSONL) on stderr"},
  };
}

void print_help(const Options& o) {
  std::printf(
      "usage: tune serve --model DIR [--adapter NAME=DIR ...] [--host 127.0.0.1] [--port 8080]\n\n"
      "An OpenAI-compatible HTTP server: GET /v1/models, POST /v1/chat/completions and\n"
      "/v1/completions (stream: true for server-sent events), GET /health. A request's\n"
      "\"model\" picks the base model (its --served-model-name) or an adapter by NAME; all\n"
      "requests share one continuously batched decode loop. SIGTERM or Ctrl-C stops accepting\n"
      "connections, finishes the requests in flight, and exits 0.\n\n"
      "options:\n%s  -h, --help                        this help\n",
      o.help_text(true).c_str());
}

// --adapter values (repeatable), removed from args.
std::vector<std::string> take_adapters(Args& args) {
  std::vector<std::string> out;
  Args rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--adapter") {
      out.push_back(option_value(args, i, "NAME=DIR (a PEFT adapter folder served as NAME)"));
    } else if (args[i].rfind("--adapter=", 0) == 0) {
      out.push_back(args[i].substr(10));
    } else {
      rest.push_back(args[i]);
    }
  }
  args = rest;
  return out;
}

// SIGTERM/SIGINT may arrive on any thread (the CUDA runtime starts threads of its own, before
// a signal mask could be set), so the handler only writes the signal to a pipe that one thread
// waits on (async-signal-safe).
int g_signal_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int sig) {
  const char c = static_cast<char>(sig);
  if (write(g_signal_pipe[1], &c, 1) < 0) {
  }
}

}  // namespace

int serve_command(const Args& raw_args) {
  Options o(serve_specs());
  if (Options::wants_help(raw_args)) {
    print_help(o);
    return 0;
  }
  Args args = raw_args;
  const std::vector<std::string> adapters = take_adapters(args);
  const std::vector<std::string> positionals = o.parse_args(args);
  TUNE_CHECK(positionals.empty(), "unexpected argument \"",
             positionals.empty() ? "" : positionals[0], "\"; see `tune serve --help`");
  TUNE_CHECK(!o.text("model").empty(), "--model DIR is required; see `tune serve --help`");
  for (const char* key :
       {"max_batch", "max_context", "max_tokens", "max_n", "max_body", "http_threads"})
    TUNE_CHECK(o.integer(key) >= 1, "--", key, " must be >= 1, got ", o.integer(key));
  TUNE_CHECK(o.integer("port") >= 0 && o.integer("port") <= 65535,
             "--port must be in [0, 65535], got ", o.integer("port"));

  TUNE_CHECK(pipe(g_signal_pipe) == 0, "tune serve: could not make a pipe for signals");
  struct sigaction stop_action = {};
  stop_action.sa_handler = on_stop_signal;
  sigemptyset(&stop_action.sa_mask);
  stop_action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &stop_action, nullptr);
  sigaction(SIGTERM, &stop_action, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that went away is a failed write, not a dead server

  const infer::Placement place = infer::placement(o);
  infer::LoadedModel loaded = infer::load_for_generation(o.text("model"), "", o.text("tokenizer"),
                                                         place.device, place.dtype);
  nn::AdapterBank bank;
  server::ServerOptions so;
  so.model_name = o.text("served_model_name");
  if (so.model_name.empty())
    so.model_name = std::filesystem::path(o.text("model")).lexically_normal().filename().string();
  if (so.model_name.empty()) so.model_name = "model";
  for (const std::string& a : adapters) {
    const size_t eq = a.find('=');
    TUNE_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < a.size(), "--adapter ", a,
               ": expected NAME=DIR (the model name clients use, and a PEFT adapter folder)");
    const std::string name = a.substr(0, eq), dir = a.substr(eq + 1);
    TUNE_CHECK(name != so.model_name, "--adapter ", a, ": the name ", name,
               " is the base model's; choose another");
    infer::load_adapter_into_bank(bank, name, dir, *loaded.model);
  }
  so.host = o.text("host");
  so.port = static_cast<int>(o.integer("port"));
  so.max_tokens_limit = o.integer("max_tokens");
  so.max_n = o.integer("max_n");
  so.max_body_bytes = static_cast<size_t>(o.integer("max_body"));
  so.http_threads = static_cast<int>(o.integer("http_threads"));
  so.log_json = o.flag("log_json");

  infer::BatchEngineOptions eo;
  eo.max_batch = o.integer("max_batch");
  eo.max_context = o.integer("max_context");
  eo.rows = o.text("row_matmul") == "batched" ? nn::RowMatmul::batched : nn::RowMatmul::independent;
  infer::BatchEngine engine(loaded, bank, eo);
  so.max_context = engine.max_sequence_positions();
  server::OpenAIServer server(loaded, bank, engine, so);
  const int port = server.bind();

  std::thread waiter([&] {
    char sig = 0;
    while (read(g_signal_pipe[0], &sig, 1) < 0) {
    }
    std::fprintf(stderr, "tune serve: %s: no new connections; finishing requests in flight\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    server.stop();
  });
  waiter.detach();
  std::fprintf(stderr, "tune serve: %s (%d adapter%s) on http://%s:%d\n", so.model_name.c_str(),
               bank.size(), bank.size() == 1 ? "" : "s", so.host.c_str(), port);
  std::fflush(stderr);
  server.listen();
  engine.shutdown();
  const infer::BatchEngineStats s = engine.stats();
  std::fprintf(stderr, "tune serve: stopped after %lld steps, %lld tokens generated\n",
               static_cast<long long>(s.steps), static_cast<long long>(s.generated_tokens));
  return 0;
}

}  // namespace tune::cli
