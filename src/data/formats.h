// Records -> tokenized examples, one function per data.format:
//   text        the text + EOS, every token counted
//   completion  prompt + completion + EOS; the prompt is masked with train_on: responses (TRL's
//               prompt-completion format)
//   alpaca      the Stanford Alpaca prompt (with and without input) + output + EOS, prompt masked
//   messages    OpenAI-style messages or ShareGPT conversations rendered with the chat template;
//               with train_on: responses only the assistant turns and their end-of-turn token
// Raw formats get the tokenizer's own special tokens (its post-processor: BOS for Llama); chat
// templates write bos_token themselves, so the rendered text is encoded without specials, as
// transformers' apply_chat_template(tokenize=True) does.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat.h"
#include "masking.h"
#include "sources.h"
#include "tune/data/data.h"
#include "tune/template/chat_template.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::data {

class Formatter {
 public:
  Formatter(const DataConfig& cfg, const tok::Tokenizer& tokenizer);
  ~Formatter();

  // The example for one record; counted[0] is 0. Errors name record.where and the field.
  Tokenized format(const Record& record) const;

  // The chat template source ("" for raw formats): part of the cache key.
  const std::string& template_source() const { return template_source_; }

 private:
  Tokenized raw(std::string_view prompt, std::string_view response) const;
  Tokenized messages(const Record& record) const;

  const DataConfig& cfg_;
  const tok::Tokenizer& tokenizer_;
  std::vector<int32_t> prefix_, suffix_;  // what the post-processor adds around a text
  std::optional<int32_t> eos_;
  std::string template_source_;
  std::unique_ptr<tmpl::ChatTemplate> template_;
  std::unique_ptr<ChatSpans> spans_;
  nlohmann::ordered_json base_variables_;
};

}  // namespace tune::data
