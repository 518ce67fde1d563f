// `tune export`: a model (plus an optional LoRA adapter) written in the layout another runtime
// loads — hf (adapter merged), peft (the adapter alone) or gguf. The options are checked here,
// before anything is read, so that a typo costs nothing; the library does the writing.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "tune/core/error.h"
#include "tune/core/options.h"
#include "tune/models/export.h"
#include "tune/models/merge.h"

namespace tune::cli {

namespace {

namespace fs = std::filesystem;

std::vector<OptionSpec> export_specs() {
  using K = OptionKind;
  return {
      {"model",
       K::text,
       "",
       "the base model: a Hugging Face folder (config.json + *.safetensors)",
       {}},
      {"adapter",
       K::text,
       "",
       "a LoRA adapter in PEFT's layout (adapter_config.json + adapter_model.safetensors); "
       "hf merges it into the weights, peft writes it alone, gguf merges it",
       {}},
      {"format", K::choice, "", "what to write: hf, peft or gguf", {"hf", "peft", "gguf"}},
      {"dtype",
       K::choice,
       "",
       "dtype of the written weights (default: the model's own, config.json's dtype; for peft the "
       "adapter's as stored)",
       {"bf16", "f16", "f32"}},
      {"quant",
       K::choice,
       "",
       "gguf only: tensor encoding (default: follows --dtype)",
       {"f32", "f16", "bf16", "q8_0", "q4_k_m"}},
      {"max_shard_size",
       K::text,
       "",
       "hf only: the largest weight file, as transformers writes it (\"5GB\" when not given, "
       "\"200MB\", \"1.5GiB\"); bigger models are split into model-0000i-of-0000N.safetensors "
       "with model.safetensors.index.json",
       {}},
      {"out", K::text, "", "where to write: a folder (hf, peft) or a .gguf file", {}},
      {"overwrite", K::flag, "false", "replace an existing --out (an earlier export)", {}},
  };
}

void print_help(const Options& options) {
  std::printf(
      "usage: tune export --model DIR [--adapter DIR] --format hf|peft|gguf --out PATH\n"
      "                   [--dtype bf16|f16|f32] [--quant f32|f16|bf16|q8_0|q4_k_m]\n"
      "                   [--max-shard-size 5GB] [--overwrite]\n\n"
      "Writes a model for another runtime:\n"
      "  hf    a Hugging Face model folder that transformers, vLLM and tune load: the LoRA\n"
      "        adapter merged into the weights (W + scale*B*A in f32, then --dtype),\n"
      "        config.json, tokenizer files and generation_config.json. Without --adapter it\n"
      "        re-exports the model (e.g. to another dtype).\n"
      "  peft  the adapter alone in PEFT's layout (adapter_config.json +\n"
      "        adapter_model.safetensors), checked against the base model.\n"
      "  gguf  one .gguf file for llama.cpp (adapter merged), tensors as --quant says.\n\n"
      "Everything is written under a temporary name next to --out and renamed when complete;\n"
      "an existing --out is an error unless --overwrite is given.\n\n"
      "options:\n%s  -h, --help                        this help\n",
      options.help_text(true).c_str());
}

const char* format_name(models::ExportFormat f) {
  switch (f) {
    case models::ExportFormat::hf:
      return "hf";
    case models::ExportFormat::peft:
      return "peft";
    case models::ExportFormat::gguf:
      return "gguf";
  }
  return "?";
}

uint64_t written_bytes(const std::string& out) {
  std::error_code ec;
  if (fs::is_regular_file(out, ec)) return fs::file_size(out, ec);
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(out, ec))
    if (e.is_regular_file(ec)) n += e.file_size(ec);
  return n;
}

}  // namespace

int export_command(const Args& args) {
  Options o(export_specs());
  if (Options::wants_help(args)) {
    print_help(o);
    return 0;
  }
  const std::vector<std::string> positionals = o.parse_args(args);
  TUNE_CHECK(positionals.empty(), "unexpected argument \"",
             positionals.empty() ? "" : positionals[0],
             "\": every input is an option (--model DIR ...); see `tune export --help`");
  TUNE_CHECK(o.is_set("model"), "--model DIR is required; see `tune export --help`");
  TUNE_CHECK(o.is_set("format"),
             "--format is required: hf (merged model), peft (adapter) or gguf (llama.cpp)");
  TUNE_CHECK(o.is_set("out"), "--out PATH is required; see `tune export --help`");

  models::ExportOptions e;
  e.model_dir = o.text("model");
  e.adapter_dir = o.text("adapter");
  e.dtype = o.text("dtype");
  e.quant = o.text("quant");
  e.out = o.text("out");
  const std::string format = o.text("format");
  e.format = format == "hf"     ? models::ExportFormat::hf
             : format == "peft" ? models::ExportFormat::peft
                                : models::ExportFormat::gguf;
  TUNE_CHECK(e.quant.empty() || e.format == models::ExportFormat::gguf,
             "--quant is a GGUF option: ", "--format ", format, " writes plain ",
             e.format == models::ExportFormat::hf ? "weights" : "LoRA weights",
             "; choose their type with --dtype (bf16, f16, f32), or use --format gguf");
  TUNE_CHECK(!o.is_set("max_shard_size") || e.format == models::ExportFormat::hf,
             "--max-shard-size splits the weight files of --format hf; --format ", format,
             " writes ", e.format == models::ExportFormat::peft ? "one adapter file" : "one file");
  TUNE_CHECK(e.format != models::ExportFormat::peft || !e.adapter_dir.empty(),
             "--format peft writes a LoRA adapter: pass --adapter DIR (adapter_config.json + "
             "adapter_model.safetensors)");
  TUNE_CHECK(fs::is_directory(e.model_dir), "--model ", e.model_dir,
             ": no such directory; pass a Hugging Face model folder (config.json + "
             "*.safetensors)");
  TUNE_CHECK(e.adapter_dir.empty() || fs::is_directory(e.adapter_dir), "--adapter ", e.adapter_dir,
             ": no such directory; pass a PEFT adapter folder (adapter_config.json + "
             "adapter_model.safetensors)");
  const uint64_t max_shard =
      o.is_set("max_shard_size")
          ? models::parse_byte_size(o.text("max_shard_size"), "--max-shard-size")
          : models::kDefaultMaxShardBytes;
  std::error_code ec;
  TUNE_CHECK(!fs::exists(e.out, ec) || o.flag("overwrite"), "--out ", e.out,
             " exists; pass --overwrite to replace it, or choose another path");

  const auto start = std::chrono::steady_clock::now();
  switch (e.format) {
    case models::ExportFormat::hf:
      models::export_hf(e, max_shard);
      break;
    case models::ExportFormat::peft:
      models::export_peft(e);
      break;
    case models::ExportFormat::gguf:
      models::export_gguf(e);
      break;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(
      stderr, "wrote %s (%s%s%s%s, %.1f MB) in %.1f s\n", e.out.c_str(), format_name(e.format),
      e.dtype.empty() ? "" : ", ", e.dtype.c_str(),
      e.adapter_dir.empty() || e.format == models::ExportFormat::peft ? "" : ", adapter merged",
      written_bytes(e.out) / 1e6, s);
  return 0;
}

}  // namespace tune::cli
