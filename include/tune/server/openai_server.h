// An OpenAI-compatible HTTP server (cpp-httplib) in front of a BatchEngine: GET /v1/models,
// POST /v1/chat/completions and /v1/completions (streamed as server-sent events or whole),
// GET /health. Requests pick the base model or a LoRA adapter by their "model" field; all of
// them share the engine's continuous batch. Errors are OpenAI's error object
// {"error": {"message", "type", "param", "code"}} with its status codes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tune/infer/batch_engine.h"

namespace tune::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                  // 0: any free port (see OpenAIServer::bind)
  std::string model_name;           // the base model's id in /v1/models and "model"
  size_t max_body_bytes = 1 << 20;  // larger request bodies get 413
  int64_t max_tokens_limit = 4096;  // the most max_tokens a request may ask for
  // The most positions (prompt + completion) of one request: the model's context, or less where
  // the engine keeps fixed KV slots (BatchEngine::max_sequence_positions). 0: the model's.
  int64_t max_context = 0;
  int64_t max_n = 16;      // the most choices (n) per request
  int http_threads = 128;  // connections served at once (streams hold one each)
  bool log_json = false;   // request log lines as JSON objects (JSONL)
};

class OpenAIServer {
 public:
  // `model`, `bank` and `engine` must outlive the server.
  OpenAIServer(infer::LoadedModel& model, const nn::AdapterBank& bank, infer::BatchEngine& engine,
               ServerOptions options);
  ~OpenAIServer();
  // Binds the listening socket; returns the port (the one chosen when options.port is 0).
  int bind();
  // Serves until stop(): blocks. In-flight requests finish before it returns.
  void listen();
  // Stops accepting connections; listen() returns once in-flight requests are done.
  // Thread-safe.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tune::server
