// An OpenAI request body -> what the engine runs: parsing and validation, each failure an
// ApiError with OpenAI's status, type, param and code.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "tune/infer/batch_engine.h"
#include "tune/server/openai_server.h"

namespace tune::server {

// An error as OpenAI reports it: {"error": {"message", "type", "param", "code"}}.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string type = "invalid_request_error",
           std::string param = "", std::string code = "")
      : std::runtime_error(message),
        status(status),
        type(std::move(type)),
        param(std::move(param)),
        code(std::move(code)) {}
  nlohmann::json body() const;

  int status;
  std::string type, param, code;
};

enum class Endpoint : uint8_t { chat, completion };

struct ParsedRequest {
  Endpoint endpoint = Endpoint::chat;
  std::string model;  // the id the client asked for
  int adapter = 0;
  std::vector<int64_t> prompt;
  int64_t n = 1;
  bool stream = false, include_usage = false;
  int top_logprobs = -1;  // -1: no logprobs
  infer::GenerateOptions options;
};

// What a request may use: the model, its adapters by name, the server's limits.
struct ServingContext {
  const infer::LoadedModel* model = nullptr;
  const nn::AdapterBank* bank = nullptr;
  const ServerOptions* options = nullptr;
};

ParsedRequest parse_request(Endpoint endpoint, const std::string& body, const ServingContext& c);

}  // namespace tune::server
