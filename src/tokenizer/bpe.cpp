// BPE as Hugging Face's Rust model does it: a piece found whole in the vocabulary is one token
// when ignore_merges is set; otherwise its characters (with continuing_subword_prefix on all but
// the first, end_of_word_suffix on the last; unknown ones as <0xXX> bytes with byte_fallback, or
// the unk token, fused when fuse_unk) are merged lowest rank first, leftmost on ties, through a
// priority queue. Merge ranks sit in a hash map keyed by the pair of ids. Results for pieces up
// to kCacheMaxBytes are cached (sharded, thread-safe: encode_batch shares the model).
#include <array>
#include <cstdio>
#include <mutex>
#include <queue>
#include <string_view>
#include <unordered_map>

#include "tokenizer/model.h"
#include "tokenizer/text.h"
#include "tune/core/error.h"

namespace tune::tok {
namespace {

using json = nlohmann::json;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

constexpr size_t kCacheMaxBytes = 256;
constexpr size_t kCacheShards = 16;
constexpr size_t kCacheShardCapacity = 4096;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

class Bpe final : public TokenModel {
 public:
  Bpe(const json& j, const std::string& where) {
    if (!j.contains("vocab") || !j["vocab"].is_object()) {
      throw Error(str(where, ".vocab: missing or not an object of token -> id"));
    }
    int32_t max_id = -1;
    for (const auto& [tok, id] : j["vocab"].items()) {
      if (!id.is_number_integer())
        throw Error(str(where, ".vocab[\"", tok, "\"]: id is not an integer"));
      const auto v = id.get<int32_t>();
      vocab_[tok] = v;
      max_id = std::max(max_id, v);
    }
    vocab_r_.resize(static_cast<size_t>(max_id + 1));
    has_id_.assign(static_cast<size_t>(max_id + 1), false);
    for (const auto& [tok, id] : vocab_) {
      vocab_r_[static_cast<size_t>(id)] = tok;
      has_id_[static_cast<size_t>(id)] = true;
    }
    auto opt_string = [&](const char* key) {
      return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
    };
    prefix_ = opt_string("continuing_subword_prefix");
    suffix_ = opt_string("end_of_word_suffix");
    if (j.contains("unk_token") && j["unk_token"].is_string()) {
      const auto unk = j["unk_token"].get<std::string>();
      auto it = vocab_.find(unk);
      if (it == vocab_.end())
        throw Error(str(where, ".unk_token: '", unk, "' is not in the vocabulary"));
      unk_id_ = it->second;
    }
    fuse_unk_ = j.value("fuse_unk", false);
    byte_fallback_ = j.value("byte_fallback", false);
    ignore_merges_ = j.value("ignore_merges", false);
    if (j.contains("dropout") && !j["dropout"].is_null() && j["dropout"].get<double>() > 0.0) {
      throw Error(str(where,
                      ".dropout: BPE dropout samples different ids on every call; "
                      "tune.cpp needs deterministic ids, set it to null"));
    }
    if (byte_fallback_) {
      for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        auto it = vocab_.find(std::string_view(name));
        byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
      }
    }
    if (!j.contains("merges") || !j["merges"].is_array()) {
      throw Error(str(where, ".merges: missing or not a list"));
    }
    const auto& merges = j["merges"];
    merges_.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const auto& m = merges[r];
      std::string a, b;
      if (m.is_string()) {
        const auto s = m.get<std::string>();
        const auto sp = s.find(' ');
        if (sp == std::string::npos)
          throw Error(str(where, ".merges[", r, "]: '", s, "' is not \"a b\""));
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        throw Error(
            str(where, ".merges[", r, "]: expected \"a b\" or [\"a\", \"b\"], got ", m.dump()));
      }
      const auto ia = vocab_.find(a), ib = vocab_.find(b);
      if (ia == vocab_.end() || ib == vocab_.end()) {
        throw Error(str(where, ".merges[", r, "]: '", ia == vocab_.end() ? a : b,
                        "' is not in the vocabulary"));
      }
      std::string merged = a;
      merged += std::string_view(b).substr(b.starts_with(prefix_) ? prefix_.size() : 0);
      const auto im = vocab_.find(merged);
      if (im == vocab_.end()) {
        throw Error(str(where, ".merges[", r, "]: the merged token '", merged,
                        "' is not in the vocabulary"));
      }
      // A later duplicate overwrites an earlier one, as in Rust's HashMap collect.
      merges_[pair_key(ia->second, ib->second)] = {static_cast<int32_t>(r), im->second};
    }
  }

  void tokenize(std::string_view piece, std::vector<int32_t>& ids) const override {
    if (piece.empty()) return;
    if (ignore_merges_) {
      if (auto it = vocab_.find(piece); it != vocab_.end()) {
        ids.push_back(it->second);
        return;
      }
    }
    const bool cacheable = piece.size() <= kCacheMaxBytes;
    auto& shard = cache_[std::hash<std::string_view>{}(piece) % kCacheShards];
    if (cacheable) {
      std::lock_guard lock(shard.mutex);
      if (auto it = shard.map.find(piece); it != shard.map.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    const size_t start = ids.size();
    merge_word(piece, ids);
    if (cacheable) {
      std::lock_guard lock(shard.mutex);
      if (shard.map.size() < kCacheShardCapacity) {
        shard.map.emplace(std::string(piece), std::vector<int32_t>(ids.begin() + start, ids.end()));
      }
    }
  }

  std::optional<int32_t> token_to_id(std::string_view token) const override {
    if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
    return std::nullopt;
  }
  std::optional<std::string> id_to_token(int32_t id) const override {
    if (id < 0 || static_cast<size_t>(id) >= vocab_r_.size() || !has_id_[static_cast<size_t>(id)]) {
      return std::nullopt;
    }
    return vocab_r_[static_cast<size_t>(id)];
  }
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }

 private:
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool removed;
  };
  struct Merge {
    int32_t rank, pos, new_id;
    bool operator<(const Merge& o) const {  // max-heap: lowest rank, then leftmost, on top
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };

  void merge_word(std::string_view w, std::vector<int32_t>& ids) const {
    std::vector<Symbol> sym;
    sym.reserve(w.size());
    auto add = [&](int32_t id) {
      const auto n = static_cast<int32_t>(sym.size());
      sym.push_back({id, n - 1, n + 1, false});
    };
    bool pending_unk = false;
    std::string s;
    for (size_t i = 0; i < w.size();) {
      const size_t b = i;
      i += static_cast<size_t>(utf8_len(static_cast<unsigned char>(w[i])));
      i = std::min(i, w.size());
      s.clear();
      if (b != 0) s += prefix_;
      s.append(w.substr(b, i - b));
      if (i == w.size()) s += suffix_;
      if (auto it = vocab_.find(s); it != vocab_.end()) {
        if (pending_unk) add(unk_id_);
        pending_unk = false;
        add(it->second);
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (const char c : s) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
        if (all) {
          if (pending_unk) add(unk_id_);
          pending_unk = false;
          for (const char c : s) add(byte_ids_[static_cast<unsigned char>(c)]);
          continue;
        }
      }
      if (unk_id_ >= 0) {
        if (pending_unk && !fuse_unk_) add(unk_id_);
        pending_unk = true;
      }
    }
    if (pending_unk) add(unk_id_);
    if (sym.empty()) return;
    sym.back().next = -1;

    std::priority_queue<Merge> queue;
    auto lookup = [&](int32_t a, int32_t b) -> const std::pair<int32_t, int32_t>* {
      auto it = merges_.find(pair_key(a, b));
      return it == merges_.end() ? nullptr : &it->second;
    };
    for (size_t k = 0; k + 1 < sym.size(); ++k) {
      if (const auto* m = lookup(sym[k].id, sym[k + 1].id)) {
        queue.push({m->first, static_cast<int32_t>(k), m->second});
      }
    }
    while (!queue.empty()) {
      const Merge top = queue.top();
      queue.pop();
      Symbol& cur = sym[static_cast<size_t>(top.pos)];
      if (cur.removed || cur.next < 0) continue;
      Symbol& right = sym[static_cast<size_t>(cur.next)];
      const auto* m = lookup(cur.id, right.id);
      if (m == nullptr || m->second != top.new_id) continue;  // stale entry
      cur.id = top.new_id;
      right.removed = true;
      cur.next = right.next;
      if (cur.next >= 0) sym[static_cast<size_t>(cur.next)].prev = top.pos;
      if (cur.prev >= 0) {
        if (const auto* pm = lookup(sym[static_cast<size_t>(cur.prev)].id, cur.id)) {
          queue.push({pm->first, cur.prev, pm->second});
        }
      }
      if (cur.next >= 0) {
        if (const auto* nm = lookup(cur.id, sym[static_cast<size_t>(cur.next)].id)) {
          queue.push({nm->first, top.pos, nm->second});
        }
      }
    }
    for (const auto& x : sym) {
      if (!x.removed) ids.push_back(x.id);
    }
  }

  Vocab vocab_;
  std::vector<std::string> vocab_r_;
  std::vector<bool> has_id_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // pair -> (rank, new id)
  std::string prefix_, suffix_;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::array<int32_t, 256> byte_ids_{};

  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
  };
  mutable std::array<Shard, kCacheShards> cache_;
};

}  // namespace

std::unique_ptr<TokenModel> make_bpe(const json& j, const std::string& where) {
  return std::make_unique<Bpe>(j, where);
}

std::unique_ptr<TokenModel> make_model(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error(str(where, ": missing or not an object"));
  std::string type;
  if (j.contains("type") && j["type"].is_string()) {
    type = j["type"].get<std::string>();
  } else if (j.contains("merges")) {
    type = "BPE";  // old files omit the type
  } else {
    throw Error(str(where, ".type: missing"));
  }
  if (type == "BPE") return make_bpe(j, where);
  if (type == "WordPiece") return make_wordpiece(j, where);
  if (type == "Unigram") return make_unigram(j, where);
  throw Error(
      str(where, ".type: unknown model type '", type, "' (known: BPE, WordPiece, Unigram)"));
}

}  // namespace tune::tok
