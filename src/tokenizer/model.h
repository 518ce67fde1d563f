// The models of tokenizer.json ("model"): make_model dispatches on "type". BPE lives in bpe.cpp;
// WordPiece and Unigram in wordpiece.cpp and unigram.cpp. Errors name `where` and the key.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "tune/tokenizer/tokenizer.h"

namespace tune::tok {

std::unique_ptr<TokenModel> make_model(const nlohmann::json& model, const std::string& where);

std::unique_ptr<TokenModel> make_bpe(const nlohmann::json& model, const std::string& where);
std::unique_ptr<TokenModel> make_wordpiece(const nlohmann::json& model, const std::string& where);
std::unique_ptr<TokenModel> make_unigram(const nlohmann::json& model, const std::string& where);

}  // namespace tune::tok
