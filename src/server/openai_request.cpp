// Request validation follows OpenAI's API reference: a wrong type or range is a 400
// invalid_request_error naming the parameter; an unknown model is a 404 model_not_found; a prompt
// plus max_tokens past the model's context is a 400 context_length_exceeded. Sampling follows
// Hugging Face's semantics through the shared sampler: temperature 0 is greedy; without a
// temperature the model's generation_config.json decides, and when it says nothing, OpenAI's
// default (temperature 1, sampled) applies.
#include "server/openai_request.h"

#include <algorithm>
#include <random>

#include "tune/core/error.h"

namespace tune::server {

using json = nlohmann::json;

json ApiError::body() const {
  json e = {{"message", what()}, {"type", type}};
  e["param"] = param.empty() ? json(nullptr) : json(param);
  e["code"] = code.empty() ? json(nullptr) : json(code);
  return {{"error", e}};
}

namespace {

ApiError invalid(const std::string& param, const std::string& message) {
  return ApiError(400, message, "invalid_request_error", param);
}

bool present(const json& body, const char* key) {
  return body.contains(key) && !body[key].is_null();
}

double number_in(const json& body, const char* key, double lo, double hi) {
  const json& v = body[key];
  if (!v.is_number()) throw invalid(key, str("'", key, "' must be a number, got ", v.dump()));
  const double x = v.get<double>();
  if (x < lo || x > hi)
    throw invalid(key, str("'", key, "' must be between ", lo, " and ", hi, ", got ", x));
  return x;
}

int64_t integer_in(const json& body, const char* key, int64_t lo, int64_t hi) {
  const json& v = body[key];
  if (!v.is_number_integer())
    throw invalid(key, str("'", key, "' must be an integer, got ", v.dump()));
  const auto x = v.get<int64_t>();
  if (x < lo || x > hi)
    throw invalid(key, str("'", key, "' must be between ", lo, " and ", hi, ", got ", x));
  return x;
}

bool boolean(const json& body, const char* key) {
  if (!body[key].is_boolean())
    throw invalid(key, str("'", key, "' must be a boolean, got ", body[key].dump()));
  return body[key].get<bool>();
}

// Chat messages as the chat template wants them: [{role, content: string}].
nlohmann::ordered_json chat_messages(const json& body) {
  if (!present(body, "messages")) throw invalid("messages", "'messages' is a required property");
  const json& m = body["messages"];
  if (!m.is_array() || m.empty())
    throw invalid("messages", "'messages' must be a non-empty array of {role, content} objects");
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (size_t i = 0; i < m.size(); ++i) {
    const std::string where = str("messages[", i, "]");
    if (!m[i].is_object() || !m[i].contains("role") || !m[i]["role"].is_string())
      throw invalid(where, str("'", where, "' must be an object with a string 'role'"));
    const json& c = m[i].contains("content") ? m[i]["content"] : json(nullptr);
    std::string text;
    if (c.is_string()) {
      text = c.get<std::string>();
    } else if (c.is_array()) {
      // Content parts: only text is understood by a text model.
      for (const json& part : c) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string())
          throw invalid(where + ".content",
                        "only text content parts ({\"type\": \"text\", \"text\": ...}) are "
                        "supported");
        text += part["text"].get<std::string>();
      }
    } else if (!c.is_null()) {
      throw invalid(where + ".content", str("'", where,
                                            ".content' must be a string or an array "
                                            "of text parts"));
    }
    out.push_back({{"role", m[i]["role"].get<std::string>()}, {"content", text}});
  }
  return out;
}

// The completion prompt: a string, or a list holding one string or one list of token ids.
std::vector<int64_t> completion_prompt(const json& body, const infer::LoadedModel& model) {
  if (!present(body, "prompt")) throw invalid("prompt", "'prompt' is a required property");
  json p = body["prompt"];
  if (p.is_array() && p.size() == 1 && (p[0].is_string() || p[0].is_array())) p = p[0];
  if (p.is_string()) {
    std::vector<int64_t> ids = infer::encode_text(model, p.get<std::string>());
    if (ids.empty()) throw invalid("prompt", "'prompt' encodes to no tokens");
    return ids;
  }
  if (p.is_array() && !p.empty()) {
    std::vector<int64_t> ids;
    const int64_t vocab = model.model->config().arch.vocab_size;
    for (const json& t : p) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= vocab)
        throw invalid("prompt", str("'prompt' token ids must be integers in [0, ", vocab, "), got ",
                                    t.dump()));
      ids.push_back(t.get<int64_t>());
    }
    return ids;
  }
  throw invalid("prompt",
                "'prompt' must be a string, a list of token ids, or a list holding one of "
                "those (one prompt per request)");
}

void reject_unsupported(const json& body) {
  for (const char* key : {"presence_penalty", "frequency_penalty"})
    if (present(body, key) && (!body[key].is_number() || body[key].get<double>() != 0.0))
      throw invalid(key, str("'", key, "' is not supported by this server (only 0)"));
  for (const char* key : {"logit_bias", "tools", "functions", "suffix"})
    if (present(body, key) && !body[key].empty())
      throw invalid(key, str("'", key, "' is not supported by this server"));
  if (present(body, "echo") && body["echo"] != false)
    throw invalid("echo", "'echo' is not supported by this server");
}

}  // namespace

ParsedRequest parse_request(Endpoint endpoint, const std::string& text, const ServingContext& c) {
  json body;
  try {
    body = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ApiError(400, str("We could not parse the JSON body of your request. (HINT: This likely "
                            "means you aren't using your HTTP library correctly. The OpenAI API "
                            "expects a JSON payload.) ",
                            e.what()));
  }
  if (!body.is_object()) throw ApiError(400, "The request body must be a JSON object");

  ParsedRequest r;
  r.endpoint = endpoint;
  if (!present(body, "model")) throw invalid("model", "'model' is a required property");
  if (!body["model"].is_string()) throw invalid("model", "'model' must be a string");
  r.model = body["model"].get<std::string>();
  if (r.model != c.options->model_name) {
    r.adapter = c.bank->find(r.model);
    if (r.adapter < 0)
      throw ApiError(404,
                     str("The model `", r.model,
                         "` does not exist or you do not have access "
                         "to it. GET /v1/models lists the models this server has."),
                     "invalid_request_error", "model", "model_not_found");
  }
  reject_unsupported(body);

  const char* prompt_param = endpoint == Endpoint::chat ? "messages" : "prompt";
  try {
    r.prompt = endpoint == Endpoint::chat ? infer::encode_chat(*c.model, chat_messages(body))
                                          : completion_prompt(body, *c.model);
  } catch (const Error& e) {
    throw invalid(prompt_param, e.what());
  }

  if (present(body, "n")) r.n = integer_in(body, "n", 1, c.options->max_n);
  if (present(body, "best_of") && integer_in(body, "best_of", 1, c.options->max_n) != r.n)
    throw invalid("best_of", "'best_of' must equal 'n' (no server-side ranking)");
  if (present(body, "stream")) r.stream = boolean(body, "stream");
  if (present(body, "stream_options")) {
    const json& so = body["stream_options"];
    if (!so.is_object()) throw invalid("stream_options", "'stream_options' must be an object");
    if (!r.stream)
      throw invalid("stream_options", "'stream_options' is only allowed when 'stream' is true");
    if (present(so, "include_usage")) r.include_usage = boolean(so, "include_usage");
  }

  // Log-probabilities: chat has logprobs (bool) + top_logprobs; completions logprobs (int).
  if (endpoint == Endpoint::chat) {
    const bool lp = present(body, "logprobs") && boolean(body, "logprobs");
    if (present(body, "top_logprobs")) {
      const int64_t k = integer_in(body, "top_logprobs", 0, 20);
      if (!lp) throw invalid("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
      r.top_logprobs = static_cast<int>(k);
    } else if (lp) {
      r.top_logprobs = 0;
    }
  } else if (present(body, "logprobs")) {
    r.top_logprobs = static_cast<int>(integer_in(body, "logprobs", 0, 5));
  }

  // Sampling.
  infer::GenerateOptions& g = r.options;
  const infer::LoadedModel& m = *c.model;
  g.sampling = infer::default_sampling(m.generation);
  if (!m.generation.do_sample.has_value()) g.sampling.do_sample = true;  // OpenAI: temperature 1
  if (present(body, "temperature")) {
    g.sampling.temperature = number_in(body, "temperature", 0.0, 2.0);
    g.sampling.do_sample = true;
  }
  if (g.sampling.temperature == 0) g.sampling.do_sample = false;
  if (present(body, "top_p")) {
    g.sampling.top_p = number_in(body, "top_p", 0.0, 1.0);
    if (g.sampling.top_p == 0) throw invalid("top_p", "'top_p' must be greater than 0");
  }
  if (present(body, "top_k")) {  // vLLM's extension; -1 and 0 are off
    const int64_t k = integer_in(body, "top_k", -1, 1 << 30);
    g.sampling.top_k = k < 0 ? 0 : k;
  }
  if (present(body, "min_p")) g.sampling.min_p = number_in(body, "min_p", 0.0, 1.0);
  if (present(body, "repetition_penalty"))
    g.sampling.repetition_penalty = number_in(body, "repetition_penalty", 1e-6, 100.0);
  if (present(body, "seed")) {
    const json& s = body["seed"];
    if (!s.is_number_integer()) throw invalid("seed", "'seed' must be an integer");
    g.sampling.seed =
        s.is_number_unsigned() ? s.get<uint64_t>() : static_cast<uint64_t>(s.get<int64_t>());
  } else {
    g.sampling.seed =
        (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  }
  if (present(body, "stop")) {
    const json& s = body["stop"];
    if (s.is_string()) {
      g.stop.push_back(s.get<std::string>());
    } else if (s.is_array() && s.size() <= 4) {
      for (const json& x : s) {
        if (!x.is_string()) throw invalid("stop", "'stop' must be a string or a list of strings");
        g.stop.push_back(x.get<std::string>());
      }
    } else {
      throw invalid("stop", "'stop' must be a string or a list of at most 4 strings");
    }
    for (const std::string& x : g.stop)
      if (x.empty()) throw invalid("stop", "'stop' strings must not be empty");
  }
  g.eos_token_ids = m.eos_token_ids;

  // Token limits: max_completion_tokens (chat's newer name) or max_tokens.
  int64_t context = m.model->config().arch.max_positions;
  if (c.options->max_context > 0) context = std::min(context, c.options->max_context);
  const auto prompt_len = static_cast<int64_t>(r.prompt.size());
  const char* limit_key = present(body, "max_completion_tokens") ? "max_completion_tokens"
                          : present(body, "max_tokens")          ? "max_tokens"
                                                                 : nullptr;
  if (limit_key) {
    g.max_new_tokens = integer_in(body, limit_key, 1, c.options->max_tokens_limit);
    if (prompt_len + g.max_new_tokens > context)
      throw ApiError(400,
                     str("This model's maximum context length is ", context,
                         " tokens. However, you requested ", prompt_len + g.max_new_tokens,
                         " tokens (", prompt_len, " in the ", prompt_param, ", ", g.max_new_tokens,
                         " in the completion). Please reduce the length of the ", prompt_param,
                         " or completion."),
                     "invalid_request_error", prompt_param, "context_length_exceeded");
  } else {
    if (prompt_len >= context)
      throw ApiError(400,
                     str("This model's maximum context length is ", context,
                         " tokens. However, your ", prompt_param, " resulted in ", prompt_len,
                         " tokens. Please reduce the length of the ", prompt_param, "."),
                     "invalid_request_error", prompt_param, "context_length_exceeded");
    // OpenAI's legacy completions default to 16 tokens; chat runs to the context's end.
    const int64_t fallback =
        endpoint == Endpoint::completion ? 16 : m.generation.max_new_tokens.value_or(context);
    g.max_new_tokens = std::min({fallback, context - prompt_len, c.options->max_tokens_limit});
  }
  return r;
}

}  // namespace tune::server
