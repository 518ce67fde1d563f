// Assistant turn spans: prefix rendering first, the end-of-turn marker when a template rewrites
// turns. The probe conversation is a user turn and an assistant turn with a distinctive answer;
// the marker is the (optionally whitespace-led) single token that follows the answer.
#include "chat.h"

#include <cctype>

#include "tune/core/error.h"

namespace tune::data {

namespace {

using nlohmann::ordered_json;

constexpr const char* kProbeAnswer = "tune-probe-answer-7f3a";

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

}  // namespace

ChatSpans::ChatSpans(const tmpl::ChatTemplate& chat_template, const tok::Tokenizer& tokenizer,
                     const ordered_json& base)
    : template_(chat_template) {
  ordered_json probe = base;
  probe["messages"] =
      ordered_json::array({ordered_json{{"role", "user"}, {"content", "tune probe question"}},
                           ordered_json{{"role", "assistant"}, {"content", kProbeAnswer}}});
  probe["add_generation_prompt"] = false;
  std::string text;
  try {
    text = template_.render(probe);
  } catch (const Error&) {
    return;  // a template that refuses the probe gets prefix rendering only
  }
  const size_t at = text.find(kProbeAnswer);
  if (at == std::string::npos) return;
  const std::string after = text.substr(at + std::string(kProbeAnswer).size());
  size_t lead = 0;
  while (lead < after.size() && is_space(after[lead])) ++lead;
  // The longest run after the whitespace that is one token, of more than one byte.
  for (size_t len = std::min<size_t>(after.size() - lead, 64); len > 1; --len) {
    const std::string candidate = after.substr(lead, len);
    if (tokenizer.encode(candidate, tok::AddSpecial::no).size() == 1) {
      end_marker_ = after.substr(0, lead + len);
      break;
    }
  }
}

tmpl::AssistantSpans ChatSpans::find(const ordered_json& variables) const {
  tmpl::AssistantSpans out;
  try {
    out = tmpl::assistant_spans(template_, variables);
    for (auto& s : out.spans) {
      // A turn ends at its end-of-turn marker: Llama 3's base template appends an assistant
      // header after the last turn, which prefix rendering would count.
      const size_t marker =
          end_marker_.empty() ? std::string::npos : out.text.find(end_marker_, s.begin);
      if (marker != std::string::npos && marker + end_marker_.size() <= s.end) {
        s.end = marker + end_marker_.size();
      }
      while (s.end > s.begin && is_space(out.text[s.end - 1])) --s.end;
    }
    return out;
  } catch (const tmpl::TemplateException&) {
    throw;  // raise_exception: the conversation itself is wrong for this template
  } catch (const Error&) {
    if (end_marker_.empty()) throw;
  }
  const auto& messages = variables["messages"];
  out.text = template_.render(tmpl::conversation_prefix(variables, messages.size(), false));
  out.spans.clear();
  size_t done = 0;  // where the previous turn ended
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!messages[i].is_object() || messages[i].value("role", "") != "assistant") continue;
    std::string before;
    try {
      before = template_.render(tmpl::conversation_prefix(variables, i, true));
    } catch (const Error&) {
      if (i > 0) throw;  // a template that cannot render no messages: the turn starts at 0
    }
    TUNE_CHECK(out.text.compare(0, before.size(), before) == 0 && before.size() >= done,
               "the chat template renders the conversation up to message ", i,
               " (assistant) differently from the whole conversation, so the assistant's turn "
               "cannot be found; use a template with {% generation %} blocks, or train on all "
               "tokens (data.train_on: all)");
    const size_t end = out.text.find(end_marker_, before.size());
    TUNE_CHECK(end != std::string::npos, "the assistant turn of message ", i,
               " has no end-of-turn marker \"", end_marker_,
               "\" after it in the rendered conversation; use a template with {% generation %} "
               "blocks, or train on all tokens (data.train_on: all)");
    out.spans.push_back({before.size(), end + end_marker_.size()});
    done = end + end_marker_.size();
  }
  return out;
}

}  // namespace tune::data
