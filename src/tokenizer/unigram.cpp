// Unigram (SentencePiece, as in T5, XLNet, ALBERT): the highest-scoring segmentation of one
// pre-tokenized piece, identical to Hugging Face's Rust `tokenizers` (Unigram::encode_optimized,
// itself SentencePiece's unigram_model.cc).
//
// How: one forward pass over the piece's bytes, stepping one UTF-8 character at a time. From
// each character start, a byte trie of the vocabulary lists every piece that begins there
// (shortest first); each one proposes `score + best[start]` for the position where it ends. If no
// vocabulary piece is exactly that one character, the character alone is proposed as the unk
// token with score `min_score - 10` (kUnkPenalty). A proposal replaces the position's best only
// when strictly greater, so on equal scores the first proposal wins: the one from the earliest
// start, i.e. the longest last piece. Backtracking from the end gives the pieces; runs of
// consecutive unk nodes are fused into one string (fuse_unk is always on in Rust). Each fused
// string is looked up in the vocabulary again, then (byte_fallback) spelled as <0xXX> byte
// pieces if every one of its bytes has one, else it is the unk id.
//
// Loading follows Rust: vocab ([[piece, score], ...]) is required; unk_id may be absent or null;
// with unk_id, an empty vocabulary or unk_id >= its size is an error. Without unk_id, an unknown
// character is an error only when its unk proposal would have won (Rust's MissingUnkId).
// Duplicate pieces: token_to_id gives the last id (Rust's map insertion), id_to_token each entry.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/model.h"
#include "tune/core/error.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::tok {

namespace {

constexpr double kUnkPenalty = 10.0;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Length of the UTF-8 character starting at s[i], clamped to the bytes left; 1 for a byte that
// cannot start a character, so invalid input still advances.
size_t char_length(std::string_view s, size_t i) {
  auto b = static_cast<unsigned char>(s[i]);
  size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 1;
  return std::min(n, s.size() - i);
}

// Byte trie of the vocabulary, flattened: node k's children are edges [begin, end) sorted by
// byte; the root's children are also in a 256-entry table since every lookup starts there.
class ByteTrie {
 public:
  static constexpr int32_t kNone = -1;

  explicit ByteTrie(const TokenMap& token_to_id) {
    // Build with ordered child maps, then flatten breadth-first.
    std::vector<std::map<uint8_t, uint32_t>> children(1);
    std::vector<int32_t> ids(1, kNone);
    for (const auto& [token, id] : token_to_id) {
      uint32_t node = 0;
      for (char c : token) {
        auto [it, inserted] = children[node].try_emplace(static_cast<uint8_t>(c),
                                                         static_cast<uint32_t>(children.size()));
        if (inserted) {
          children.emplace_back();
          ids.push_back(kNone);
        }
        node = it->second;
      }
      ids[node] = id;
    }
    nodes_.resize(children.size());
    std::vector<uint32_t> order{0};               // build index, in breadth-first order
    std::vector<uint32_t> flat(children.size());  // build index -> flat index
    for (size_t k = 0; k < order.size(); ++k) {
      for (const auto& [byte, child] : children[order[k]]) {
        flat[child] = static_cast<uint32_t>(order.size());
        order.push_back(child);
      }
    }
    for (size_t k = 0; k < order.size(); ++k) {
      Node& node = nodes_[k];
      node.id = ids[order[k]];
      node.begin = static_cast<uint32_t>(edge_byte_.size());
      for (const auto& [byte, child] : children[order[k]]) {
        edge_byte_.push_back(byte);
        edge_node_.push_back(flat[child]);
      }
      node.end = static_cast<uint32_t>(edge_byte_.size());
    }
    root_.fill(0);
    for (uint32_t e = nodes_[0].begin; e < nodes_[0].end; ++e) root_[edge_byte_[e]] = edge_node_[e];
  }

  // Calls visit(length, id) for every vocabulary piece that is a prefix of s, shortest first.
  template <typename Visit>
  void common_prefixes(std::string_view s, Visit&& visit) const {
    if (s.empty()) return;
    uint32_t node = root_[static_cast<uint8_t>(s[0])];
    for (size_t i = 1;; ++i) {
      if (node == 0) return;
      if (nodes_[node].id != kNone) visit(i, nodes_[node].id);
      if (i == s.size()) return;
      node = child(node, static_cast<uint8_t>(s[i]));
    }
  }

 private:
  struct Node {
    int32_t id = kNone;  // the piece ending here, or kNone
    uint32_t begin = 0, end = 0;
  };

  uint32_t child(uint32_t node, uint8_t byte) const {
    const Node& n = nodes_[node];
    for (uint32_t e = n.begin; e < n.end; ++e) {
      if (edge_byte_[e] == byte) return edge_node_[e];
      if (edge_byte_[e] > byte) break;
    }
    return 0;
  }

  std::vector<Node> nodes_;
  std::vector<uint8_t> edge_byte_;
  std::vector<uint32_t> edge_node_;
  std::array<uint32_t, 256> root_{};  // 0: no child (the root is never a child)
};

// A non-negative JSON integer (parsed JSON stores it unsigned; a json built in C++ from an int
// stores it signed), or nullopt for anything else, floats such as 5.0 included (Rust refuses them).
std::optional<uint64_t> as_unsigned(const nlohmann::json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0) return value.get<uint64_t>();
  return std::nullopt;
}

class Unigram final : public TokenModel {
 public:
  Unigram(std::vector<std::pair<std::string, double>> vocab, TokenMap token_to_id,
          std::optional<int32_t> unk_id, bool byte_fallback, std::string where)
      : vocab_(std::move(vocab)),
        token_to_id_(std::move(token_to_id)),
        trie_(token_to_id_),
        unk_id_(unk_id),
        byte_fallback_(byte_fallback),
        where_(std::move(where)) {
    double min_score = std::numeric_limits<double>::infinity();
    for (const auto& [piece, score] : vocab_) min_score = std::min(min_score, score);
    unk_score_ = min_score - kUnkPenalty;
    if (byte_fallback_) {
      for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        if (auto it = token_to_id_.find(std::string_view(name)); it != token_to_id_.end())
          byte_ids_[b] = it->second;
      }
    }
  }

  void tokenize(std::string_view piece, std::vector<int32_t>& ids) const override {
    if (piece.empty()) return;
    // best[p]: the best segmentation of piece[0, p); start < 0 until some node reaches p.
    struct Best {
      int32_t id = 0;
      int64_t start = -1;
      double score = 0.0;
    };
    std::vector<Best> best(piece.size() + 1);
    for (size_t start = 0; start < piece.size();) {
      const double till_here = best[start].score;
      const size_t mblen = char_length(piece, start);
      bool has_single_char = false;
      trie_.common_prefixes(piece.substr(start), [&](size_t length, int32_t id) {
        Best& target = best[start + length];
        double candidate = vocab_[id].second + till_here;
        if (target.start < 0 || candidate > target.score) target = {id, int64_t(start), candidate};
        has_single_char |= length == mblen;
      });
      if (!has_single_char) {
        Best& target = best[start + mblen];
        double candidate = unk_score_ + till_here;
        if (target.start < 0 || candidate > target.score) {
          TUNE_CHECK(unk_id_.has_value(), where_, ".unk_id: missing, and the text \"", piece,
                     "\" has a character outside the vocabulary at byte ", start);
          target = {*unk_id_, int64_t(start), candidate};
        }
      }
      start += mblen;
    }

    // Backtrack: the pieces in reverse; an unk node extends the pending fused span.
    const size_t first = ids.size();
    size_t fused_begin = piece.size(), fused_end = piece.size();  // empty span
    for (size_t end = piece.size(); end > 0;) {
      const Best& node = best[end];
      const auto start = static_cast<size_t>(node.start);
      if (unk_id_ && node.id == *unk_id_) {
        if (fused_begin == fused_end) fused_end = end;
        fused_begin = start;
      } else {
        if (fused_begin != fused_end)
          emit_reversed(piece.substr(fused_begin, fused_end - fused_begin), ids);
        fused_begin = fused_end = start;
        ids.push_back(node.id);
      }
      end = start;
    }
    if (fused_begin != fused_end)
      emit_reversed(piece.substr(fused_begin, fused_end - fused_begin), ids);
    std::reverse(ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end());
  }

  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (auto it = token_to_id_.find(token); it != token_to_id_.end()) return it->second;
    return std::nullopt;
  }

  std::optional<std::string> id_to_token(int32_t id) const override {
    if (id < 0 || static_cast<size_t>(id) >= vocab_.size()) return std::nullopt;
    return vocab_[id].first;
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }

 private:
  // A fused run of unknown characters (or anything else not a single vocabulary node): its
  // vocabulary id, else its <0xXX> byte pieces, else unk. Appended reversed, as backtracking is.
  void emit_reversed(std::string_view text, std::vector<int32_t>& ids) const {
    if (auto it = token_to_id_.find(text); it != token_to_id_.end()) {
      ids.push_back(it->second);
      return;
    }
    if (byte_fallback_) {
      bool all_bytes = true;
      for (char c : text) all_bytes &= byte_ids_[static_cast<uint8_t>(c)].has_value();
      if (all_bytes) {
        for (size_t i = text.size(); i-- > 0;)
          ids.push_back(*byte_ids_[static_cast<uint8_t>(text[i])]);
        return;
      }
    }
    TUNE_CHECK(unk_id_.has_value(), where_, ".unk_id: missing, and \"", text,
               "\" is not in the vocabulary (nor are all its <0xXX> byte pieces)");
    ids.push_back(*unk_id_);
  }

  std::vector<std::pair<std::string, double>> vocab_;  // (piece, score), indexed by id
  TokenMap token_to_id_;
  ByteTrie trie_;
  std::optional<int32_t> unk_id_;
  bool byte_fallback_;
  double unk_score_;
  std::array<std::optional<int32_t>, 256> byte_ids_{};  // "<0xXX>" pieces, with byte_fallback
  std::string where_;
};

}  // namespace

std::unique_ptr<TokenModel> make_unigram(const nlohmann::json& model, const std::string& where) {
  TUNE_CHECK(model.is_object(), where, ": must be an object, got ", model.dump());
  if (auto type = model.find("type"); type != model.end()) {
    TUNE_CHECK(type->is_string() && type->get<std::string>() == "Unigram", where,
               ".type must be \"Unigram\" for a Unigram model, got ", type->dump());
  }
  auto vocab_it = model.find("vocab");
  TUNE_CHECK(vocab_it != model.end(), where,
             ".vocab is missing (Unigram needs a list of [piece, score])");
  TUNE_CHECK(vocab_it->is_array(), where, ".vocab must be a list of [piece, score], got a ",
             vocab_it->type_name());
  TUNE_CHECK(vocab_it->size() <= size_t{std::numeric_limits<int32_t>::max()}, where, ".vocab has ",
             vocab_it->size(), " pieces, more than int32 ids can number");

  std::vector<std::pair<std::string, double>> vocab;
  vocab.reserve(vocab_it->size());
  TokenMap token_to_id;
  token_to_id.reserve(vocab_it->size());
  for (size_t i = 0; i < vocab_it->size(); ++i) {
    const nlohmann::json& entry = (*vocab_it)[i];
    TUNE_CHECK(
        entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_number(),
        where, ".vocab[", i, "] must be [piece (string), score (number)], got ", entry.dump());
    vocab.emplace_back(entry[0].get<std::string>(), entry[1].get<double>());
    token_to_id.insert_or_assign(vocab.back().first, static_cast<int32_t>(i));
  }

  std::optional<int32_t> unk_id;
  if (auto it = model.find("unk_id"); it != model.end() && !it->is_null()) {
    const std::optional<uint64_t> value = as_unsigned(*it);
    TUNE_CHECK(value, where, ".unk_id must be a non-negative integer or null, got ", it->dump());
    TUNE_CHECK(!vocab.empty(), where, ".vocab is empty but .unk_id is ", it->dump(),
               " (the vocabulary needs at least the unk piece)");
    TUNE_CHECK(*value < vocab.size(), where, ".unk_id ", it->dump(), " is outside the vocabulary (",
               vocab.size(), " pieces)");
    unk_id = static_cast<int32_t>(*value);
  }

  bool byte_fallback = false;
  if (auto it = model.find("byte_fallback"); it != model.end()) {
    TUNE_CHECK(it->is_boolean(), where, ".byte_fallback must be true or false, got ", it->dump());
    byte_fallback = it->get<bool>();
  }
  return std::make_unique<Unigram>(std::move(vocab), std::move(token_to_id), unk_id, byte_fallback,
                                   where);
}

}  // namespace tune::tok
