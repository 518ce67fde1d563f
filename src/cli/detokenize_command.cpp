// `tune detokenize`: token ids -> text with a Hugging Face tokenizer. Prints the decoded text
// exactly (no newline added), so `tune detokenize ... > f` holds precisely the decoded bytes;
// --input decodes a JSONL file of id lists for scripts.
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/commands.h"
#include "tune/core/error.h"
#include "tune/io/files.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::cli {

namespace {

void print_help() {
  std::printf(
      "usage: tune detokenize --tokenizer DIR [--skip-special] IDS...\n"
      "       tune detokenize --tokenizer DIR [--skip-special] --input FILE.jsonl "
      "[--output FILE]\n\n"
      "Decodes token ids into text exactly as Hugging Face's tokenizers does.\n\n"
      "  --tokenizer DIR     a directory with tokenizer.json, or a tokenizer.json file\n"
      "  IDS...              token ids, as separate arguments or in one argument separated by\n"
      "                      spaces or commas; a JSON array such as the output of\n"
      "                      `tune tokenize --json` works too\n"
      "  --skip-special      leave out special tokens (BOS, EOS, <|eot_id|>, ...)\n"
      "  --input FILE.jsonl  decode every line of FILE, a JSON object\n"
      "                        {\"ids\": [...], \"skip_special_tokens\": true}\n"
      "                      (skip_special_tokens optional; --skip-special sets its default);\n"
      "                      writes one line {\"text\": \"...\"} per input line, in order\n"
      "  --output FILE       write the JSONL there instead of stdout (atomically)\n\n"
      "The text is printed exactly as decoded: no newline is added at the end. Bytes that do not\n"
      "form valid UTF-8 (an id sequence cut inside a character) are printed as the tokenizer\n"
      "decodes them; in --input's JSON they become U+FFFD.\n");
}

void check_id(const tok::Tokenizer& tk, int64_t id, const std::string& where) {
  TUNE_CHECK(id >= 0 && id <= INT32_MAX && tk.id_to_token(static_cast<int32_t>(id)), where, "id ",
             id, " is not in the tokenizer's vocabulary (", tk.vocab_size(),
             " tokens including added ones)");
}

// "1 2,3" or "[1, 2, 3]" -> ids.
void parse_ids(const std::string& arg, std::vector<int64_t>& ids) {
  size_t i = 0;
  auto is_sep = [](char c) {
    return c == ' ' || c == ',' || c == '\t' || c == '\n' || c == '\r' || c == '[' || c == ']';
  };
  while (i < arg.size()) {
    if (is_sep(arg[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < arg.size() && !is_sep(arg[j])) ++j;
    int64_t v = 0;
    auto [p, ec] = std::from_chars(arg.data() + i, arg.data() + j, v);
    TUNE_CHECK(ec == std::errc() && p == arg.data() + j, "\"", arg.substr(i, j - i),
               "\" is not a token id (ids are integers, e.g. `tune detokenize --tokenizer DIR "
               "9906 1917`)");
    ids.push_back(v);
    i = j;
  }
}

void decode_file(const tok::Tokenizer& tk, const std::string& input,
                 const std::optional<std::string>& output, tok::SkipSpecial default_skip) {
  std::ifstream in(input, std::ios::binary);
  TUNE_CHECK(in, "--input ", input, ": cannot open (", std::strerror(errno), ")");
  std::optional<io::AtomicFile> file;
  if (output) file.emplace(*output);
  std::string line, out;
  size_t line_no = 0;
  std::vector<int32_t> ids;
  while (std::getline(in, line)) {
    ++line_no;
    std::string where = str(input, ":", line_no, ": ");
    TUNE_CHECK(!line.empty() && line != "\r", where,
               "empty line; each line must be a JSON object {\"ids\": [...]}");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error(str(where, "not valid JSON (", e.what(), ")"));
    }
    TUNE_CHECK(j.is_object() && j.contains("ids") && j["ids"].is_array(), where,
               "expected a JSON object {\"ids\": [...]}");
    ids.clear();
    for (const auto& v : j["ids"]) {
      TUNE_CHECK(v.is_number_integer(), where, "ids must be integers, got ", v.dump());
      check_id(tk, v.get<int64_t>(), where);
      ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
    }
    tok::SkipSpecial skip = default_skip;
    if (auto s = j.find("skip_special_tokens"); s != j.end()) {
      TUNE_CHECK(s->is_boolean(), where, "\"skip_special_tokens\" must be true or false");
      skip = s->get<bool>() ? tok::SkipSpecial::yes : tok::SkipSpecial::no;
    }
    nlohmann::json text = tk.decode(ids, skip);
    out = "{\"text\":";
    out += text.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    out += "}\n";
    if (file) {
      file->write(out);
    } else {
      write_all(stdout, out, "stdout");
    }
  }
  TUNE_CHECK(in.eof(), "--input ", input, ": read error after line ", line_no);
  if (file) file->commit();
}

}  // namespace

int detokenize_command(const Args& args) {
  std::string tokenizer;
  std::optional<std::string> input, output;
  std::vector<int64_t> ids;
  bool have_ids = false;
  tok::SkipSpecial skip = tok::SkipSpecial::no;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      print_help();
      return 0;
    } else if (a == "--tokenizer") {
      tokenizer = option_value(args, i, "a tokenizer directory");
    } else if (a == "--skip-special") {
      skip = tok::SkipSpecial::yes;
    } else if (a == "--input") {
      input = option_value(args, i, "a JSONL file");
    } else if (a == "--output") {
      output = option_value(args, i, "a file to write");
    } else if (a.starts_with("--")) {
      throw Error(str("unknown option \"", a, "\"; see `tune detokenize --help`"));
    } else {
      parse_ids(a, ids);
      have_ids = true;
    }
  }
  TUNE_CHECK(!tokenizer.empty(), "--tokenizer DIR is required; see `tune detokenize --help`");
  TUNE_CHECK(!(have_ids && input), "give either IDS or --input FILE.jsonl, not both");
  TUNE_CHECK(have_ids || input, "nothing to decode: give token IDS or --input FILE.jsonl");
  TUNE_CHECK(!output || input, "--output goes with --input; the text of IDS goes to stdout");

  tok::Tokenizer tk = load_tokenizer_arg(tokenizer);
  if (input) {
    decode_file(tk, *input, output, skip);
    return 0;
  }
  std::vector<int32_t> ids32;
  ids32.reserve(ids.size());
  for (int64_t id : ids) {
    check_id(tk, id, "");
    ids32.push_back(static_cast<int32_t>(id));
  }
  write_all(stdout, tk.decode(ids32, skip), "stdout");
  std::fflush(stdout);
  return 0;
}

}  // namespace tune::cli
