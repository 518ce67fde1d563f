// Normalizers of tokenizer.json ("normalizer"): NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace,
// Prepend, BertNormalizer and Sequence. Hugging Face tracks alignments to the original text;
// tune.cpp needs only the normalized string.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace tune::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};

// nullptr for a JSON null. Errors name `where` (e.g. "tokenizer.json: normalizer").
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where);

}  // namespace tune::tok
