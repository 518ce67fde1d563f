// The formatters. The post-processor's additions are learnt once by encoding "a" with and without
// specials (Llama: BOS before; a tokenizer with add_eos_token: EOS after), so raw formats can be
// tokenized piecewise for masking and still equal encode(text, AddSpecial::yes).
#include "formats.h"

#include <algorithm>

#include "tune/core/error.h"

namespace tune::data {

namespace {

using nlohmann::ordered_json;
using tok::AddSpecial;

constexpr const char* kAlpacaWithInput =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
constexpr const char* kAlpacaNoInput =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

std::string json_type(const ordered_json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "a string";
}

std::string keys_of(const ordered_json& o) {
  std::string out;
  for (auto it = o.begin(); it != o.end(); ++it) out += (out.empty() ? "" : ", ") + it.key();
  return out.empty() ? "(none)" : out;
}

const std::string& string_field(const ordered_json& o, const std::string& where,
                                const std::string& field, const char* key) {
  const auto it = o.find(field);
  TUNE_CHECK(it != o.end(), where, ": the record has no field \"", field, "\" (data.", key,
             "); its fields are: ", keys_of(o), ". Set data.", key,
             " to the field that holds it, or fix the record");
  TUNE_CHECK(it->is_string(), where, ": field \"", field, "\" is ", json_type(*it),
             ", expected a string");
  return it->get_ref<const std::string&>();
}

std::string replace(std::string text, const std::string& key, const std::string& value) {
  const size_t at = text.find(key);
  TUNE_ASSERT(at != std::string::npos, "no ", key, " in the prompt");
  return text.replace(at, key.size(), value);
}

std::string role_of(const std::string& role) {
  if (role == "human") return "user";
  if (role == "gpt") return "assistant";
  return role;  // system, user, assistant, tool
}

}  // namespace

Formatter::Formatter(const DataConfig& cfg, const tok::Tokenizer& tokenizer)
    : cfg_(cfg), tokenizer_(tokenizer) {
  const auto with = tokenizer.encode("a", AddSpecial::yes);
  const auto without = tokenizer.encode("a", AddSpecial::no);
  const auto at = std::search(with.begin(), with.end(), without.begin(), without.end());
  if (at != with.end()) {
    prefix_.assign(with.begin(), at);
    suffix_.assign(at + static_cast<std::ptrdiff_t>(without.size()), with.end());
  }
  const auto& tc = tokenizer.config();
  if (tc.eos_token) eos_ = tokenizer.token_to_id(*tc.eos_token);
  // add_bos_token: true with a post-processor that adds none (as transformers' Llama tokenizers
  // rebuild their post-processor from that flag).
  if (tc.add_bos_token.value_or(false) && tc.bos_token) {
    const auto bos = tokenizer.token_to_id(*tc.bos_token);
    if (bos && std::find(prefix_.begin(), prefix_.end(), *bos) == prefix_.end()) {
      prefix_.insert(prefix_.begin(), *bos);
    }
  }

  if (cfg.format != Format::messages) return;
  const std::string& choice = cfg.chat_template;
  if (choice.find("{{") != std::string::npos || choice.find("{%") != std::string::npos) {
    template_source_ = choice;
  } else {
    const auto found = tc.chat_template(choice.empty() ? "default" : choice);
    if (!found) {
      std::string names;
      for (const auto& [name, _] : tc.chat_templates) names += (names.empty() ? "" : ", ") + name;
      TUNE_CHECK(!choice.empty(),
                 "data.format is messages but the tokenizer has no chat template: set "
                 "data.chat_template to a Jinja template (inline) for this model's chat format");
      throw Error(str("data.chat_template: the tokenizer has no chat template named \"", choice,
                      "\"; it has: ", names.empty() ? "(none)" : names,
                      ". An inline template must contain {{ or {%"));
    }
    template_source_ = *found;
  }
  template_ = std::make_unique<tmpl::ChatTemplate>(
      template_source_, choice.empty() ? "the tokenizer's chat_template" : "data.chat_template");
  for (const auto& [name, value] : tc.template_tokens()) base_variables_[name] = value;
  if (cfg.train_on == TrainOn::responses) {
    spans_ = std::make_unique<ChatSpans>(*template_, tokenizer, base_variables_);
  }
}

Formatter::~Formatter() = default;

Tokenized Formatter::raw(std::string_view prompt, std::string_view response) const {
  const std::string text = str(prompt, response);
  Tokenized body;
  if (cfg_.train_on == TrainOn::all || prompt.empty()) {
    body.ids = tokenizer_.encode(text, AddSpecial::no);
    body.counted.assign(body.ids.size(), 1);
  } else {
    body = tokenize_spans(tokenizer_, text, {{prompt.size(), text.size()}});
  }
  Tokenized out;
  out.ids = prefix_;
  out.counted.assign(prefix_.size(), 0);
  out.ids.insert(out.ids.end(), body.ids.begin(), body.ids.end());
  out.counted.insert(out.counted.end(), body.counted.begin(), body.counted.end());
  out.ids.insert(out.ids.end(), suffix_.begin(), suffix_.end());
  out.counted.insert(out.counted.end(), suffix_.size(), 1);
  if (eos_ && (out.ids.empty() || out.ids.back() != *eos_)) {
    out.ids.push_back(*eos_);
    out.counted.push_back(1);
  }
  return out;
}

Tokenized Formatter::messages(const Record& record) const {
  const auto& r = record.value;
  const auto it = r.find(cfg_.messages_field);
  TUNE_CHECK(it != r.end(), record.where, ": the record has no field \"", cfg_.messages_field,
             "\" (data.fields.messages); its fields are: ", keys_of(r),
             ". Set data.fields.messages (\"conversations\" for ShareGPT), or fix the record");
  TUNE_CHECK(it->is_array(), record.where, ": field \"", cfg_.messages_field, "\" is ",
             json_type(*it), ", expected a list of messages");
  const bool openai = cfg_.role_field == "role" && cfg_.content_field == "content";
  ordered_json messages = ordered_json::array();
  for (size_t i = 0; i < it->size(); ++i) {
    const auto& m = (*it)[i];
    const std::string where = str(record.where, ": ", cfg_.messages_field, "[", i, "]");
    TUNE_CHECK(m.is_object(), where, " is ", json_type(m), ", expected an object");
    const std::string role = role_of(string_field(m, where, cfg_.role_field, "fields.role"));
    const auto content = m.find(cfg_.content_field);
    const bool tool_call = role == "assistant" && m.contains("tool_calls");
    if (!(tool_call && (content == m.end() || content->is_null()))) {
      string_field(m, where, cfg_.content_field, "fields.content");
    }
    ordered_json message = openai ? m : ordered_json::object();
    message["role"] = role;
    if (!openai) message["content"] = content == m.end() ? ordered_json() : *content;
    messages.push_back(std::move(message));
  }
  ordered_json variables = base_variables_;
  variables["messages"] = std::move(messages);
  if (r.contains("tools")) variables["tools"] = r["tools"];
  try {
    if (cfg_.train_on == TrainOn::all) {
      variables["add_generation_prompt"] = false;
      const std::string text = template_->render(variables);
      Tokenized out;
      out.ids = tokenizer_.encode(text, AddSpecial::no);
      out.counted.assign(out.ids.size(), 1);
      return out;
    }
    const auto found = spans_->find(variables);
    return tokenize_spans(tokenizer_, found.text, found.spans);
  } catch (const Error& e) {
    throw Error(str(record.where, ": ", e.what()));
  }
}

Tokenized Formatter::format(const Record& record) const {
  const auto& r = record.value;
  Tokenized out;
  switch (cfg_.format) {
    case Format::text:
      out = raw("", string_field(r, record.where, cfg_.text_field, "fields.text"));
      break;
    case Format::completion:
      out = raw(string_field(r, record.where, cfg_.prompt_field, "fields.prompt"),
                string_field(r, record.where, cfg_.completion_field, "fields.completion"));
      break;
    case Format::alpaca: {
      const std::string& instruction =
          string_field(r, record.where, cfg_.instruction_field, "fields.instruction");
      const auto input = r.find(cfg_.input_field);
      const bool has_input = input != r.end() && !input->is_null() &&
                             !(input->is_string() && input->get_ref<const std::string&>().empty());
      std::string prompt =
          replace(has_input ? kAlpacaWithInput : kAlpacaNoInput, "{instruction}", instruction);
      if (has_input) {
        prompt = replace(prompt, "{input}",
                         string_field(r, record.where, cfg_.input_field, "fields.input"));
      }
      out = raw(prompt, string_field(r, record.where, cfg_.output_field, "fields.output"));
      break;
    }
    case Format::messages:
      out = messages(record);
      break;
  }
  if (!out.counted.empty()) out.counted[0] = 0;
  return out;
}

}  // namespace tune::data
