// A tiny byte-level BPE tokenizer for the generation tests, written to a folder: ids 0-255 are
// the bytes (GPT-2's byte-to-unicode alphabet), so any multibyte character spans several tokens;
// four merges give tokens 256-259 ("en", "ST", "OP", "STOP") that hold several characters, and
// ChatML's special tokens at 260-263 (tokenizers assigns added tokens the ids after the model's
// vocabulary, whatever the file says). tests/reference/make_byte_tokenizer_model.py writes the
// same.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace tune::test {

// GPT-2's printable stand-in for byte b, as UTF-8.
inline std::string byte_symbol(int b) {
  int cp = b;
  if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
    int n = 0;
    for (int x = 0; x < b; ++x)
      if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

inline void write_byte_tokenizer(const std::string& dir) {
  nlohmann::ordered_json vocab;
  for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = b;
  vocab["en"] = 256;
  vocab["ST"] = 257;
  vocab["OP"] = 258;
  vocab["STOP"] = 259;
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  const char* specials[] = {"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|pad|>"};
  for (int i = 0; i < 4; ++i) {
    added.push_back({{"id", 260 + i},
                     {"content", specials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  const nlohmann::ordered_json byte_level = {{"type", "ByteLevel"},
                                             {"add_prefix_space", false},
                                             {"trim_offsets", false},
                                             {"use_regex", false}};
  const nlohmann::ordered_json tokenizer = {{"version", "1.0"},
                                            {"truncation", nullptr},
                                            {"padding", nullptr},
                                            {"added_tokens", added},
                                            {"normalizer", nullptr},
                                            {"pre_tokenizer", byte_level},
                                            {"post_processor", nullptr},
                                            {"decoder", byte_level},
                                            {"model",
                                             {{"type", "BPE"},
                                              {"dropout", nullptr},
                                              {"unk_token", nullptr},
                                              {"continuing_subword_prefix", nullptr},
                                              {"end_of_word_suffix", nullptr},
                                              {"fuse_unk", false},
                                              {"byte_fallback", false},
                                              {"ignore_merges", false},
                                              {"vocab", vocab},
                                              {"merges", {"e n", "S T", "O P", "ST OP"}}}}};
  const nlohmann::ordered_json config = {
      {"tokenizer_class", "PreTrainedTokenizerFast"},
      {"bos_token", nullptr},
      {"eos_token", "<|im_end|>"},
      {"pad_token", "<|pad|>"},
      {"add_bos_token", false},
      {"chat_template",
       "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
       "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt "
       "%}{{ '<|im_start|>assistant\\n' }}{% endif %}"}};
  std::ofstream(dir + "/tokenizer.json") << tokenizer.dump(2);
  std::ofstream(dir + "/tokenizer_config.json") << config.dump(2);
}

}  // namespace tune::test
