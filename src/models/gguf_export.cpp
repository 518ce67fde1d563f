// tune export --format gguf: a Hugging Face model directory (plus an optional PEFT adapter,
// merged first) -> one GGUF v3 file that llama.cpp loads, with the metadata keys, tensor names,
// layouts and tokenizer fields llama.cpp's convert_hf_to_gguf.py writes, and the tensor types of
// llama.cpp's quantize for Q4_K_M.
//
// What follows the converter, and where tune.cpp decides itself:
// - Architectures: llama and mistral -> "llama" (the converter maps MistralForCausalLM there too;
//   llama.cpp's llama graph has no sliding window, so a Mistral window shorter than the context
//   is not reproduced, exactly as with the converter), qwen2, qwen3, gpt2.
// - llama-arch q_proj / k_proj rows (weights and biases) are permuted from Hugging Face's
//   rotate-half layout to llama.cpp's interleaved pairs; qwen2/qwen3 use NEOX rope in llama.cpp and
//   are written unpermuted. GPT-2's Conv1D weights are transposed to [out, in] and wte is also
//   written as output.weight.
// - Llama 3 rope scaling -> the rope_freqs.weight tensor (per-frequency divisors), linear ->
//   rope.scaling.type/factor.
// - Types: F32/F16/BF16/Q8_0 as the converter's --outtype (1-D tensors, norms and position
//   embeddings stay F32; a Q8_0 tensor whose rows do not divide into 32 falls back to F16).
//   Q4_K_M as llama.cpp's quantize mixes it: Q4_K, with Q6_K for output.weight (token_embd when
//   there is no output), and for attn_v / ffn_down on the layers use_more_bits picks, Q5_K for
//   GPT-2's fused attn_qkv; rows that do not divide into 256 fall back to Q5_0 / Q5_1 / Q8_0 /
//   F16 like quantize.
// - Tokenizer: "gpt2" (byte-level BPE: tokens, token types, merges, pre) or "llama"
//   (SentencePiece-style BPE with byte fallback, or Unigram: tokens, scores, token types).
//   tokenizer.ggml.pre: the converter hashes the ids of a fixed text against a table of known
//   tokenizers; tune.cpp instead compares the pre-tokenizer's split regex with the regexes
//   llama.cpp implements (gpt-2, llama-bpe, qwen2) — the regex is what the pre type selects in
//   llama.cpp — and refuses a regex llama.cpp does not know. For a SentencePiece-style BPE the
//   score of a token is minus the rank of the merge that makes it, so llama.cpp's score-greedy
//   merging picks merges in BPE's order. add_bos/add_eos and the BOS id are what tune's own
//   tokenizer does (its post-processor), so llama.cpp adds exactly the specials tune adds.
// - The adapter: merged by MergedWeights (models/merge.h, shared with the hf export): W + scale·B·A
//   in f32, one tensor at a time.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <unordered_map>

#include "tune/core/error.h"
#include "tune/io/files.h"
#include "tune/io/gguf.h"
#include "tune/models/export.h"
#include "tune/models/merge.h"
#include "tune/models/model.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::models {

namespace {

namespace fs = std::filesystem;
using io::GgmlType;
using json = nlohmann::json;

// llama.cpp's llama_ftype values (general.file_type).
struct Encoding {
  std::string name;  // as users write it: "q4_k_m"
  GgmlType base;
  uint32_t file_type;
  bool q4_k_m = false;
};

Encoding parse_encoding(const ExportOptions& o, const ModelConfig& config) {
  std::string s = !o.quant.empty() ? o.quant : o.dtype;
  if (s.empty()) s = config.dtype == DType::f64 ? "f32" : dtype_name(config.dtype);
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (s == "f32" || s == "float32") return {"f32", GgmlType::f32, 0};
  if (s == "f16" || s == "float16") return {"f16", GgmlType::f16, 1};
  if (s == "bf16" || s == "bfloat16") return {"bf16", GgmlType::bf16, 32};
  if (s == "q8_0") return {"q8_0", GgmlType::q8_0, 7};
  if (s == "q4_k_m") return {"q4_k_m", GgmlType::q4_k, 15, true};
  throw Error(str("tune export --format gguf: unknown quant \"", s,
                  "\"; use one of f32, f16, bf16, q8_0, q4_k_m"));
}

std::string gguf_arch(const ModelConfig& c) {
  const std::string& t = c.model_type;
  if (t == "llama" || t == "mistral") return "llama";
  if (t == "qwen2" || t == "qwen3" || t == "gpt2") return t;
  throw Error(str(c.source, ": model_type \"", t,
                  "\" cannot be exported to GGUF yet; tune.cpp writes llama, mistral, qwen2, qwen3 "
                  "and gpt2 (export it with --format hf and use llama.cpp's "
                  "convert_hf_to_gguf.py)"));
}

// ---- weights ----

// One GGUF tensor: its name, shape and layer now, its values when asked (read, merged and laid
// out then), so the export holds one tensor at a time.
struct OutTensor {
  std::string name;
  std::vector<int64_t> shape;  // row-major
  std::function<std::vector<float>()> values;
  int layer = -1;
};

std::vector<float> transpose(const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<float> y(x.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      y[static_cast<size_t>(c * rows + r)] = x[static_cast<size_t>(r * cols + c)];
  return y;
}

// Hugging Face's rotate-half rows (per head: first halves, then second halves) -> llama.cpp's
// interleaved pairs: new row h*D + 2j + c = old row h*D + c*D/2 + j.
std::vector<float> permute_rope_rows(const std::vector<float>& x, int64_t heads, int64_t cols) {
  int64_t rows = static_cast<int64_t>(x.size()) / cols;
  int64_t d = rows / heads;
  std::vector<float> y(x.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t j = 0; j < d / 2; ++j)
      for (int64_t c = 0; c < 2; ++c) {
        const float* src = x.data() + (h * d + c * d / 2 + j) * cols;
        std::copy(src, src + cols, y.data() + (h * d + 2 * j + c) * cols);
      }
  return y;
}

// Llama 3 rope scaling as the rope_freqs tensor: one divisor per frequency.
std::vector<float> llama3_rope_factors(const nn::RopeConfig& rope, int64_t head_dim) {
  std::vector<float> factors;
  const double old_ctx = static_cast<double>(rope.original_max_positions);
  const double low_wavelen = old_ctx / rope.low_freq_factor;
  const double high_wavelen = old_ctx / rope.high_freq_factor;
  for (int64_t i = 0; i < head_dim; i += 2) {
    float freq = 1.0f / std::pow(static_cast<float>(rope.theta),
                                 static_cast<float>(i) / static_cast<float>(head_dim));
    double wavelen = 2 * M_PI / freq;
    if (wavelen < high_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      factors.push_back(static_cast<float>(rope.factor));
    } else {
      double smooth = (old_ctx / wavelen - rope.low_freq_factor) /
                      (rope.high_freq_factor - rope.low_freq_factor);
      factors.push_back(static_cast<float>(1 / ((1 - smooth) / rope.factor + smooth)));
    }
  }
  return factors;
}

// Calls `emit` with every GGUF tensor, in llama.cpp's names and layouts, one at a time.
void for_each_tensor(const MergedWeights& weights, const std::string& arch,
                     const std::function<void(OutTensor&&)>& emit) {
  const ModelConfig& c = weights.config();
  const nn::TransformerConfig& a = c.arch;
  const nn::TensorNames& n = c.names;
  const bool gpt2 = arch == "gpt2";
  auto load = [&](const std::string& gguf, const std::string& hf, int layer) {
    std::vector<int64_t> shape = weights.info(hf).shape;
    // GPT-2's Conv1D weights are stored [in, out]; llama.cpp wants [out, in].
    const bool transposed =
        a.conv1d && shape.size() == 2 && gguf.starts_with("blk.") && hf.ends_with(".weight");
    if (transposed) std::swap(shape[0], shape[1]);
    auto values = [&weights, hf, transposed]() {
      Tensor t = weights.tensor(hf);  // merged with the adapter when it adapts hf
      std::vector<float> v = t.to_f32_vector();
      return transposed ? transpose(v, t.size(0), t.size(1)) : v;
    };
    return OutTensor{gguf, shape, values, layer};
  };
  auto at = [](const std::string& pattern, int64_t l) { return nn::TensorNames::at(pattern, l); };

  if (a.rope.type == nn::RopeType::llama3 && !gpt2) {
    auto f = llama3_rope_factors(a.rope, a.head_dim);
    emit({"rope_freqs.weight", {static_cast<int64_t>(f.size())}, [f] { return f; }, -1});
  }
  OutTensor embed = load("token_embd.weight", n.embed + ".weight", -1);
  if (gpt2) {  // the converter also writes wte as the (tied) output
    OutTensor output = embed;
    output.name = "output.weight";
    emit(std::move(embed));
    emit(std::move(output));
    emit(load("position_embd.weight", n.pos_embed + ".weight", -1));
  } else {
    emit(std::move(embed));
  }
  for (int64_t l = 0; l < a.num_layers; ++l) {
    const std::string blk = str("blk.", l, ".");
    const int li = static_cast<int>(l);
    auto norm = [&](const std::string& gguf, const std::string& hf) {
      emit(load(blk + gguf + ".weight", at(hf, l) + ".weight", li));
      if (a.norm == nn::NormKind::layer) emit(load(blk + gguf + ".bias", at(hf, l) + ".bias", li));
    };
    // heads > 0: permute the rows for llama.cpp's interleaved rope (llama arch q and k).
    auto linear = [&](const std::string& gguf, const std::string& hf, bool bias, int64_t heads) {
      for (const char* kind : {".weight", ".bias"}) {
        if (std::string(kind) == ".bias" && !bias) continue;
        OutTensor t = load(blk + gguf + kind, at(hf, l) + kind, li);
        if (heads > 0) {
          int64_t cols = t.shape.size() == 2 ? t.shape[1] : 1;
          t.values = [read = t.values, heads, cols] {
            return permute_rope_rows(read(), heads, cols);
          };
        }
        emit(std::move(t));
      }
    };
    const bool permute = arch == "llama";
    norm("attn_norm", n.attn_norm);
    if (a.fused_qkv) {
      linear("attn_qkv", n.qkv, a.qkv_bias, 0);
    } else {
      linear("attn_q", n.q, a.qkv_bias, permute ? a.num_heads : 0);
      linear("attn_k", n.k, a.qkv_bias, permute ? a.num_kv_heads : 0);
      linear("attn_v", n.v, a.qkv_bias, 0);
    }
    if (a.qk_norm) {
      emit(load(blk + "attn_q_norm.weight", at(n.q_norm, l) + ".weight", li));
      emit(load(blk + "attn_k_norm.weight", at(n.k_norm, l) + ".weight", li));
    }
    linear("attn_output", n.o, a.o_bias, 0);
    norm("ffn_norm", n.mlp_norm);
    if (a.mlp == nn::MlpKind::swiglu) linear("ffn_gate", n.gate, a.mlp_bias, 0);
    linear("ffn_up", n.up, a.mlp_bias, 0);
    linear("ffn_down", n.down, a.mlp_bias, 0);
  }
  emit(load("output_norm.weight", n.final_norm + ".weight", -1));
  if (a.norm == nn::NormKind::layer) emit(load("output_norm.bias", n.final_norm + ".bias", -1));
  if (!gpt2 && !a.tie_embeddings) emit(load("output.weight", n.lm_head + ".weight", -1));
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third in between.
bool use_more_bits(int64_t i, int64_t n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

GgmlType choose_type(const OutTensor& t, const Encoding& e, int64_t n_layers, bool has_output) {
  const std::string& name = t.name;
  if (t.shape.size() == 1 || name.ends_with("_norm.weight") || name == "position_embd.weight" ||
      name == "rope_freqs.weight")
    return GgmlType::f32;
  const int64_t row = t.shape.back();
  if (!e.q4_k_m) {
    if (e.base == GgmlType::q8_0 && row % 32 != 0)
      return GgmlType::f16;  // the converter's fallback
    return e.base;
  }
  GgmlType type = GgmlType::q4_k;
  if (name == "output.weight" || (!has_output && name == "token_embd.weight")) {
    type = GgmlType::q6_k;
  } else if (name.ends_with("attn_v.weight") || name.ends_with("ffn_down.weight")) {
    if (use_more_bits(t.layer, n_layers)) type = GgmlType::q6_k;
  } else if (name.ends_with("attn_qkv.weight")) {
    type = GgmlType::q5_k;
  }
  return io::gguf_fallback_type(type, row);
}

// ---- tokenizer ----

enum TokenType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};

std::string normalize_regex(std::string r) {
  const std::string ci = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
  const std::string spelled = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
  if (r.starts_with(ci)) r = spelled + r.substr(ci.size());
  return r;
}

// The byte-level split regex of a tokenizer.json pre_tokenizer, or "" when it has none.
void find_split_regexes(const json& p, std::vector<std::string>& out) {
  if (!p.is_object()) return;
  std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const auto& s : p.value("pretokenizers", json::array())) find_split_regexes(s, out);
  } else if (type == "Split" && p.contains("pattern") && p["pattern"].contains("Regex")) {
    out.push_back(p["pattern"]["Regex"].get<std::string>());
  } else if (type == "ByteLevel" && p.value("use_regex", true)) {
    out.push_back(
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");
  } else if (type == "Digits") {
    out.push_back(p.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
  }
}

std::string choose_pre(const json& tokenizer, const std::string& file) {
  std::vector<std::string> regexes;
  if (tokenizer.contains("pre_tokenizer")) find_split_regexes(tokenizer["pre_tokenizer"], regexes);
  const std::string tail = "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  const std::string contractions = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
  const std::vector<std::pair<std::string, std::string>> known = {
      {"gpt-2",
       "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
      {"llama-bpe", contractions + "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}" + tail},
      {"qwen2", contractions + "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" + tail},
  };
  if (regexes.size() == 1) {
    std::string r = normalize_regex(regexes[0]);
    for (const auto& [name, regex] : known)
      if (r == regex) return name;
  }
  std::string seen;
  for (const auto& r : regexes) seen += str(" \"", r, "\"");
  throw Error(str(file, ": pre_tokenizer splits with", regexes.empty() ? " no regex" : seen,
                  ", which matches none of the pre-tokenizers tune.cpp maps to llama.cpp "
                  "(gpt-2, llama-bpe, qwen2); llama.cpp would tokenize differently, so no GGUF "
                  "is written. Convert with llama.cpp's convert_hf_to_gguf.py if it knows "
                  "this tokenizer"));
}

bool looks_special(const std::string& t) {
  return (t.starts_with("<|") && t.ends_with("|>")) ||
         (t.starts_with("<｜") && t.ends_with("｜>")) || t == "<s>" || t == "</s>" ||
         t == "<unk>" || t == "<pad>" || t == "<mask>";
}

struct SpecialIds {
  std::optional<int32_t> bos, eos, unk, pad;
};

void add_tokenizer(io::GgufWriter& w, const std::string& dir, const ModelConfig& config) {
  const std::string file = (fs::path(dir) / "tokenizer.json").string();
  TUNE_CHECK(io::file_exists(file), dir,
             " has no tokenizer.json; a GGUF carries its tokenizer: copy the model's "
             "tokenizer.json and tokenizer_config.json into the folder");
  const json tj = io::read_json_file(file);
  const tok::Tokenizer tokenizer = tok::Tokenizer::load(dir);
  const json& model = tj.at("model");
  const std::string model_type = model.value("type", "");
  const int64_t n_vocab = config.arch.vocab_size;

  std::vector<std::string> tokens(static_cast<size_t>(n_vocab));
  std::vector<int32_t> types(static_cast<size_t>(n_vocab), kUnused);
  std::vector<bool> filled(static_cast<size_t>(n_vocab), false);
  auto set = [&](int64_t id, const std::string& text, int32_t type, const std::string& where) {
    TUNE_CHECK(id >= 0 && id < n_vocab, file, ": ", where, " has id ", id,
               " outside the model's vocab_size ", n_vocab,
               " (config.json); the tokenizer "
               "does not belong to this model");
    tokens[static_cast<size_t>(id)] = text;
    types[static_cast<size_t>(id)] = type;
    filled[static_cast<size_t>(id)] = true;
  };
  std::vector<float> scores;
  const bool spm =
      model_type == "Unigram" || (model_type == "BPE" && model.value("byte_fallback", false));
  if (model_type == "BPE") {
    for (const auto& [text, id] : model.at("vocab").items()) {
      bool byte = spm && text.size() == 6 && text.starts_with("<0x") && text.ends_with(">");
      set(id.get<int64_t>(), text, byte ? kByte : kNormal, "model.vocab \"" + text + "\"");
    }
  } else if (model_type == "Unigram") {
    scores.assign(static_cast<size_t>(n_vocab), 0.0f);
    int64_t id = 0;
    for (const auto& entry : model.at("vocab")) {
      std::string text = entry.at(0).get<std::string>();
      bool byte = text.size() == 6 && text.starts_with("<0x") && text.ends_with(">");
      set(id, text, byte ? kByte : kNormal, "model.vocab[" + std::to_string(id) + "]");
      scores[static_cast<size_t>(id)] = entry.at(1).get<float>();
      ++id;
    }
    if (model.contains("unk_id") && model["unk_id"].is_number())
      types[model["unk_id"].get<size_t>()] = kUnknown;
  } else {
    throw Error(str(file, ": model.type \"", model_type,
                    "\" has no GGUF tokenizer in tune.cpp (BPE and Unigram do)"));
  }
  for (const auto& t : tj.value("added_tokens", json::array())) {
    int64_t id = t.at("id").get<int64_t>();
    std::string text = t.at("content").get<std::string>();
    bool special = t.value("special", false) || looks_special(text);
    set(id, text, special ? kControl : kUserDefined, "added token \"" + text + "\"");
  }
  for (int64_t i = 0; i < n_vocab; ++i)
    if (!filled[static_cast<size_t>(i)]) tokens[static_cast<size_t>(i)] = str("[PAD", i, "]");

  // Special ids: tokenizer_config.json's tokens, else config.json's *_token_id.
  const tok::TokenizerConfig& tc = tokenizer.config();
  SpecialIds ids;
  auto resolve = [&](const std::optional<std::string>& tokstr, const char* config_key) {
    std::optional<int32_t> id;
    if (tokstr) id = tokenizer.token_to_id(*tokstr);
    if (!id && config.json.contains(config_key) && config.json[config_key].is_number_integer())
      id = config.json[config_key].get<int32_t>();
    return id;
  };
  ids.bos = resolve(tc.bos_token, "bos_token_id");
  ids.eos = resolve(tc.eos_token, "eos_token_id");
  ids.unk = resolve(tc.unk_token, "unk_token_id");
  ids.pad = resolve(tc.pad_token, "pad_token_id");
  if (model_type == "BPE" && model.contains("unk_token") && model["unk_token"].is_string())
    if (auto u = tokenizer.token_to_id(model["unk_token"].get<std::string>())) {
      ids.unk = *u;
      if (spm) types[static_cast<size_t>(*u)] = kUnknown;
    }

  // add_bos / add_eos: what tune's post-processor adds around a plain text.
  std::vector<int32_t> plain = tokenizer.encode("a", tok::AddSpecial::no);
  std::vector<int32_t> full = tokenizer.encode("a", tok::AddSpecial::yes);
  size_t prefix = 0;
  while (prefix < full.size() && (full.size() - prefix < plain.size() ||
                                  !std::equal(plain.begin(), plain.end(),
                                              full.begin() + static_cast<std::ptrdiff_t>(prefix))))
    ++prefix;
  TUNE_CHECK(prefix + plain.size() <= full.size() && prefix <= 1 &&
                 full.size() - prefix - plain.size() <= 1,
             file, ": the post-processor adds ", full.size() - plain.size(),
             " special tokens around a text in a way GGUF cannot say (at most one BOS before and "
             "one EOS after)");
  const bool add_bos = prefix == 1, add_eos = full.size() - prefix - plain.size() == 1;
  if (add_bos) ids.bos = full.front();
  if (add_eos) ids.eos = full.back();

  if (spm) {
    w.add_string("tokenizer.ggml.model", "llama");
    if (model_type == "BPE") {
      // Score = -(rank of the merge that first makes the token), so that llama.cpp's
      // highest-score-first merging reproduces BPE's lowest-rank-first order.
      std::unordered_map<std::string, int32_t> id_of;
      for (int64_t i = 0; i < n_vocab; ++i)
        id_of.emplace(tokens[static_cast<size_t>(i)], static_cast<int32_t>(i));
      scores.assign(static_cast<size_t>(n_vocab), -1e9f);
      int64_t rank = 0;
      for (const auto& m : model.at("merges")) {
        std::string merged;
        if (m.is_string()) {
          std::string s = m.get<std::string>();
          size_t sp = s.find(' ');
          merged = s.substr(0, sp) + s.substr(sp + 1);
        } else {
          merged = m.at(0).get<std::string>() + m.at(1).get<std::string>();
        }
        auto it = id_of.find(merged);
        if (it != id_of.end() && scores[static_cast<size_t>(it->second)] == -1e9f)
          scores[static_cast<size_t>(it->second)] = -static_cast<float>(rank);
        ++rank;
      }
      for (int64_t i = 0; i < n_vocab; ++i)
        if (types[static_cast<size_t>(i)] != kNormal) scores[static_cast<size_t>(i)] = 0.0f;
    }
    w.add_strings("tokenizer.ggml.tokens", tokens);
    w.add_f32s("tokenizer.ggml.scores", scores);
    w.add_i32s("tokenizer.ggml.token_type", types);
    // A SentencePiece model prefixes a space (Prepend / Metaspace) unless told not to.
    std::string dump =
        tj.value("normalizer", json()).dump() + tj.value("pre_tokenizer", json()).dump();
    bool prefix_space = dump.find("\"Prepend\"") != std::string::npos ||
                        (dump.find("\"Metaspace\"") != std::string::npos &&
                         dump.find("\"prepend_scheme\":\"never\"") == std::string::npos &&
                         dump.find("\"add_prefix_space\":false") == std::string::npos);
    w.add_bool("tokenizer.ggml.add_space_prefix", prefix_space);
  } else {
    w.add_string("tokenizer.ggml.model", "gpt2");
    w.add_string("tokenizer.ggml.pre", choose_pre(tj, file));
    w.add_strings("tokenizer.ggml.tokens", tokens);
    w.add_i32s("tokenizer.ggml.token_type", types);
    std::vector<std::string> merges;
    for (const auto& m : model.at("merges")) {
      merges.push_back(m.is_string()
                           ? m.get<std::string>()
                           : m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
    }
    w.add_strings("tokenizer.ggml.merges", merges);
  }
  if (ids.bos) w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(*ids.bos));
  if (ids.eos) w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(*ids.eos));
  if (ids.unk) w.add_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(*ids.unk));
  if (ids.pad) w.add_u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(*ids.pad));
  w.add_bool("tokenizer.ggml.add_bos_token", add_bos);
  w.add_bool("tokenizer.ggml.add_eos_token", add_eos);
  std::vector<std::string> named;
  for (const auto& [name, tmpl] : tc.chat_templates) {
    if (name == "default") {
      w.add_string("tokenizer.chat_template", tmpl);
    } else {
      w.add_string("tokenizer.chat_template." + name, tmpl);
      named.push_back(name);
    }
  }
  if (!named.empty()) w.add_strings("tokenizer.chat_templates", named);
}

// ---- metadata ----

void add_hparams(io::GgufWriter& w, const ModelConfig& c, const std::string& arch,
                 const Encoding& e, const std::string& name) {
  const nn::TransformerConfig& a = c.arch;
  w.add_string("general.architecture", arch);
  w.add_string("general.name", name);
  w.add_u32("general.file_type", e.file_type);
  w.add_u32("general.quantization_version", 2);
  const std::string p = arch + ".";
  auto u32 = [](int64_t v) { return static_cast<uint32_t>(v); };
  w.add_u32(p + "vocab_size", u32(a.vocab_size));
  w.add_u32(p + "context_length", u32(a.max_positions));
  w.add_u32(p + "embedding_length", u32(a.hidden_size));
  w.add_u32(p + "block_count", u32(a.num_layers));
  w.add_u32(p + "feed_forward_length", u32(a.intermediate_size));
  w.add_u32(p + "attention.head_count", u32(a.num_heads));
  if (arch == "gpt2") {
    w.add_f32(p + "attention.layer_norm_epsilon", static_cast<float>(a.rms_norm_eps));
    return;
  }
  w.add_u32(p + "attention.head_count_kv", u32(a.num_kv_heads));
  w.add_f32(p + "attention.layer_norm_rms_epsilon", static_cast<float>(a.rms_norm_eps));
  w.add_u32(p + "attention.key_length", u32(a.head_dim));
  w.add_u32(p + "attention.value_length", u32(a.head_dim));
  w.add_u32(p + "rope.dimension_count", u32(a.head_dim));
  w.add_f32(p + "rope.freq_base", static_cast<float>(a.rope.theta));
  if (a.rope.type == nn::RopeType::linear) {
    w.add_string(p + "rope.scaling.type", "linear");
    w.add_f32(p + "rope.scaling.factor", static_cast<float>(a.rope.factor));
  }
}

}  // namespace

void export_gguf(const ExportOptions& options) {
  TUNE_CHECK(!options.out.empty(),
             "tune export --format gguf: no output file; give --out FILE.gguf");
  TUNE_CHECK(!fs::is_directory(options.out), "tune export --format gguf: --out ", options.out,
             " is a directory; give a file name such as model.gguf");
  const ModelConfig config = read_model_config(options.model_dir);
  const std::string arch = gguf_arch(config);
  const Encoding enc = parse_encoding(options, config);

  // Checks the checkpoint and the adapter before anything is written; merges per tensor.
  const MergedWeights weights(options.model_dir, options.adapter_dir);

  io::GgufWriter w;
  std::string name = config.json.value("_name_or_path", "");
  if (name.empty()) name = fs::path(options.model_dir).lexically_normal().filename().string();
  if (name.empty()) name = fs::absolute(options.model_dir).parent_path().filename().string();
  add_hparams(w, config, arch, enc, name);
  add_tokenizer(w, options.model_dir, config);

  const bool has_output = arch == "gpt2" || !config.arch.tie_embeddings;
  std::vector<OutTensor> tensors;
  for_each_tensor(weights, arch, [&](OutTensor&& t) { tensors.push_back(std::move(t)); });
  std::vector<GgmlType> types;
  for (const auto& t : tensors) {
    types.push_back(choose_type(t, enc, config.arch.num_layers, has_output));
    w.declare_tensor(t.name, t.shape, types.back());
  }
  w.write(options.out, [&](size_t i) {
    const OutTensor& t = tensors[i];
    std::vector<float> v = t.values();
    const int64_t n = t.shape.back();
    return io::ggml_encode(types[i], v.data(), static_cast<int64_t>(v.size()) / n, n, t.name);
  });
}

}  // namespace tune::models
