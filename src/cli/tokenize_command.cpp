// `tune tokenize`: text -> token ids with a Hugging Face tokenizer, for people (one TEXT on the
// command line) and for scripts (a JSONL file, encoded with encode_batch on all cores, one output
// line per input line in the same order).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/commands.h"
#include "tune/core/error.h"
#include "tune/io/files.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::cli {

tok::Tokenizer load_tokenizer_arg(const std::string& path) {
  namespace fs = std::filesystem;
  TUNE_CHECK(!path.empty(),
             "--tokenizer needs a directory (with tokenizer.json) or a "
             "tokenizer.json file");
  std::error_code ec;
  TUNE_CHECK(fs::exists(path, ec), "--tokenizer ", path, ": no such file or directory");
  if (fs::is_directory(path, ec))
    TUNE_CHECK(io::file_exists(path + "/tokenizer.json"), "--tokenizer ", path,
               ": the directory has no tokenizer.json (a Hugging Face tokenizer directory holds "
               "tokenizer.json and usually tokenizer_config.json)");
  return tok::Tokenizer::load(path);
}

void write_all(std::FILE* out, std::string_view bytes, const std::string& where) {
  if (bytes.empty()) return;
  TUNE_CHECK(std::fwrite(bytes.data(), 1, bytes.size(), out) == bytes.size(), "could not write to ",
             where);
}

namespace {

void print_help() {
  std::printf(
      "usage: tune tokenize --tokenizer DIR [--no-special] [--json] TEXT\n"
      "       tune tokenize --tokenizer DIR [--no-special] --input FILE.jsonl [--output FILE]\n\n"
      "Encodes text into token ids exactly as Hugging Face's tokenizers does.\n\n"
      "  --tokenizer DIR     a directory with tokenizer.json (and tokenizer_config.json), or a\n"
      "                      tokenizer.json file\n"
      "  TEXT                the text to encode (one argument: quote it); `-` reads stdin to its\n"
      "                      end, byte for byte\n"
      "  --no-special        do not add the post-processor's special tokens (BOS, EOS, ...);\n"
      "                      special tokens written in the text are still recognized\n"
      "  --json              print the ids as a JSON array instead of space-separated\n"
      "  --input FILE.jsonl  encode every line of FILE, a JSON object\n"
      "                        {\"text\": \"...\", \"add_special_tokens\": false}\n"
      "                      (add_special_tokens optional; --no-special sets its default); writes\n"
      "                      one line {\"ids\": [...]} per input line, in the same order, encoded\n"
      "                      on all cores (OMP_NUM_THREADS sets how many)\n"
      "  --output FILE       write the JSONL there instead of stdout (atomically: the file\n"
      "                      appears complete or not at all)\n\n"
      "Ids go to stdout on one line, followed by a newline.\n");
}

std::string read_stdin() {
  std::string s{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  return s;
}

void append_ids(std::string& out, const std::vector<int32_t>& ids, char sep) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += sep;
    out += std::to_string(ids[i]);
  }
}

// Encodes `texts` with per-text special-token flags: one encode_batch per flag value, results
// scattered back into input order.
std::vector<std::vector<int32_t>> encode_mixed(const tok::Tokenizer& tk,
                                               std::vector<std::string>& texts,
                                               const std::vector<tok::AddSpecial>& add) {
  std::vector<std::vector<int32_t>> out(texts.size());
  for (tok::AddSpecial flag : {tok::AddSpecial::yes, tok::AddSpecial::no}) {
    std::vector<size_t> where;
    std::vector<std::string> group;
    for (size_t i = 0; i < texts.size(); ++i)
      if (add[i] == flag) {
        where.push_back(i);
        group.push_back(std::move(texts[i]));
      }
    if (group.empty()) continue;
    auto ids = tk.encode_batch(group, flag);
    TUNE_ASSERT(ids.size() == group.size(), "encode_batch returned ", ids.size(), " results for ",
                group.size(), " texts");
    for (size_t k = 0; k < where.size(); ++k) out[where[k]] = std::move(ids[k]);
  }
  return out;
}

// One JSONL line -> (text, flag); errors name the file and the 1-based line number.
void parse_line(const std::string& line, const std::string& file, size_t line_no,
                tok::AddSpecial default_add, std::string& text, tok::AddSpecial& add) {
  std::string where = str(file, ":", line_no);
  TUNE_CHECK(!line.empty() && line != "\r", where,
             ": empty line; each line must be a JSON object {\"text\": \"...\"}");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(str(where, ": not valid JSON (", e.what(),
                    "); each line must be a JSON object {\"text\": \"...\"}"));
  }
  TUNE_CHECK(j.is_object(), where, ": expected a JSON object {\"text\": \"...\"}, got a ",
             j.type_name());
  auto t = j.find("text");
  TUNE_CHECK(t != j.end(), where, ": the object has no \"text\" key");
  TUNE_CHECK(t->is_string(), where, ": \"text\" must be a string, got a ", t->type_name());
  text = t->get<std::string>();
  add = default_add;
  if (auto a = j.find("add_special_tokens"); a != j.end()) {
    TUNE_CHECK(a->is_boolean(), where, ": \"add_special_tokens\" must be true or false, got ",
               a->dump());
    add = a->get<bool>() ? tok::AddSpecial::yes : tok::AddSpecial::no;
  }
}

class Sink {
 public:
  explicit Sink(const std::optional<std::string>& path) {
    if (path) file_.emplace(*path);
  }
  void write(std::string_view bytes) {
    if (file_) {
      file_->write(bytes);
    } else {
      write_all(stdout, bytes, "stdout");
    }
  }
  void commit() {
    if (file_) {
      file_->commit();
    } else {
      TUNE_CHECK(std::fflush(stdout) == 0, "could not write to stdout");
    }
  }

 private:
  std::optional<io::AtomicFile> file_;
};

void encode_file(const tok::Tokenizer& tk, const std::string& input,
                 const std::optional<std::string>& output, tok::AddSpecial default_add) {
  std::ifstream in(input, std::ios::binary);
  TUNE_CHECK(in, "--input ", input, ": cannot open (", std::strerror(errno), ")");
  Sink sink(output);
  // Chunks bound memory on large files; each chunk is one encode_batch over all cores.
  constexpr size_t kChunkBytes = 32u << 20, kChunkLines = 1u << 16;
  std::vector<std::string> texts;
  std::vector<tok::AddSpecial> adds;
  size_t chunk_bytes = 0, line_no = 0;
  std::string line, out;
  auto flush = [&] {
    auto ids = encode_mixed(tk, texts, adds);
    out.clear();
    for (const auto& v : ids) {
      out += "{\"ids\":[";
      append_ids(out, v, ',');
      out += "]}\n";
    }
    sink.write(out);
    texts.clear();
    adds.clear();
    chunk_bytes = 0;
  };
  while (std::getline(in, line)) {
    ++line_no;
    std::string text;
    tok::AddSpecial add;
    parse_line(line, input, line_no, default_add, text, add);
    chunk_bytes += text.size();
    texts.push_back(std::move(text));
    adds.push_back(add);
    if (chunk_bytes >= kChunkBytes || texts.size() >= kChunkLines) flush();
  }
  TUNE_CHECK(in.eof(), "--input ", input, ": read error after line ", line_no);
  if (!texts.empty()) flush();
  sink.commit();
}

}  // namespace

int tokenize_command(const Args& args) {
  std::string tokenizer;
  std::optional<std::string> text, input, output;
  tok::AddSpecial add = tok::AddSpecial::yes;
  bool json = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      print_help();
      return 0;
    } else if (a == "--tokenizer") {
      tokenizer = option_value(args, i, "a tokenizer directory");
    } else if (a == "--no-special") {
      add = tok::AddSpecial::no;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--input") {
      input = option_value(args, i, "a JSONL file");
    } else if (a == "--output") {
      output = option_value(args, i, "a file to write");
    } else if (a == "--") {
      TUNE_CHECK(i + 2 == args.size() && !text, "`--` must be followed by exactly the TEXT");
      text = args[++i];
    } else if (a.starts_with("-") && a != "-") {
      throw Error(str("unknown option \"", a,
                      "\"; see `tune tokenize --help` (a TEXT starting "
                      "with '-' goes after `--`)"));
    } else {
      TUNE_CHECK(!text, "give one TEXT (quote text with spaces), got a second one: \"", a, "\"");
      text = a;
    }
  }
  TUNE_CHECK(!tokenizer.empty(), "--tokenizer DIR is required; see `tune tokenize --help`");
  TUNE_CHECK(!(text && input), "give either TEXT or --input FILE.jsonl, not both");
  TUNE_CHECK(text || input, "nothing to encode: give TEXT or --input FILE.jsonl");
  TUNE_CHECK(!output || input, "--output goes with --input; TEXT's ids go to stdout");
  TUNE_CHECK(!(json && input), "--json goes with TEXT; --input always writes JSONL");

  tok::Tokenizer tk = load_tokenizer_arg(tokenizer);
  if (input) {
    encode_file(tk, *input, output, add);
    return 0;
  }
  std::string s = *text == "-" ? read_stdin() : *text;
  std::vector<int32_t> ids = tk.encode(s, add);
  std::string out;
  if (json) out += '[';
  append_ids(out, ids, json ? ',' : ' ');
  if (json) out += ']';
  out += '\n';
  write_all(stdout, out, "stdout");
  return 0;
}

}  // namespace tune::cli
