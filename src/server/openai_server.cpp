// The HTTP side: routes, OpenAI's response and chunk objects, server-sent events, the request log.
// Each request runs on one of httplib's worker threads: it parses and validates the body, submits
// n engine requests (choice i samples with seed + i), then either waits for all of them or
// streams their tokens as they come. A stream whose client is gone (a failed write) cancels its
// engine requests, which frees their batch slots. One log line per request comes from httplib's
// logger, completed with what the handler recorded in a thread_local on the same worker thread.
#include "tune/server/openai_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>

#include "server/openai_request.h"
#include "tune/core/error.h"
#include "tune/infer/text_stream.h"

namespace tune::server {

using json = nlohmann::json;

namespace {

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string random_id(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += kHex[rng() % 16];
  return id;
}

int64_t unix_time() {
  return static_cast<int64_t>(std::time(nullptr));
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump(e.body()), "application/json");
}

// What the handler knew about a request, for its log line (same worker thread as the logger).
struct RequestLog {
  std::string model, error;
  int64_t prompt_tokens = -1, completion_tokens = 0, n = 0;
  bool stream = false;
  std::string finish;
};
thread_local RequestLog t_log;

}  // namespace

struct OpenAIServer::Impl {
  infer::LoadedModel* model;
  const nn::AdapterBank* bank;
  infer::BatchEngine* engine;
  ServerOptions options;
  ServingContext serving;
  httplib::Server http;
  int64_t started = unix_time();
  std::atomic<bool> stopping{false};
  std::atomic<int> listen_fd{-1};

  Impl(infer::LoadedModel& m, const nn::AdapterBank& b, infer::BatchEngine& e, ServerOptions o)
      : model(&m), bank(&b), engine(&e), options(std::move(o)) {
    serving = {model, bank, &options};
    routes();
  }

  void routes();
  void completions(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  json models_list() const;
  void log(const httplib::Request& req, const httplib::Response& res);

  // One token's logprobs in chat's form {token, logprob, bytes, top_logprobs}.
  std::string token_text(int64_t id) const {
    const int32_t one = static_cast<int32_t>(id);
    return model->tokenizer->decode(std::span<const int32_t>(&one, 1));
  }
  json chat_logprob(const infer::TokenEvent& e) const {
    auto entry = [&](const infer::TokenLogprob& t) {
      const std::string s = token_text(t.id);
      json bytes = json::array();
      for (unsigned char ch : s) bytes.push_back(static_cast<int>(ch));
      return json{{"token", s}, {"logprob", t.logprob}, {"bytes", bytes}};
    };
    json out = entry(e.chosen);
    out["top_logprobs"] = json::array();
    for (const auto& t : e.top) out["top_logprobs"].push_back(entry(t));
    return out;
  }
};

json OpenAIServer::Impl::models_list() const {
  json data = json::array();
  data.push_back({{"id", options.model_name},
                  {"object", "model"},
                  {"created", started},
                  {"owned_by", "tune"},
                  {"root", options.model_name},
                  {"parent", nullptr}});
  for (int i = 1; i <= bank->size(); ++i)
    data.push_back({{"id", bank->name(i)},
                    {"object", "model"},
                    {"created", started},
                    {"owned_by", "tune"},
                    {"root", bank->name(i)},
                    {"parent", options.model_name}});
  return {{"object", "list"}, {"data", data}};
}

void OpenAIServer::Impl::routes() {
  http.new_task_queue = [n = options.http_threads] {
    return new httplib::ThreadPool(static_cast<size_t>(n));
  };
  // The listening socket, captured for a graceful stop: httplib's stop() also cuts off the
  // streams in flight, while shutting the listening socket down makes accept() fail, after which
  // httplib stops accepting and waits for its workers (the requests in flight) to finish.
  http.set_socket_options([this](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd = sock;
  });
  http.set_payload_max_length(options.max_body_bytes);
  http.set_keep_alive_timeout(2);  // idle keep-alive connections hold a worker; keep it short
  http.set_read_timeout(30);
  http.set_write_timeout(30);

  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const infer::BatchEngineStats s = engine->stats();
    res.status = stopping ? 503 : 200;
    res.set_content(dump({{"status", stopping ? "shutting_down" : "ok"},
                          {"active", s.active},
                          {"waiting", s.waiting},
                          {"steps", s.steps},
                          {"generated_tokens", s.generated_tokens},
                          {"cancelled", s.cancelled},
                          {"largest_batch", s.largest_batch}}),
                    "application/json");
  });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(dump(models_list()), "application/json");
  });
  http.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
    for (const json& m : models_list()["data"]) {
      if (m["id"] == req.matches[1].str()) {
        res.set_content(dump(m), "application/json");
        return;
      }
    }
    send_error(res, ApiError(404, str("The model `", req.matches[1].str(), "` does not exist"),
                             "invalid_request_error", "model", "model_not_found"));
  });
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    completions(req, res, Endpoint::chat);
  });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    completions(req, res, Endpoint::completion);
  });

  // A known path with the wrong method is 405; anything else 404 (the error handler words it).
  auto not_allowed = [](const httplib::Request& req, httplib::Response& res) {
    const bool post = req.path == "/v1/chat/completions" || req.path == "/v1/completions";
    const bool get = req.path == "/v1/models" || req.path == "/health";
    if (!post && !get) {
      res.status = 404;
      return;
    }
    res.set_header("Allow", post ? "POST" : "GET");
    send_error(res, ApiError(405,
                             str("Method ", req.method, " is not allowed on ", req.path, "; use ",
                                 post ? "POST" : "GET"),
                             "invalid_request_error", "", "method_not_allowed"));
  };
  http.Get("/v1/chat/completions", not_allowed);
  http.Get("/v1/completions", not_allowed);
  http.Post("/v1/models", not_allowed);
  http.Post("/health", not_allowed);
  http.Put(".*", not_allowed);
  http.Delete(".*", not_allowed);
  http.Patch(".*", not_allowed);

  // A declared body over the limit is refused before it is read (httplib would hand the
  // handler an empty body); the connection closes, since the body is left unread.
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const std::string length = req.get_header_value("Content-Length");
    if (length.empty() || length.size() > 19 ||
        length.find_first_not_of("0123456789") != std::string::npos ||
        std::stoull(length) <= options.max_body_bytes)
      return httplib::Server::HandlerResponse::Unhandled;
    t_log.error = "request body too large";
    res.set_header("Connection", "close");
    send_error(res, ApiError(413,
                             str("The request body (", length,
                                 " bytes) is larger than this "
                                 "server accepts (",
                                 options.max_body_bytes, " bytes; see tune serve --max-body)"),
                             "invalid_request_error", "", "request_too_large"));
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      send_error(res, ApiError(413,
                               str("The request body is larger than this server accepts (",
                                   options.max_body_bytes, " bytes; see tune serve --max-body)"),
                               "invalid_request_error", "", "request_too_large"));
    } else if (res.status == 404) {
      send_error(res, ApiError(404,
                               str("Unknown request URL: ", req.method, " ", req.path,
                                   ". Please check the URL for typos."),
                               "invalid_request_error", "", "unknown_url"));
    } else {
      send_error(res,
                 ApiError(res.status, str("HTTP error ", res.status), "invalid_request_error"));
    }
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                                std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    t_log.error = what;
    send_error(res, ApiError(500, "The server had an error while processing your request: " + what,
                             "server_error"));
  });
  http.set_logger(
      [this](const httplib::Request& req, const httplib::Response& res) { log(req, res); });
}

void OpenAIServer::Impl::log(const httplib::Request& req, const httplib::Response& res) {
  RequestLog l = std::move(t_log);
  t_log = RequestLog();
  char ts[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  if (options.log_json) {
    json j = {{"time", ts},
              {"remote", req.remote_addr},
              {"method", req.method},
              {"path", req.path},
              {"status", res.status}};
    if (!l.model.empty()) {
      j["model"] = l.model;
      j["n"] = l.n;
      j["stream"] = l.stream;
      j["prompt_tokens"] = l.prompt_tokens;
      j["completion_tokens"] = l.completion_tokens;
      j["finish_reason"] = l.finish;
    }
    if (!l.error.empty()) j["error"] = l.error;
    std::fprintf(stderr, "%s\n", dump(j).c_str());
  } else {
    std::string extra;
    if (!l.model.empty())
      extra = str(" model=", l.model, " n=", l.n, l.stream ? " stream" : "",
                  " prompt_tokens=", l.prompt_tokens, " completion_tokens=", l.completion_tokens,
                  " finish=", l.finish);
    if (!l.error.empty()) extra += " error=\"" + l.error + "\"";
    std::fprintf(stderr, "%s %s %s %s %d%s\n", ts, req.remote_addr.c_str(), req.method.c_str(),
                 req.path.c_str(), res.status, extra.c_str());
  }
  std::fflush(stderr);
}

namespace {

// The state of one streamed response, shared by the content provider and its releaser.
struct StreamState {
  ParsedRequest request;
  std::vector<std::shared_ptr<infer::RequestStream>> streams;
  std::vector<bool> finished;
  std::vector<int64_t> text_offset;  // completions' logprobs text_offset, per choice
  std::string id;
  int64_t created = 0;
  bool started = false;
  void cancel() {
    for (auto& s : streams) s->cancel();
  }
};

}  // namespace

void OpenAIServer::Impl::completions(const httplib::Request& req, httplib::Response& res,
                                     Endpoint endpoint) {
  const bool chat = endpoint == Endpoint::chat;
  ParsedRequest r;
  try {
    if (stopping) throw ApiError(503, "The server is shutting down", "server_error");
    r = parse_request(endpoint, req.body, serving);
  } catch (const ApiError& e) {
    t_log.error = e.what();
    send_error(res, e);
    return;
  }
  t_log.model = r.model;
  t_log.n = r.n;
  t_log.stream = r.stream;
  t_log.prompt_tokens = static_cast<int64_t>(r.prompt.size());

  auto state = std::make_shared<StreamState>();
  state->id = random_id(chat ? "chatcmpl-" : "cmpl-");
  state->created = unix_time();
  try {
    for (int64_t i = 0; i < r.n; ++i) {
      infer::BatchRequest b;
      b.prompt = r.prompt;
      b.adapter = r.adapter;
      b.options = r.options;
      b.options.sampling.seed += static_cast<uint64_t>(i);
      b.top_logprobs = r.top_logprobs;
      state->streams.push_back(engine->submit(std::move(b)));
    }
  } catch (const Error& e) {
    state->cancel();
    t_log.error = e.what();
    send_error(res, ApiError(503, e.what(), "server_error"));
    return;
  }
  state->finished.assign(static_cast<size_t>(r.n), false);
  state->text_offset.assign(static_cast<size_t>(r.n), 0);
  state->request = std::move(r);
  const ParsedRequest& q = state->request;
  const std::string object = chat ? "chat.completion" : "text_completion";

  auto completion_logprobs = [this](const std::vector<infer::TokenEvent>& events, int64_t& offset) {
    json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
    for (const auto& e : events) {
      if (e.id < 0) continue;
      tokens.push_back(token_text(e.id));
      lps.push_back(e.chosen.logprob);
      json top = json::object();
      for (const auto& t : e.top) top[token_text(t.id)] = t.logprob;
      tops.push_back(top);
      offsets.push_back(offset);
      offset += static_cast<int64_t>(token_text(e.id).size());
    }
    return json{{"tokens", tokens},
                {"token_logprobs", lps},
                {"top_logprobs", tops},
                {"text_offset", offsets}};
  };

  if (!q.stream) {
    // The whole answer, sent once every choice is done. Until then the provider waits, and every
    // tenth of a second of waiting writes a space (JSON allows leading whitespace): a write that
    // fails means the client went away, and the releaser frees its batch slots. (The status is sent
    // with the first bytes, so a generation that fails later reports its error in a 200.)
    auto events =
        std::make_shared<std::vector<std::vector<infer::TokenEvent>>>(state->streams.size());
    auto last_write =
        std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
    res.set_chunked_content_provider(
        "application/json",
        [this, state, events, last_write, chat, object, completion_logprobs](
            size_t, httplib::DataSink& sink) -> bool {
          const ParsedRequest& q = state->request;
          for (size_t i = 0; i < state->streams.size(); ++i) {
            if (state->finished[i]) continue;
            if (!state->streams[i]->wait((*events)[i], std::chrono::milliseconds(50))) {
              state->finished[i] = true;
            } else {
              break;  // this choice is still running
            }
          }
          if (std::find(state->finished.begin(), state->finished.end(), false) !=
              state->finished.end()) {
            const auto now = std::chrono::steady_clock::now();
            if (now - *last_write > std::chrono::milliseconds(100)) {
              *last_write = now;
              if (!sink.write(" ", 1)) return false;
            }
            return true;
          }
          json choices = json::array();
          int64_t completion_tokens = 0;
          std::string error;
          for (size_t i = 0; i < state->streams.size(); ++i) {
            const infer::RequestStream& s = *state->streams[i];
            if (!s.error().empty()) error = s.error();
            completion_tokens += s.completion_tokens();
            json choice = {{"index", i}, {"finish_reason", infer::finish_reason_name(s.finish())}};
            json logprobs = nullptr;
            if (q.top_logprobs >= 0) {
              if (chat) {
                logprobs = {{"content", json::array()}, {"refusal", nullptr}};
                for (const auto& e : (*events)[i])
                  if (e.id >= 0) logprobs["content"].push_back(chat_logprob(e));
              } else {
                int64_t offset = 0;
                logprobs = completion_logprobs((*events)[i], offset);
              }
            }
            if (chat)
              choice["message"] = {
                  {"role", "assistant"}, {"content", s.text()}, {"refusal", nullptr}};
            else
              choice["text"] = s.text();
            choice["logprobs"] = logprobs;
            choices.push_back(choice);
            t_log.finish = infer::finish_reason_name(s.finish());
          }
          t_log.completion_tokens = completion_tokens;
          const auto prompt_tokens = static_cast<int64_t>(q.prompt.size());
          json body = {{"id", state->id},
                       {"object", object},
                       {"created", state->created},
                       {"model", q.model},
                       {"system_fingerprint", nullptr},
                       {"choices", choices},
                       {"usage",
                        {{"prompt_tokens", prompt_tokens},
                         {"completion_tokens", completion_tokens},
                         {"total_tokens", prompt_tokens + completion_tokens}}}};
          if (!error.empty()) {
            t_log.error = error;
            body = ApiError(500, "generation failed: " + error, "server_error").body();
          }
          const std::string text = dump(body);
          if (!sink.write(text.data(), text.size())) return false;
          sink.done();
          return true;
        },
        [state](bool success) {
          if (!success) state->cancel();
        });
    return;
  }

  // Streaming: server-sent events, one chunk per token (or text piece), one closing chunk per
  // choice, the usage chunk when asked for, then [DONE].
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  const std::string chunk_object = chat ? "chat.completion.chunk" : "text_completion";
  auto chunk = [state, chunk_object](json choice) {
    json c = {{"id", state->id},
              {"object", chunk_object},
              {"created", state->created},
              {"model", state->request.model},
              {"system_fingerprint", nullptr},
              {"choices", json::array({choice})}};
    if (state->request.include_usage) c["usage"] = nullptr;
    return c;
  };
  auto send = [](httplib::DataSink& sink, const json& j) {
    const std::string s = "data: " + dump(j) + "\n\n";
    return sink.write(s.data(), s.size());
  };
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, state, chunk, send, chat, completion_logprobs](size_t,
                                                            httplib::DataSink& sink) -> bool {
        const ParsedRequest& q = state->request;
        if (!state->started) {
          state->started = true;
          if (chat) {
            for (size_t i = 0; i < state->streams.size(); ++i) {
              json delta = {{"role", "assistant"}, {"content", ""}};
              if (!send(sink, chunk({{"index", i},
                                     {"delta", delta},
                                     {"logprobs", nullptr},
                                     {"finish_reason", nullptr}})))
                return false;
            }
          }
        }
        bool progressed = false;
        for (size_t i = 0; i < state->streams.size(); ++i) {
          if (state->finished[i]) continue;
          infer::RequestStream& s = *state->streams[i];
          std::vector<infer::TokenEvent> events;
          // Wait on the first unfinished choice only; the others are polled.
          const bool more = s.wait(events, std::chrono::milliseconds(progressed ? 0 : 50));
          for (const auto& e : events) {
            const bool with_lp = q.top_logprobs >= 0 && e.id >= 0;
            if (e.text.empty() && !with_lp) continue;
            json choice = {{"index", i}, {"finish_reason", nullptr}};
            if (chat) {
              choice["delta"] = {{"content", e.text}};
              choice["logprobs"] =
                  with_lp ? json{{"content", json::array({chat_logprob(e)})}, {"refusal", nullptr}}
                          : json(nullptr);
            } else {
              choice["text"] = e.text;
              choice["logprobs"] =
                  with_lp ? completion_logprobs({e}, state->text_offset[i]) : json(nullptr);
            }
            if (!send(sink, chunk(choice))) return false;
          }
          if (!events.empty()) progressed = true;
          if (!more) {
            state->finished[i] = true;
            progressed = true;
            if (!s.error().empty() && s.error() != "cancelled") {
              t_log.error = s.error();
              if (!send(sink,
                        ApiError(500, "generation failed: " + s.error(), "server_error").body()))
                return false;
            }
            json choice = {{"index", i},
                           {"logprobs", nullptr},
                           {"finish_reason", infer::finish_reason_name(s.finish())}};
            if (chat)
              choice["delta"] = json::object();
            else
              choice["text"] = "";
            if (!send(sink, chunk(choice))) return false;
            t_log.finish = infer::finish_reason_name(s.finish());
          }
        }
        if (std::find(state->finished.begin(), state->finished.end(), false) !=
            state->finished.end())
          return true;
        int64_t completion_tokens = 0;
        for (auto& s : state->streams) completion_tokens += s->completion_tokens();
        t_log.completion_tokens = completion_tokens;
        if (q.include_usage) {
          const auto prompt_tokens = static_cast<int64_t>(q.prompt.size());
          json c = chunk(json::object());
          c["choices"] = json::array();
          c["usage"] = {{"prompt_tokens", prompt_tokens},
                        {"completion_tokens", completion_tokens},
                        {"total_tokens", prompt_tokens + completion_tokens}};
          if (!send(sink, c)) return false;
        }
        static const std::string kDone = "data: [DONE]\n\n";
        if (!sink.write(kDone.data(), kDone.size())) return false;
        sink.done();
        return true;
      },
      [state](bool success) {
        // The client went away (or a write failed): free the batch slots.
        if (!success) state->cancel();
      });
}

OpenAIServer::OpenAIServer(infer::LoadedModel& model, const nn::AdapterBank& bank,
                           infer::BatchEngine& engine, ServerOptions options)
    : impl_(std::make_unique<Impl>(model, bank, engine, std::move(options))) {}

OpenAIServer::~OpenAIServer() = default;

int OpenAIServer::bind() {
  const ServerOptions& o = impl_->options;
  int port = o.port;
  if (o.port == 0) {
    port = impl_->http.bind_to_any_port(o.host);
    TUNE_CHECK(port > 0, "tune serve: could not listen on ", o.host, " (any port)");
  } else {
    TUNE_CHECK(impl_->http.bind_to_port(o.host, o.port), "tune serve: could not listen on ", o.host,
               ":", o.port, " (in use? pass --port N, or 0 for any free port)");
  }
  // httplib listens with a backlog of 5: a burst of clients would wait for SYN retries (1 s).
  // listen() again on the bound socket raises it.
  if (impl_->listen_fd >= 0) ::listen(impl_->listen_fd, 1024);
  return port;
}

void OpenAIServer::listen() {
  impl_->http.listen_after_bind();
}

void OpenAIServer::stop() {
  impl_->stopping = true;
  const int fd = impl_->listen_fd.exchange(-1);
  if (fd >= 0)
    ::shutdown(fd, SHUT_RDWR);
  else
    impl_->http.stop();
}

}  // namespace tune::server
