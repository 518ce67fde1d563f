// Where the assistant's turns are in a rendered conversation, for response-only training: the
// assistant's tokens and its end-of-turn token count; the turn header ("<|im_start|>assistant\n")
// and the whitespace a template writes after the end-of-turn token do not.
//
// tmpl::assistant_spans finds turns by {% generation %} blocks or by rendering prefixes of the
// conversation. Some widely used templates render a turn differently depending on what follows
// it (Qwen3 adds an empty <think> block to the last assistant turn; Llama 3's base template always
// appends an assistant header), so prefix rendering refuses them. For those, a turn starts where
// "messages[:i] + generation prompt" ends (that must still be a prefix of the whole) and ends at
// the template's end-of-turn marker, learnt once by rendering a probe conversation.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "tune/template/assistant_spans.h"
#include "tune/template/chat_template.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::data {

class ChatSpans {
 public:
  // `base` holds the variables every rendering gets (bos_token, eos_token, ...).
  ChatSpans(const tmpl::ChatTemplate& chat_template, const tok::Tokenizer& tokenizer,
            const nlohmann::ordered_json& base);

  // `variables` as for tmpl::assistant_spans (messages, tools, bos_token, ...).
  tmpl::AssistantSpans find(const nlohmann::ordered_json& variables) const;

  // The end-of-turn marker learnt from the probe ("<|im_end|>"); "" when none was found.
  const std::string& end_marker() const { return end_marker_; }

 private:
  const tmpl::ChatTemplate& template_;
  std::string end_marker_;
};

}  // namespace tune::data
