// tokenize_bench: encoding throughput of tune's tokenizer on a JSONL corpus ({"text": ...} per
// line, bench/run_tokenize.sh makes a 20 MB multilingual one with tests/reference/make_corpus.py).
// Its peer is bench/tokenize_bench.js (Hugging Face's Rust tokenizers through Node);
// bench/run_tokenize.sh runs both side by side and prints the ratio.
//
// Two measurements, each the best of --reps passes over the whole corpus after one warm-up pass:
//   single: Tokenizer::encode line by line on this thread;
//   batch:  Tokenizer::encode_batch over chunks of --chunk lines, on all cores (--threads).
// MB/s counts the corpus's UTF-8 bytes (10^6 bytes per MB). One JSON line per measurement; the
// id count and an id checksum let the driver check that both sides produced the same tokens.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tune/core/error.h"
#include "tune/core/parallel.h"
#include "tune/tokenizer/tokenizer.h"

namespace {

struct Options {
  std::string tokenizer, corpus;
  int reps = 3;
  int threads = 0;  // 0: all cores (the OpenMP default)
  size_t chunk = 1000;
  bool special = false;
};

void usage() {
  std::printf(
      "usage: tokenize_bench --tokenizer DIR --corpus FILE.jsonl [--reps N] [--threads N]\n"
      "                      [--chunk LINES] [--special]\n\n"
      "Encodes every line of the corpus one by one (single) and with encode_batch (batch, all\n"
      "cores) and prints one JSON line per measurement. --special adds the post-processor's\n"
      "special tokens (default: not).\n");
}

struct Sums {
  uint64_t ids = 0;
  uint32_t checksum = 0;  // c = c * 31 + id (mod 2^32) over all ids in order, as the JS peer
  void add(const std::vector<int32_t>& v) {
    ids += v.size();
    for (int32_t id : v) checksum = checksum * 31u + static_cast<uint32_t>(id);
  }
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "tokenize_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::string(argv[++i]);
    };
    if (a == "--tokenizer")
      o.tokenizer = next();
    else if (a == "--corpus")
      o.corpus = next();
    else if (a == "--reps")
      o.reps = std::stoi(next());
    else if (a == "--threads")
      o.threads = std::stoi(next());
    else if (a == "--chunk")
      o.chunk = std::stoul(next());
    else if (a == "--special")
      o.special = true;
    else {
      usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (o.tokenizer.empty() || o.corpus.empty()) {
    usage();
    return 2;
  }
  try {
    if (o.threads > 0) tune::set_num_threads(o.threads);
    auto t_load = std::chrono::steady_clock::now();
    tune::tok::Tokenizer tk = tune::tok::Tokenizer::load(o.tokenizer);
    double load_s = seconds_since(t_load);

    std::vector<std::string> texts;
    size_t bytes = 0;
    std::ifstream in(o.corpus, std::ios::binary);
    TUNE_CHECK(in, o.corpus, ": cannot open");
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
      bytes += texts.back().size();
    }
    auto add = o.special ? tune::tok::AddSpecial::yes : tune::tok::AddSpecial::no;

    auto report = [&](const char* mode, int threads, double best, const Sums& s) {
      nlohmann::json j = {
          {"impl", "tune"},         {"mode", mode},   {"threads", threads},
          {"lines", texts.size()},  {"bytes", bytes}, {"ids", s.ids},
          {"checksum", s.checksum}, {"best_s", best}, {"mb_per_s", bytes / best / 1e6},
          {"load_s", load_s},       {"reps", o.reps}};
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    };

    // single: one thread, encode() per line.
    Sums single;
    double best = 1e30;
    for (int r = 0; r <= o.reps; ++r) {
      Sums s;
      auto t = std::chrono::steady_clock::now();
      for (const std::string& text : texts) s.add(tk.encode(text, add));
      double dt = seconds_since(t);
      if (r > 0) best = std::min(best, dt);  // pass 0 warms caches and pages
      single = s;
    }
    report("single", 1, best, single);

    // batch: encode_batch over chunks, all cores.
    Sums batch;
    best = 1e30;
    std::vector<std::vector<std::string>> chunks;
    for (size_t i = 0; i < texts.size(); i += o.chunk)
      chunks.emplace_back(texts.begin() + i, texts.begin() + std::min(texts.size(), i + o.chunk));
    for (int r = 0; r <= o.reps; ++r) {
      Sums s;
      auto t = std::chrono::steady_clock::now();
      for (const auto& c : chunks)
        for (const auto& v : tk.encode_batch(c, add)) s.add(v);
      double dt = seconds_since(t);
      if (r > 0) best = std::min(best, dt);
      batch = s;
    }
    report("batch", tune::num_threads(), best, batch);
    if (batch.checksum != single.checksum) {
      std::fprintf(stderr, "tokenize_bench: encode_batch and encode gave different ids\n");
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenize_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
