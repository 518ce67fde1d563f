// Where the assistant's turns are in a rendered conversation, so that training can count the
// loss on responses only. Templates with {% generation %} mark them; for the many that do not,
// the spans are found by rendering prefixes of the conversation: the turn of messages[i] starts
// where "messages[:i] + generation prompt" ends and stops where "messages[:i+1]" ends, provided
// both are prefixes of the whole rendering.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "tune/template/chat_template.h"

namespace tune::tmpl {

struct AssistantSpans {
  std::string text;         // the whole conversation, rendered with add_generation_prompt false
  std::vector<Span> spans;  // byte ranges of the assistant turns, in order
};

// `variables` holds "messages" (and tools, bos_token, ... as for render). A template whose
// rendering of a prefix is not a prefix of the whole (one that rewrites earlier turns, as some
// thinking templates do) gets an error saying so and suggesting {% generation %}.
// `variables` with only the first `count` messages and add_generation_prompt set: the prefix
// renderings that find turn boundaries are made from these.
nlohmann::ordered_json conversation_prefix(const nlohmann::ordered_json& variables, size_t count,
                                           bool generation_prompt);

AssistantSpans assistant_spans(const ChatTemplate& chat_template,
                               const nlohmann::ordered_json& variables);

}  // namespace tune::tmpl
