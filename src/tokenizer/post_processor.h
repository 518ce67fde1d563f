// Post-processors of tokenizer.json ("post_processor"): TemplateProcessing (the single-sequence
// template; the pair template is parsed, not used), ByteLevel (offsets only: no change to ids),
// RobertaProcessing, BertProcessing and Sequence. They run only when special tokens are asked for.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tune::tok {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void process(std::vector<int32_t>& ids) const = 0;
};

// nullptr for a JSON null.
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j,
                                                   const std::string& where);

}  // namespace tune::tok
