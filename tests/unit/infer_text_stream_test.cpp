// Streaming text: pieces never split a multibyte character, stop strings are found across token
// boundaries (and inside merged tokens), held-back text comes out at the end; on a byte-level
// tokenizer where every byte can be its own token.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "infer_byte_tokenizer.h"
#include "test_util.h"
#include "tune/infer/text_stream.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune {
namespace {

class InferTextStream : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir("infer_text_stream");
    test::write_byte_tokenizer(dir_->path);
    tok_ = new tok::Tokenizer(tok::Tokenizer::load(dir_->path));
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete dir_;
  }
  // One token per byte.
  static std::vector<int64_t> bytes_of(const std::string& s) {
    std::vector<int64_t> ids;
    for (unsigned char c : s) ids.push_back(c);
    return ids;
  }
  static test::TempDir* dir_;
  static tok::Tokenizer* tok_;
};
test::TempDir* InferTextStream::dir_ = nullptr;
tok::Tokenizer* InferTextStream::tok_ = nullptr;

TEST_F(InferTextStream, PiecesNeverSplitAMultibyteCharacter) {
  const std::string text = "a \xC3\xA9 \xE4\xB8\x96 \xF0\x9F\x99\x82!";  // "a é 世 🙂!"
  infer::TextStream s(*tok_, {});
  std::string joined;
  std::vector<std::string> pieces;
  for (int64_t id : bytes_of(text)) {
    const std::string p = s.push(id);
    EXPECT_EQ(p.find("\xEF\xBF\xBD"), std::string::npos) << "a replacement character escaped";
    pieces.push_back(p);
    joined += p;
  }
  joined += s.finish();
  EXPECT_EQ(joined, text);
  EXPECT_EQ(s.text(), text);
  // The emoji's first three bytes released nothing; its fourth released all four.
  const size_t emoji = text.find("\xF0");
  EXPECT_EQ(pieces[emoji], "");
  EXPECT_EQ(pieces[emoji + 2], "");
  EXPECT_EQ(pieces[emoji + 3], "\xF0\x9F\x99\x82");
}

TEST_F(InferTextStream, AnIncompleteCharacterAtTheEndComesOutAsReplacement) {
  infer::TextStream s(*tok_, {});
  EXPECT_EQ(s.push('o'), "o");
  EXPECT_EQ(s.push(0xE4), "");
  EXPECT_EQ(s.finish(), "\xEF\xBF\xBD");
}

TEST_F(InferTextStream, StopStringAcrossTokensIsCutAndNotReturned) {
  infer::TextStream s(*tok_, {"STOP"});
  std::string joined;
  for (int64_t id : bytes_of("Hi ST")) joined += s.push(id);
  EXPECT_EQ(joined, "Hi ") << "'ST' may begin the stop string: held back";
  joined += s.push('O');
  EXPECT_FALSE(s.stopped());
  joined += s.push('P');
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.push('x'), "") << "nothing after a stop";
  joined += s.finish();
  EXPECT_EQ(joined, "Hi ");
  EXPECT_EQ(s.text(), "Hi ");
}

TEST_F(InferTextStream, StopStringInsideOneMergedToken) {
  infer::TextStream s(*tok_, {"TO"});
  EXPECT_EQ(s.push('a'), "a");
  EXPECT_EQ(s.push(259), "S");  // "STOP": the text before "TO" is released
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.text(), "aS");
}

TEST_F(InferTextStream, StopStringStartingInsideAToken) {
  infer::TextStream s(*tok_, {"ke"});
  std::string joined;
  for (int64_t id : bytes_of("brok")) joined += s.push(id);
  EXPECT_EQ(joined, "bro");
  joined += s.push(256);  // "en"
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(joined, "bro");
}

TEST_F(InferTextStream, APartialMatchThatFailsIsReleased) {
  infer::TextStream s(*tok_, {"STOP", "xyz"});
  std::string joined;
  for (int64_t id : bytes_of("ST")) joined += s.push(id);
  EXPECT_EQ(joined, "");
  joined += s.push('A');
  EXPECT_EQ(joined, "STA");
  joined += s.push('x');
  EXPECT_EQ(joined, "STA");
  joined += s.finish();  // the generation ended: "x" was not a stop string after all
  EXPECT_EQ(joined, "STAx");
  EXPECT_FALSE(s.stopped());
}

TEST_F(InferTextStream, EarliestStopStringWinsAndSpecialTokensAreSkipped) {
  infer::TextStream s(*tok_, {"cd", "b"});
  std::string joined;
  joined += s.push(261);  // <|im_end|>: special, no text
  for (int64_t id : bytes_of("abcd")) joined += s.push(id);
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.text(), "a");
}

TEST(InferUtf8, StablePrefix) {
  EXPECT_EQ(infer::stable_utf8_prefix("abc"), 3u);
  EXPECT_EQ(infer::stable_utf8_prefix("ab\xE4\xB8"), 2u);
  EXPECT_EQ(infer::stable_utf8_prefix("ab\xE4\xB8\x96"), 5u);
  EXPECT_EQ(infer::stable_utf8_prefix("ab\xEF\xBF\xBD\xEF\xBF\xBD"), 2u);
  EXPECT_EQ(infer::stable_utf8_prefix("\xF0\x9F\x99"), 0u);
  EXPECT_EQ(infer::stable_utf8_prefix(""), 0u);
}

}  // namespace
}  // namespace tune
