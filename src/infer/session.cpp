// Loading a model directory for generation and turning prompts and command-line options into a
// Generator's inputs.
#include "tune/infer/session.h"

#include <filesystem>

#include "tune/core/error.h"
#include "tune/models/peft.h"
#include "tune/template/chat_template.h"

namespace tune::infer {

namespace fs = std::filesystem;

LoadedModel load_for_generation(const std::string& model_dir, const std::string& adapter_dir,
                                const std::string& tokenizer_dir, Device device, DType dtype) {
  TUNE_CHECK(!model_dir.empty(), "--model DIR is required: a Hugging Face model directory");
  TUNE_CHECK(fs::is_directory(model_dir), "--model ", model_dir, ": no such directory");
  TUNE_CHECK(fs::exists(fs::path(model_dir) / "config.json"), "--model ", model_dir,
             ": not a model directory (it has no config.json)");
  const std::string tok_dir = tokenizer_dir.empty() ? model_dir : tokenizer_dir;
  TUNE_CHECK(fs::exists(fs::path(tok_dir) / "tokenizer.json"),
             tokenizer_dir.empty() ? "--model " : "--tokenizer ", tok_dir,
             ": has no tokenizer.json; pass --tokenizer DIR with the model's tokenizer");
  LoadedModel out;
  out.dir = model_dir;
  models::ModelOptions options;
  options.training = models::Training::none;
  options.device = device;
  options.dtype = dtype;
  if (!adapter_dir.empty()) {
    TUNE_CHECK(fs::exists(fs::path(adapter_dir) / "adapter_config.json"), "--adapter ", adapter_dir,
               ": not a PEFT adapter directory (it has no adapter_config.json)");
    options.training = models::Training::lora;
    options.lora = models::read_adapter_config(adapter_dir);
  }
  out.model = models::load_model(model_dir, options);
  if (!adapter_dir.empty()) models::load_adapter(*out.model, adapter_dir);
  out.tokenizer.emplace(tok::Tokenizer::load(tok_dir));
  const int64_t vocab = out.model->config().arch.vocab_size;
  TUNE_CHECK(out.tokenizer->vocab_size() <= vocab, "the tokenizer in ", tok_dir, " has ",
             out.tokenizer->vocab_size(), " tokens but the model in ", model_dir, " embeds only ",
             vocab, ": they do not belong together");
  out.generation = read_generation_config(model_dir);
  out.eos_token_ids =
      end_of_sequence_ids(out.generation, out.model->config().json, &*out.tokenizer);
  return out;
}

std::vector<OptionSpec> generation_option_specs() {
  using K = OptionKind;
  return {
      {"model", K::text, "",
       "Hugging Face model directory (config.json, model.safetensors, "
       "tokenizer.json, generation_config.json)"},
      {"adapter", K::text, "",
       "PEFT LoRA adapter directory to apply (adapter_config.json + "
       "adapter_model.safetensors)"},
      {"tokenizer", K::text, "", "directory with tokenizer.json when the model's has none"},
      {"device", K::choice, "cpu", "where the model runs", {"cpu", "cuda"}},
      {"dtype",
       K::choice,
       "",
       "weights and activations: f32 on the CPU; bf16 (default), f16 or f32 on CUDA",
       {"f32", "bf16", "f16"}},
      {"system", K::text, "", "system message put first in the conversation (chat template)"},
      {"max_new_tokens", K::integer, "",
       "most tokens to generate (default: generation_config.json's, else 256)"},
      {"do_sample", K::flag, "",
       "sample instead of greedy decoding (default: generation_config.json's do_sample)"},
      {"temperature", K::number, "", "sampling temperature; 0 means greedy (turns sampling on)"},
      {"top_k", K::integer, "",
       "sample from the k most likely tokens; 0 = off (turns sampling on)"},
      {"top_p", K::number, "",
       "sample from the most likely tokens that reach this mass; 1 = off (turns sampling on)"},
      {"min_p", K::number, "",
       "drop tokens below min_p x the top token's probability; 0 = off (turns sampling on)"},
      {"repetition_penalty", K::number, "",
       "divide positive / multiply negative logits of tokens already in the text; 1 = off"},
      {"seed", K::integer, "",
       "seed of the sampling draws: the same seed, the same output "
       "(default 0; turns sampling on)"},
      {"stop", K::list, "",
       "stop when the text contains this string (not returned); repeat "
       "--stop for several, or give a list [a, b]"},
  };
}

Placement placement(const Options& o) {
  Placement p;
  p.device = o.text("device") == "cuda" ? Device::cuda : Device::cpu;
  const std::string dtype = o.text("dtype");
  if (dtype.empty()) {
    p.dtype = p.device == Device::cuda ? DType::bf16 : DType::f32;
  } else {
    p.dtype = dtype == "bf16" ? DType::bf16 : dtype == "f16" ? DType::f16 : DType::f32;
  }
  TUNE_CHECK(p.device == Device::cuda || p.dtype == DType::f32, "--dtype ", dtype,
             " needs --device cuda: on the CPU tune generates in f32");
  return p;
}

GenerateOptions generate_options(const Options& o, const LoadedModel& loaded,
                                 const std::vector<std::string>& stop) {
  GenerateOptions g;
  g.sampling = default_sampling(loaded.generation);
  g.max_new_tokens = loaded.generation.max_new_tokens.value_or(256);
  if (o.is_set("max_new_tokens")) g.max_new_tokens = o.integer("max_new_tokens");
  TUNE_CHECK(g.max_new_tokens >= 0, "--max-new-tokens must be >= 0, got ", g.max_new_tokens);
  if (o.is_set("do_sample")) g.sampling.do_sample = o.flag("do_sample");
  for (const char* key : {"temperature", "top_k", "top_p", "min_p", "seed"})
    if (o.is_set(key)) g.sampling.do_sample = true;
  if (o.is_set("temperature")) g.sampling.temperature = o.number("temperature");
  if (o.is_set("top_k")) g.sampling.top_k = o.integer("top_k");
  if (o.is_set("top_p")) g.sampling.top_p = o.number("top_p");
  if (o.is_set("min_p")) g.sampling.min_p = o.number("min_p");
  if (o.is_set("repetition_penalty"))
    g.sampling.repetition_penalty = o.number("repetition_penalty");
  if (o.is_set("seed")) g.sampling.seed = static_cast<uint64_t>(o.integer("seed"));
  TUNE_CHECK(g.sampling.temperature >= 0, "--temperature must be >= 0, got ",
             g.sampling.temperature);
  if (g.sampling.temperature == 0) g.sampling.do_sample = false;
  TUNE_CHECK(g.sampling.top_k >= 0, "--top-k must be >= 0 (0: off), got ", g.sampling.top_k);
  TUNE_CHECK(g.sampling.top_p > 0 && g.sampling.top_p <= 1, "--top-p must be in (0, 1], got ",
             g.sampling.top_p);
  TUNE_CHECK(g.sampling.min_p >= 0 && g.sampling.min_p <= 1, "--min-p must be in [0, 1], got ",
             g.sampling.min_p);
  TUNE_CHECK(g.sampling.repetition_penalty > 0, "--repetition-penalty must be > 0, got ",
             g.sampling.repetition_penalty);
  g.eos_token_ids = loaded.eos_token_ids;
  g.stop = stop;
  return g;
}

std::vector<int64_t> encode_text(const LoadedModel& loaded, const std::string& text) {
  const std::vector<int32_t> ids = loaded.tokenizer->encode(text, tok::AddSpecial::yes);
  return {ids.begin(), ids.end()};
}

std::string render_chat(const LoadedModel& loaded, const nlohmann::ordered_json& messages,
                        bool add_generation_prompt) {
  const tok::TokenizerConfig& cfg = loaded.tokenizer->config();
  const std::optional<std::string> source = cfg.chat_template();
  TUNE_CHECK(source.has_value(), "the tokenizer of ", loaded.dir,
             " has no chat template (tokenizer_config.json sets no chat_template): use a plain "
             "prompt instead of --chat");
  nlohmann::ordered_json vars = nlohmann::ordered_json::object();
  vars["messages"] = messages;
  vars["add_generation_prompt"] = add_generation_prompt;
  vars["tools"] = nullptr;
  vars["documents"] = nullptr;
  for (const auto& [key, value] : cfg.template_tokens()) vars[key] = value;
  // Parsing a template takes far less than one forward pass; no cache needed.
  return tmpl::ChatTemplate(*source, "chat_template").render(vars);
}

std::vector<int64_t> encode_chat(const LoadedModel& loaded,
                                 const nlohmann::ordered_json& messages) {
  const std::string text = render_chat(loaded, messages, true);
  const std::vector<int32_t> ids = loaded.tokenizer->encode(text, tok::AddSpecial::no);
  return {ids.begin(), ids.end()};
}

}  // namespace tune::infer
