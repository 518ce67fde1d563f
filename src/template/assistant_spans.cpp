#include "tune/template/assistant_spans.h"

#include <string_view>

namespace tune::tmpl {

namespace {

using nlohmann::ordered_json;

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

}  // namespace

ordered_json conversation_prefix(const ordered_json& variables, size_t count,
                                 bool generation_prompt) {
  ordered_json v = variables;
  const auto& all = variables["messages"];
  v["messages"] = ordered_json(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(count));
  v["add_generation_prompt"] = generation_prompt;
  return v;
}

AssistantSpans assistant_spans(const ChatTemplate& chat_template, const ordered_json& variables) {
  TUNE_CHECK(variables.contains("messages") && variables["messages"].is_array(),
             "assistant_spans: the variables need a \"messages\" list");
  const auto& messages = variables["messages"];
  AssistantSpans out;
  Rendered full =
      chat_template.render_tracked(conversation_prefix(variables, messages.size(), false));
  out.text = full.text;
  if (!full.generation.empty()) {
    out.spans = full.generation;
    return out;
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!messages[i].is_object() || messages[i].value("role", "") != "assistant") continue;
    std::string before =
        i == 0 ? std::string() : chat_template.render(conversation_prefix(variables, i, true));
    std::string through = chat_template.render(conversation_prefix(variables, i + 1, false));
    TUNE_CHECK(starts_with(out.text, before) && starts_with(out.text, through) &&
                   through.size() >= before.size(),
               "the chat template renders message ", i,
               " (assistant) differently depending on "
               "what follows it, so its span cannot be found by rendering prefixes; use a "
               "template with {% generation %} blocks, or train on all tokens (train_on: all)");
    out.spans.push_back({before.size(), through.size()});
  }
  return out;
}

}  // namespace tune::tmpl
