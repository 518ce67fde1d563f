// `tune chat-template`: renders a conversation with a tokenizer's chat template, exactly as
// transformers' apply_chat_template(tokenize=False) does, and prints the string unchanged.
//
// The template's variables are built as transformers builds them: the tokenizer's special tokens
// (special_tokens_map: bos_token, eos_token, unk_token, pad_token, when set), then the input
// object on top (so the input may override them), with messages required and tools, documents
// (None) and add_generation_prompt (False) defaulted when the input leaves them out.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "cli/commands.h"
#include "tune/core/error.h"
#include "tune/template/chat_template.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::cli {

namespace {

void print_help() {
  std::printf(
      "usage: tune chat-template --tokenizer DIR --input FILE.json [--template NAME]\n"
      "       tune chat-template [--tokenizer DIR] --template-file FILE.jinja --input FILE.json\n\n"
      "Renders a conversation with the tokenizer's chat template (tokenizer_config.json's\n"
      "chat_template) exactly as transformers' apply_chat_template(..., tokenize=False) does,\n"
      "and prints the rendered string to stdout unchanged: no newline is added at the end.\n\n"
      "  --tokenizer DIR         a tokenizer directory with tokenizer_config.json\n"
      "  --input FILE.json       a JSON object: {\"messages\": [{\"role\": \"user\", \"content\":"
      " \"...\"}],\n"
      "                          \"tools\": [...], \"add_generation_prompt\": true,\n"
      "                          \"enable_thinking\": false, ...any other template variable}\n"
      "                          (`-` reads it from stdin)\n"
      "  --template NAME         a named template when chat_template is a list (e.g. tool_use);\n"
      "                          default: the one named \"default\"\n"
      "  --template-file FILE    render this Jinja file instead of the tokenizer's template\n\n"
      "Variables: bos_token, eos_token, unk_token and pad_token come from tokenizer_config.json\n"
      "(when set) unless the input sets them; tools and documents default to none and\n"
      "add_generation_prompt to false, as in transformers.\n");
}

std::string read_text_file(const std::string& path, const char* option) {
  if (path == "-") {
    std::ostringstream s;
    s << std::cin.rdbuf();
    return s.str();
  }
  std::ifstream in(path, std::ios::binary);
  TUNE_CHECK(in, option, " ", path, ": cannot open (", std::strerror(errno), ")");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

nlohmann::ordered_json read_input(const std::string& path) {
  std::string text = read_text_file(path, "--input");
  nlohmann::ordered_json j;  // objects keep document order, as Python's dicts (tojson shows it)
  try {
    j = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(str("--input ", path, ": not valid JSON (", e.what(), ")"));
  }
  TUNE_CHECK(j.is_object(), "--input ", path,
             ": expected a JSON object {\"messages\": [...], ...}, got a ", j.type_name());
  auto m = j.find("messages");
  TUNE_CHECK(m != j.end(), "--input ", path,
             ": the object has no \"messages\" (a list of {\"role\": ..., \"content\": ...})");
  TUNE_CHECK(m->is_array(), "--input ", path, ": \"messages\" must be a list, got a ",
             m->type_name());
  return j;
}

}  // namespace

int chat_template_command(const Args& args) {
  std::optional<std::string> tokenizer, input, name, template_file;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      print_help();
      return 0;
    } else if (a == "--tokenizer") {
      tokenizer = option_value(args, i, "a tokenizer directory");
    } else if (a == "--input") {
      input = option_value(args, i, "a JSON file");
    } else if (a == "--template") {
      name = option_value(args, i, "a template name");
    } else if (a == "--template-file") {
      template_file = option_value(args, i, "a Jinja template file");
    } else {
      throw Error(str("unexpected argument \"", a, "\"; see `tune chat-template --help`"));
    }
  }
  TUNE_CHECK(tokenizer || template_file,
             "--tokenizer DIR is required (or --template-file FILE); see "
             "`tune chat-template --help`");
  TUNE_CHECK(input,
             "--input FILE.json is required: a JSON object with \"messages\"; see "
             "`tune chat-template --help`");
  TUNE_CHECK(!(name && template_file), "give --template NAME or --template-file FILE, not both");

  nlohmann::ordered_json vars = nlohmann::ordered_json::object();
  std::string source, source_name;
  if (tokenizer) {
    tok::Tokenizer tk = load_tokenizer_arg(*tokenizer);
    const tok::TokenizerConfig& cfg = tk.config();
    for (const auto& [key, value] : cfg.template_tokens()) vars[key] = value;
    if (!template_file) {
      std::string want = name.value_or("default");
      std::optional<std::string> t = cfg.chat_template(want);
      if (!t && cfg.chat_templates.empty())
        throw Error(str("the tokenizer in ", *tokenizer,
                        " has no chat_template (tokenizer_config.json sets none); pass "
                        "--template-file FILE.jinja to render with a template of your own"));
      if (!t) {
        std::string names;
        for (const auto& [n, _] : cfg.chat_templates) names += str(names.empty() ? "" : ", ", n);
        throw Error(str("the tokenizer in ", *tokenizer, " has no chat template named \"", want,
                        "\"; it has: ", names, " (choose one with --template NAME)"));
      }
      source = *t;
      source_name = str(*tokenizer, " chat_template", name ? " " + *name : "");
    }
  }
  if (template_file) {
    source = read_text_file(*template_file, "--template-file");
    source_name = *template_file;
  }

  nlohmann::ordered_json in = read_input(*input);
  for (auto it = in.begin(); it != in.end(); ++it) vars[it.key()] = it.value();
  for (const char* key : {"tools", "documents"})
    if (!vars.contains(key)) vars[key] = nullptr;
  if (!vars.contains("add_generation_prompt")) vars["add_generation_prompt"] = false;

  tmpl::ChatTemplate tpl(source, source_name);
  std::string out = tpl.render(vars);
  write_all(stdout, out, "stdout");
  TUNE_CHECK(std::fflush(stdout) == 0, "could not write to stdout");
  return 0;
}

}  // namespace tune::cli
