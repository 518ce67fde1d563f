// config.json -> ModelConfig: the keys every Llama-family config shares, both rope layouts, then
// the family's own keys.
#include <algorithm>

#include "models/family.h"
#include "tune/io/files.h"

namespace tune::models {

namespace {

const std::vector<const Family*>& families() {
  static const std::vector<const Family*> all = {&llama_family(), &mistral_family(),
                                                 &qwen2_family(), &qwen3_family(), &gpt2_family()};
  return all;
}

std::string joined_types() {
  std::string s;
  for (const auto& t : supported_model_types()) s += (s.empty() ? "" : ", ") + t;
  return s;
}

// Rope parameters from transformers 5's "rope_parameters" or the older "rope_theta" +
// "rope_scaling" (whose type key is "rope_type" or, older still, "type").
nn::RopeConfig read_rope(const ConfigReader& c) {
  nn::RopeConfig rope;
  std::string type = "default";
  if (c.has("rope_parameters")) {
    ConfigReader p = c.object("rope_parameters");
    rope.theta = p.number("rope_theta", 10000.0);
    type = p.string("rope_type", "default");
    if (type != "default") {
      rope.factor = p.number("factor", 1.0);
      rope.low_freq_factor = p.number("low_freq_factor", 1.0);
      rope.high_freq_factor = p.number("high_freq_factor", 4.0);
      rope.original_max_positions = p.integer("original_max_position_embeddings", 8192);
    }
  } else {
    rope.theta = c.number("rope_theta", 10000.0);
    if (c.has("rope_scaling")) {
      ConfigReader s = c.object("rope_scaling");
      type = s.has("rope_type") ? s.string("rope_type") : s.string("type", "default");
      rope.factor = s.number("factor", 1.0);
      rope.low_freq_factor = s.number("low_freq_factor", 1.0);
      rope.high_freq_factor = s.number("high_freq_factor", 4.0);
      rope.original_max_positions = s.integer("original_max_position_embeddings", 8192);
    }
  }
  if (type == "default")
    rope.type = nn::RopeType::standard;
  else if (type == "linear")
    rope.type = nn::RopeType::linear;
  else if (type == "llama3")
    rope.type = nn::RopeType::llama3;
  else
    c.fail("rope_type", str("is \"", type,
                            "\", which tune.cpp does not support yet; supported: "
                            "default, linear, llama3"));
  return rope;
}

// The keys every Llama-family config shares.
void read_llama_keys(const ConfigReader& c, nn::TransformerConfig& a) {
  a.vocab_size = c.integer("vocab_size");
  a.hidden_size = c.integer("hidden_size");
  a.intermediate_size = c.integer("intermediate_size");
  a.num_layers = c.integer("num_hidden_layers");
  a.num_heads = c.integer("num_attention_heads");
  a.num_kv_heads = c.integer("num_key_value_heads", a.num_heads);
  for (auto [key, v] : {std::pair{"vocab_size", a.vocab_size},
                        {"hidden_size", a.hidden_size},
                        {"intermediate_size", a.intermediate_size},
                        {"num_hidden_layers", a.num_layers},
                        {"num_attention_heads", a.num_heads},
                        {"num_key_value_heads", a.num_kv_heads}})
    if (v <= 0) c.fail(key, str("must be positive, got ", v));
  if (a.num_heads % a.num_kv_heads != 0)
    c.fail("num_key_value_heads",
           str("(", a.num_kv_heads, ") must divide num_attention_heads (", a.num_heads, ")"));
  if (!c.has("head_dim") && a.hidden_size % a.num_heads != 0)
    c.fail("head_dim", str("is missing and hidden_size (", a.hidden_size,
                           ") is not divisible by num_attention_heads (", a.num_heads, ")"));
  a.head_dim = c.integer("head_dim", a.hidden_size / a.num_heads);
  a.max_positions = c.integer("max_position_embeddings", 2048);
  a.rms_norm_eps = c.number("rms_norm_eps", 1e-6);
  a.tie_embeddings = c.boolean("tie_word_embeddings", false);
  a.rope = read_rope(c);
}

}  // namespace

std::vector<std::string> supported_model_types() {
  std::vector<std::string> out;
  for (const Family* f : families()) out.push_back(f->model_type);
  return out;
}

ModelConfig parse_model_config(const nlohmann::json& json, const std::string& source) {
  TUNE_CHECK(json.is_object(), source, ": expected a JSON object");
  ConfigReader c(json, source);
  ModelConfig out;
  out.source = source;
  out.json = json;
  out.model_type = c.string("model_type");
  auto it = std::find_if(families().begin(), families().end(),
                         [&](const Family* f) { return out.model_type == f->model_type; });
  if (it == families().end())
    c.fail("model_type", str("is \"", out.model_type,
                             "\", which tune.cpp does not support; "
                             "supported model types: ",
                             joined_types()));

  if ((*it)->keys == Keys::llama) read_llama_keys(c, out.arch);
  std::string dtype = c.has("dtype") ? c.string("dtype") : c.string("torch_dtype", "float32");
  try {
    out.dtype = parse_dtype(dtype);
  } catch (const Error&) {
    c.fail(c.has("dtype") ? "dtype" : "torch_dtype",
           str("is \"", dtype, "\"; expected float32, bfloat16 or float16"));
  }
  (*it)->configure(c, out);
  return out;
}

ModelConfig read_model_config(const std::string& dir) {
  std::string path = dir + "/config.json";
  TUNE_CHECK(io::file_exists(path), "no config.json in ", dir,
             ": point tune at a Hugging Face model directory (config.json + *.safetensors)");
  return parse_model_config(io::read_json_file(path), path);
}

}  // namespace tune::models
