// Readers for the data file formats. Files are read whole (the tokenized cache, not the source
// text, is what training keeps mapped); JSON Lines are parsed line by line with simdjson's DOM
// parser and converted to nlohmann::ordered_json, which keeps keys in document order as the
// chat templates expect.
#include "sources.h"

#include <simdjson.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tune/core/error.h"

namespace tune::data {

namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

const std::vector<std::string> kExtensions = {".jsonl", ".json", ".csv", ".txt"};

std::string extension_of(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext;
}

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TUNE_CHECK(in, "cannot open data file ", path, ": ", std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

ordered_json to_json(simdjson::dom::element e) {
  using simdjson::dom::element_type;
  switch (e.type()) {
    case element_type::ARRAY: {
      ordered_json a = ordered_json::array();
      simdjson::dom::array array;
      if (e.get_array().get(array) == simdjson::SUCCESS) {
        for (simdjson::dom::element x : array) a.push_back(to_json(x));
      }
      return a;
    }
    case element_type::OBJECT: {
      ordered_json o = ordered_json::object();
      simdjson::dom::object object;
      if (e.get_object().get(object) == simdjson::SUCCESS) {
        for (auto field : object) o[std::string(field.key)] = to_json(field.value);
      }
      return o;
    }
    case element_type::INT64:
      return e.get_int64().value_unsafe();
    case element_type::UINT64:
      return e.get_uint64().value_unsafe();
    case element_type::DOUBLE:
      return e.get_double().value_unsafe();
    case element_type::STRING:
      return std::string(e.get_string().value_unsafe());
    case element_type::BOOL:
      return e.get_bool().value_unsafe();
    case element_type::NULL_VALUE:
      return nullptr;
  }
  return nullptr;
}

const char* type_name(simdjson::dom::element_type t) {
  using simdjson::dom::element_type;
  switch (t) {
    case element_type::ARRAY:
      return "an array";
    case element_type::OBJECT:
      return "an object";
    case element_type::STRING:
      return "a string";
    case element_type::BOOL:
      return "a boolean";
    case element_type::NULL_VALUE:
      return "null";
    default:
      return "a number";
  }
}

bool blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
}

// A bad record: thrown, or counted and passed over with on_error: skip.
struct Skipper {
  const DataConfig& cfg;
  int64_t& skipped;
  void bad(const std::string& where, const std::string& what) {
    if (cfg.on_error == OnError::skip) {
      ++skipped;
      return;
    }
    throw Error(str(where, ": ", what, ". Fix the record, or set data.on_error: skip"));
  }
};

void read_jsonl(const std::string& path, const std::string& bytes, const DataConfig& cfg,
                const std::function<void(Record&&)>& sink, int64_t& skipped,
                const std::function<void(int64_t)>& progress) {
  simdjson::dom::parser parser;
  Skipper skip{cfg, skipped};
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < bytes.size()) {
    size_t end = bytes.find('\n', pos);
    if (end == std::string::npos) end = bytes.size();
    ++line_no;
    std::string_view line(bytes.data() + pos, end - pos);
    pos = end + 1;
    if (line_no == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);  // BOM
    if (blank(line)) continue;
    const std::string where = str(path, ":", line_no);
    simdjson::dom::element doc;
    const auto error = parser.parse(line.data(), line.size()).get(doc);
    if (error) {
      skip.bad(where, str("invalid JSON (", simdjson::error_message(error), ")"));
      continue;
    }
    if (doc.type() != simdjson::dom::element_type::OBJECT) {
      skip.bad(where, str("expected a JSON object per line, got ", type_name(doc.type())));
      continue;
    }
    sink(Record{to_json(doc), where});
    if (progress && (line_no & 1023) == 0) progress(static_cast<int64_t>(pos));
  }
}

void read_json(const std::string& path, const std::string& bytes, const DataConfig& cfg,
               const std::function<void(Record&&)>& sink, int64_t& skipped,
               const std::function<void(int64_t)>& progress) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const auto error = parser.parse(bytes.data(), bytes.size()).get(doc);
  if (error) {
    // Hugging Face's "json" loader also reads JSON Lines saved as .json.
    const size_t first = bytes.find_first_not_of(" \t\r\n\xEF\xBB\xBF");
    if (first != std::string::npos && bytes[first] == '{') {
      read_jsonl(path, bytes, cfg, sink, skipped, progress);
      return;
    }
    throw Error(str(path, ": invalid JSON (", simdjson::error_message(error),
                    "). A .json data file holds an array of objects (or one object per line)"));
  }
  TUNE_CHECK(doc.type() == simdjson::dom::element_type::ARRAY, path,
             ": a .json data file must hold an array of objects, got ", type_name(doc.type()));
  Skipper skip{cfg, skipped};
  int64_t i = 0;
  simdjson::dom::array array;
  TUNE_ASSERT(doc.get_array().get(array) == simdjson::SUCCESS, "an array that is not one");
  for (simdjson::dom::element e : array) {
    ++i;
    const std::string where = str(path, ": record ", i);
    if (e.type() != simdjson::dom::element_type::OBJECT) {
      skip.bad(where, str("expected an object, got ", type_name(e.type())));
      continue;
    }
    sink(Record{to_json(e), where});
  }
}

// RFC 4180: fields separated by commas; a quoted field may hold commas, newlines and "" for a
// quote. Lines end with LF or CRLF. Returns false at the end of the input.
struct CsvReader {
  std::string_view bytes;
  size_t pos = 0;
  int64_t line = 1;  // the line the next record starts on

  bool next(std::vector<std::string>& fields, int64_t& start_line, std::string& error) {
    fields.clear();
    error.clear();
    while (pos < bytes.size() && (bytes[pos] == '\n' || bytes[pos] == '\r')) {  // blank lines
      if (bytes[pos] == '\n') ++line;
      ++pos;
    }
    if (pos >= bytes.size()) return false;
    start_line = line;
    std::string field;
    bool quoted = false, was_quoted = false;
    while (true) {
      if (pos >= bytes.size()) {
        if (quoted) error = "a quoted field is not closed before the end of the file";
        fields.push_back(std::move(field));
        return true;
      }
      const char c = bytes[pos++];
      if (quoted) {
        if (c == '"') {
          if (pos < bytes.size() && bytes[pos] == '"') {
            field += '"';
            ++pos;
          } else {
            quoted = false;
          }
        } else {
          if (c == '\n') ++line;
          field += c;
        }
      } else if (c == '"' && field.empty() && !was_quoted) {
        quoted = was_quoted = true;
      } else if (c == ',') {
        fields.push_back(std::move(field));
        field.clear();
        was_quoted = false;
      } else if (c == '\n' || c == '\r') {
        if (c == '\r' && pos < bytes.size() && bytes[pos] == '\n') ++pos;
        ++line;
        fields.push_back(std::move(field));
        return true;
      } else {
        if (was_quoted && error.empty())
          error = "text after a closing quote (write \"\" for a quote)";
        field += c;
      }
    }
  }
};

void read_csv(const std::string& path, const std::string& bytes, const DataConfig& cfg,
              const std::function<void(Record&&)>& sink, int64_t& skipped) {
  std::string_view view(bytes);
  if (view.substr(0, 3) == "\xEF\xBB\xBF") view.remove_prefix(3);
  CsvReader reader{view};
  std::vector<std::string> header, fields;
  int64_t line = 0;
  std::string error;
  TUNE_CHECK(reader.next(header, line, error), path,
             ": the CSV file is empty (it needs a header row)");
  TUNE_CHECK(error.empty(), path, ":", line, ": invalid CSV header (", error, ")");
  Skipper skip{cfg, skipped};
  while (reader.next(fields, line, error)) {
    const std::string where = str(path, ":", line);
    if (!error.empty()) {
      skip.bad(where, str("invalid CSV (", error, ")"));
      continue;
    }
    if (fields.size() != header.size()) {
      skip.bad(where,
               str("the row has ", fields.size(), " fields, the header has ", header.size()));
      continue;
    }
    ordered_json o = ordered_json::object();
    for (size_t i = 0; i < header.size(); ++i) o[header[i]] = std::move(fields[i]);
    sink(Record{std::move(o), where});
  }
}

void read_text(const std::string& path, const std::string& bytes, const DataConfig& cfg,
               const std::function<void(Record&&)>& sink) {
  auto emit = [&](std::string_view text, int64_t line) {
    while (!text.empty() && (text.back() == '\r')) text.remove_suffix(1);
    if (blank(text)) return;  // an empty line or paragraph is no example
    ordered_json o = ordered_json::object();
    o[cfg.text_field] = std::string(text);
    sink(Record{std::move(o), str(path, ":", line)});
  };
  if (cfg.sample_by == SampleBy::document) {
    emit(bytes, 1);
    return;
  }
  int64_t line = 1, start_line = 1;
  size_t start = 0, pos = 0;
  while (pos <= bytes.size()) {
    const size_t end = std::min(bytes.find('\n', pos), bytes.size());
    std::string_view this_line(bytes.data() + pos, end - pos);
    if (cfg.sample_by == SampleBy::line) {
      emit(this_line, line);
    } else if (blank(this_line)) {  // paragraphs end at blank lines
      emit(std::string_view(bytes.data() + start, pos - start), start_line);
      start = end + 1;
      start_line = line + 1;
    }
    pos = end + 1;
    ++line;
  }
  if (cfg.sample_by == SampleBy::paragraph && start < bytes.size()) {
    emit(std::string_view(bytes.data() + start, bytes.size() - start), start_line);
  }
}

}  // namespace

std::vector<std::string> resolve_paths(const std::vector<std::string>& paths) {
  TUNE_CHECK(!paths.empty(),
             "no data files: set data.path to one or more .jsonl, .json, .csv "
             "or .txt files");
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (const auto& e : fs::directory_iterator(p)) {
        const std::string ext = extension_of(e.path().string());
        if (e.is_regular_file() &&
            std::find(kExtensions.begin(), kExtensions.end(), ext) != kExtensions.end()) {
          found.push_back(e.path().string());
        }
      }
      std::sort(found.begin(), found.end());
      TUNE_CHECK(!found.empty(), "data folder ", p, " holds no .jsonl, .json, .csv or .txt files");
      out.insert(out.end(), found.begin(), found.end());
      continue;
    }
    TUNE_CHECK(fs::is_regular_file(p, ec), "data file ", p, " does not exist (data.path)");
    const std::string ext = extension_of(p);
    TUNE_CHECK(std::find(kExtensions.begin(), kExtensions.end(), ext) != kExtensions.end(),
               "data file ", p, " has extension \"", ext,
               "\"; tune reads .jsonl, .json, .csv and .txt files");
    out.push_back(p);
  }
  return out;
}

void read_records(const std::string& path, const DataConfig& cfg,
                  const std::function<void(Record&&)>& sink, int64_t& skipped,
                  const std::function<void(int64_t)>& progress) {
  const std::string bytes = read_whole(path);
  const std::string ext = extension_of(path);
  if (ext == ".jsonl") {
    read_jsonl(path, bytes, cfg, sink, skipped, progress);
  } else if (ext == ".json") {
    read_json(path, bytes, cfg, sink, skipped, progress);
  } else if (ext == ".csv") {
    read_csv(path, bytes, cfg, sink, skipped);
  } else {
    read_text(path, bytes, cfg, sink);
  }
  if (progress) progress(static_cast<int64_t>(bytes.size()));
}

}  // namespace tune::data
