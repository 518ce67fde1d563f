// WordPiece and Unigram models against Hugging Face's Rust `tokenizers`: every piece, lookup and
// malformed model in tests/reference/tokenizer_expected/models_*.json (written by
// tests/reference/models_reference.js from the Rust reference) must come out the same here, and
// load errors must name the file and the key.
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tokenizer/model.h"
#include "tune/core/error.h"

namespace tune::tok {
namespace {

using nlohmann::json;
using test::contains;
using test::error_of;

using MakeModel = std::unique_ptr<TokenModel> (*)(const json&, const std::string&);

json load_expected(const std::string& name) {
  const std::string path = std::string(TUNE_TEST_DATA) + "/reference/tokenizer_expected/" + name;
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path + " (run tests/reference/models_reference.js)");
  return json::parse(in);
}

std::vector<int32_t> tokenize(const TokenModel& model, const std::string& piece) {
  std::vector<int32_t> ids{-7};  // tokenize appends: what was there stays
  model.tokenize(piece, ids);
  EXPECT_EQ(ids.front(), -7) << "tokenize(\"" << piece << "\") overwrote earlier ids";
  ids.erase(ids.begin());
  return ids;
}

// Every case of one expectation file: pieces, token_to_id, id_to_token, vocab_size.
void check_reference_cases(const std::string& file, MakeModel make) {
  const json expected = load_expected(file);
  ASSERT_FALSE(expected.at("cases").empty());
  for (const json& c : expected.at("cases")) {
    const std::string name = c.at("name");
    SCOPED_TRACE(file + " case " + name);
    std::unique_ptr<TokenModel> model = make(c.at("model"), "tokenizer.json: model");
    for (const json& p : c.at("pieces")) {
      const std::string piece = p.at("piece");
      if (p.contains("error")) {
        EXPECT_THROW(tokenize(*model, piece), Error)
            << "piece \"" << piece << "\": Rust fails with " << p.at("error");
      } else {
        EXPECT_EQ(tokenize(*model, piece), p.at("ids").get<std::vector<int32_t>>())
            << "piece \"" << piece << "\"";
      }
    }
    for (const json& q : c.at("token_to_id")) {
      const std::string token = q[0];
      std::optional<int32_t> want;
      if (!q[1].is_null()) want = q[1].get<int32_t>();
      EXPECT_EQ(model->token_to_id(token), want) << "token_to_id(\"" << token << "\")";
    }
    for (const json& q : c.at("id_to_token")) {
      const int32_t id = q[0];
      std::optional<std::string> want;
      if (!q[1].is_null()) want = q[1].get<std::string>();
      EXPECT_EQ(model->id_to_token(id), want) << "id_to_token(" << id << ")";
    }
    if (c.contains("vocab_size")) {
      EXPECT_EQ(model->vocab_size(), c.at("vocab_size").get<int64_t>());
    }
  }
}

// Every model Rust refuses to load must be refused here too, with a message naming where.
void check_malformed(const std::string& file, MakeModel make) {
  const json expected = load_expected(file);
  ASSERT_FALSE(expected.at("malformed").empty());
  for (const json& m : expected.at("malformed")) {
    const std::string name = m.at("name");
    SCOPED_TRACE(file + " malformed " + name + " (Rust: " + m.at("error").get<std::string>() + ")");
    const json model = json::parse(m.at("model_json").get<std::string>());
    const std::string message = error_of([&] { make(model, "dir/tokenizer.json: model"); });
    EXPECT_TRUE(contains(message, "dir/tokenizer.json: model."));
  }
}

TEST(TokenizerWordPiece, MatchesRustReference) {
  check_reference_cases("models_wordpiece.json", make_wordpiece);
}

TEST(TokenizerWordPiece, RefusesWhatRustRefuses) {
  check_malformed("models_wordpiece.json", make_wordpiece);
}

TEST(TokenizerUnigram, MatchesRustReference) {
  check_reference_cases("models_unigram.json", make_unigram);
}

TEST(TokenizerUnigram, RefusesWhatRustRefuses) {
  check_malformed("models_unigram.json", make_unigram);
}

json wordpiece_json(json vocab) {
  return {{"type", "WordPiece"},
          {"unk_token", "[UNK]"},
          {"continuing_subword_prefix", "##"},
          {"max_input_chars_per_word", 100},
          {"vocab", std::move(vocab)}};
}

TEST(TokenizerWordPiece, ErrorsNameTheKey) {
  json model = wordpiece_json({{"a", 0}});
  model.erase("vocab");
  EXPECT_TRUE(contains(error_of([&] { make_wordpiece(model, "tokenizer.json: model"); }),
                       "tokenizer.json: model.vocab is missing"));
  EXPECT_TRUE(contains(error_of([&] {
                         make_wordpiece(wordpiece_json({{"a", -1}}), "tokenizer.json: model");
                       }),
                       "tokenizer.json: model.vocab[\"a\"] must be an id"));
  // Rust's ids are u32; ours are int32, so ids past 2^31 - 1 are refused rather than wrapped.
  EXPECT_TRUE(
      contains(error_of([&] {
                 make_wordpiece(wordpiece_json({{"a", 3000000000u}}), "tokenizer.json: model");
               }),
               "model.vocab[\"a\"] must be an id in 0..2147483647, got 3000000000"));
  model = wordpiece_json({{"a", 0}});
  model["max_input_chars_per_word"] = "100";
  EXPECT_TRUE(contains(error_of([&] { make_wordpiece(model, "tokenizer.json: model"); }),
                       "model.max_input_chars_per_word must be a non-negative integer"));
  model = wordpiece_json({{"a", 0}});
  model["type"] = "BPE";
  EXPECT_TRUE(contains(error_of([&] { make_wordpiece(model, "tokenizer.json: model"); }),
                       "model.type must be \"WordPiece\""));
  EXPECT_TRUE(contains(error_of([&] { make_wordpiece(json::array(), "tokenizer.json: model"); }),
                       "tokenizer.json: model: must be an object"));
}

TEST(TokenizerWordPiece, MissingUnkTokenFailsOnlyWhenNeeded) {
  auto model = make_wordpiece(wordpiece_json({{"a", 0}}), "tokenizer.json: model");
  EXPECT_EQ(tokenize(*model, "a"), std::vector<int32_t>{0});
  EXPECT_TRUE(contains(error_of([&] { tokenize(*model, "ab"); }),
                       "tokenizer.json: model.unk_token \"[UNK]\" is not in the vocabulary"));
}

// vocab as JSON text: [["<unk>", 0], ...] (an initializer list would turn pairs into objects).
json unigram_json(const char* vocab) {
  return {{"type", "Unigram"}, {"unk_id", 0}, {"vocab", json::parse(vocab)}};
}

TEST(TokenizerUnigram, ErrorsNameTheKey) {
  json model = unigram_json(R"([["<unk>", 0]])");
  model.erase("vocab");
  EXPECT_TRUE(contains(error_of([&] { make_unigram(model, "tokenizer.json: model"); }),
                       "tokenizer.json: model.vocab is missing"));
  EXPECT_TRUE(contains(error_of([&] {
                         make_unigram(unigram_json(R"([["<unk>", 0], ["a", "x"]])"),
                                      "tokenizer.json: model");
                       }),
                       "tokenizer.json: model.vocab[1] must be [piece (string), score (number)], "
                       "got [\"a\",\"x\"]"));
  model = unigram_json(R"([["<unk>", 0]])");
  model["unk_id"] = 1;
  EXPECT_TRUE(contains(error_of([&] { make_unigram(model, "tokenizer.json: model"); }),
                       "model.unk_id 1 is outside the vocabulary (1 pieces)"));
  model["unk_id"] = -1;
  EXPECT_TRUE(contains(error_of([&] { make_unigram(model, "tokenizer.json: model"); }),
                       "model.unk_id must be a non-negative integer or null, got -1"));
  model["unk_id"] = 0;
  model["byte_fallback"] = "yes";
  EXPECT_TRUE(contains(error_of([&] { make_unigram(model, "tokenizer.json: model"); }),
                       "model.byte_fallback must be true or false"));
}

TEST(TokenizerUnigram, UnknownCharacterWithoutUnkIdNamesThePiece) {
  json model = json::parse(R"({"type": "Unigram", "vocab": [["a", -1.0]]})");
  auto unigram = make_unigram(model, "tokenizer.json: model");
  EXPECT_TRUE(contains(error_of([&] { tokenize(*unigram, "ab"); }),
                       "tokenizer.json: model.unk_id: missing, and the text \"ab\""));
}

TEST(TokenizerUnigram, LongPieceIsLinearAndExact) {
  // 100 KB of one repeated piece pattern: the same ids as piece-by-piece.
  json model =
      unigram_json(R"([["<unk>", 0], ["▁", -2.0], ["ab", -1.0], ["a", -1.5], ["b", -1.5]])");
  auto unigram = make_unigram(model, "tokenizer.json: model");
  std::string text;
  std::vector<int32_t> want;
  for (int i = 0; i < 20000; ++i) {
    text += "▁ab";
    want.insert(want.end(), {1, 2});
  }
  EXPECT_EQ(tokenize(*unigram, text), want);
}

}  // namespace
}  // namespace tune::tok
