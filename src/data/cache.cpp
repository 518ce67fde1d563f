// Cache keys, writing and mapping. The hash is two 64-bit multiply-xorshift lanes over 8-byte
// words, each input length-prefixed so that concatenations cannot collide by shifting bytes
// between inputs; it only has to be stable on one machine and unlikely to collide.
#include "cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "tune/core/error.h"
#include "tune/io/files.h"

namespace tune::data {

namespace {

namespace fs = std::filesystem;

// Bump when the layout or the formatting rules change, so old caches miss.
constexpr int kCacheVersion = 1;

uint64_t mix(uint64_t x) {
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 32;
  return x;
}

class Hasher {
 public:
  void word(uint64_t w) {
    a_ = mix(a_ ^ w);
    b_ = mix(b_ + w * 0x165667B19E3779F9ull);
  }
  void bytes(std::string_view s) {
    word(s.size());
    size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      word(w);
    }
    uint64_t tail = 0;
    std::memcpy(&tail, s.data() + i, s.size() - i);
    word(tail);
  }
  void number(int64_t v) { word(static_cast<uint64_t>(v)); }
  std::string hex() const {
    char out[33];
    std::snprintf(out, sizeof(out), "%016llx%016llx", static_cast<unsigned long long>(a_),
                  static_cast<unsigned long long>(b_));
    return out;
  }

 private:
  uint64_t a_ = 0x9E3779B97F4A7C15ull, b_ = 0xC2B2AE3D27D4EB4Full;
};

// Text that exercises normalizers, pre-tokenizers and merges, so tokenizers with the same
// vocabulary but other rules get other keys.
constexpr const char* kProbe =
    "Hello, World! It's 2024-06-01 12:34:56.78  tabs\tand\nnew lines\r\n  indented "
    "\u00e9t\u00e9 na\u00efve \u4f60\u597d\u4e16\u754c \u3053\u3093\u306b\u3061\u306f "
    "\U0001F600 \u0645\u0631\u062d\u0628\u0627 CamelCaseWord snake_case 1234567890 "
    "<|im_start|><s></s><bos><|begin_of_text|><|eot_id|>";

void hash_tokenizer(Hasher& h, const tok::Tokenizer& tokenizer) {
  const int64_t vocab = tokenizer.vocab_size();  // not O(1): it looks at the added tokens
  h.number(vocab);
  for (int64_t id = 0; id < vocab; ++id) {
    h.bytes(tokenizer.id_to_token(static_cast<int32_t>(id)).value_or("\x01<none>"));
  }
  const auto& c = tokenizer.config();
  for (const auto& t : {c.bos_token, c.eos_token, c.pad_token, c.unk_token}) {
    h.bytes(t.value_or("\x01<none>"));
  }
  h.number(c.add_bos_token ? *c.add_bos_token : -1);
  h.number(c.add_eos_token ? *c.add_eos_token : -1);
  for (const auto add : {tok::AddSpecial::yes, tok::AddSpecial::no}) {
    const auto ids = tokenizer.encode(kProbe, add);
    h.bytes(std::string_view(reinterpret_cast<const char*>(ids.data()), ids.size() * 4));
  }
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TUNE_CHECK(in, "cannot open data file ", path, ": ", std::strerror(errno));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Maps `path` read-only; `bytes` must be its size. A zero-length file maps to nothing.
std::shared_ptr<void> map_file(const std::string& path, size_t bytes, const void*& data) {
  static const int64_t kEmpty = 0;
  data = &kEmpty;
  if (bytes == 0) return nullptr;
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return nullptr;
  void* p = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return nullptr;
  data = p;
  return std::shared_ptr<void>(p, [bytes](void* q) { ::munmap(q, bytes); });
}

void sync_file(std::FILE* f, const std::string& path) {
  TUNE_CHECK(std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0, "cannot write the data cache ", path,
             ": ", std::strerror(errno), ". Free disk space or set data.cache_dir");
}

}  // namespace

std::string cache_root(const DataConfig& cfg) {
  if (!cfg.cache_dir.empty()) return cfg.cache_dir;
  if (const char* env = std::getenv("TUNE_CACHE_DIR"); env && *env) return env;
  const char* home = std::getenv("HOME");
  TUNE_CHECK(home && *home,
             "no cache folder for tokenized data: set data.cache_dir, "
             "$TUNE_CACHE_DIR or $HOME");
  return (fs::path(home) / ".cache" / "tune" / "datasets").string();
}

std::string cache_key(const DataConfig& cfg, const std::vector<std::string>& files,
                      const tok::Tokenizer& tokenizer, const std::string& template_source) {
  Hasher h;
  h.number(kCacheVersion);
  h.number(static_cast<int64_t>(files.size()));
  for (const auto& f : files) {
    h.bytes(fs::path(f).extension().string());  // which reader
    h.bytes(read_bytes(f));
  }
  hash_tokenizer(h, tokenizer);
  h.bytes(template_source);
  h.number(static_cast<int64_t>(cfg.format));
  for (const auto* s : {&cfg.text_field, &cfg.prompt_field, &cfg.completion_field,
                        &cfg.instruction_field, &cfg.input_field, &cfg.output_field,
                        &cfg.messages_field, &cfg.role_field, &cfg.content_field}) {
    h.bytes(*s);
  }
  h.number(static_cast<int64_t>(cfg.train_on));
  h.number(cfg.seq_len);
  h.number(static_cast<int64_t>(cfg.truncation));
  h.number(static_cast<int64_t>(cfg.sample_by));
  h.number(static_cast<int64_t>(cfg.on_error));
  return h.hex();
}

std::shared_ptr<const CacheData> open_cache(const std::string& dir) {
  const std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  if (!io::file_exists(manifest_path)) return nullptr;
  auto cache = std::make_shared<CacheData>();
  try {
    cache->manifest = io::read_json_file(manifest_path);
    if (cache->manifest.value("version", 0) != kCacheVersion) return nullptr;
    cache->examples = cache->manifest.at("examples").get<int64_t>();
    cache->tokens = cache->manifest.at("tokens").get<int64_t>();
  } catch (const std::exception&) {
    return nullptr;
  }
  const struct {
    const char* name;
    size_t bytes;
    const void** data;
  } files[] = {
      {"ids.bin", static_cast<size_t>(cache->tokens) * 4,
       reinterpret_cast<const void**>(&cache->ids)},
      {"counted.bin", static_cast<size_t>(cache->tokens),
       reinterpret_cast<const void**>(&cache->counted)},
      {"offsets.bin", static_cast<size_t>(cache->examples + 1) * 8,
       reinterpret_cast<const void**>(&cache->offsets)},
  };
  for (const auto& f : files) {
    const std::string path = (fs::path(dir) / f.name).string();
    std::error_code ec;
    if (fs::file_size(path, ec) != f.bytes || ec) return nullptr;
    auto mapping = map_file(path, f.bytes, *f.data);
    if (f.bytes > 0 && !mapping) return nullptr;
    cache->mappings.push_back(std::move(mapping));
  }
  if (cache->offsets[cache->examples] != cache->tokens) return nullptr;
  return cache;
}

CacheWriter::CacheWriter(std::string dir) : dir_(std::move(dir)) {
  std::random_device random;
  temp_ = str(dir_, ".tmp.", ::getpid(), ".", random());
  std::error_code ec;
  fs::create_directories(temp_, ec);
  TUNE_CHECK(!ec, "cannot create the data cache folder ", temp_, ": ", ec.message(),
             ". Set data.cache_dir to a writable folder");
  ids_ = std::fopen((fs::path(temp_) / "ids.bin").c_str(), "wb");
  counted_file_ = std::fopen((fs::path(temp_) / "counted.bin").c_str(), "wb");
  TUNE_CHECK(ids_ && counted_file_, "cannot write the data cache in ", temp_, ": ",
             std::strerror(errno));
}

CacheWriter::~CacheWriter() {
  if (ids_) std::fclose(ids_);
  if (counted_file_) std::fclose(counted_file_);
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(temp_, ec);
  }
}

void CacheWriter::add(const Tokenized& example) {
  TUNE_ASSERT(example.ids.size() == example.counted.size(), "ids and mask differ in length");
  const size_t n = example.ids.size();
  TUNE_CHECK(std::fwrite(example.ids.data(), 4, n, ids_) == n &&
                 std::fwrite(example.counted.data(), 1, n, counted_file_) == n,
             "cannot write the data cache in ", temp_, ": ", std::strerror(errno),
             ". Free disk space or set data.cache_dir");
  offsets_.push_back(offsets_.back() + static_cast<int64_t>(n));
  for (const uint8_t c : example.counted) counted_ += c;
}

void CacheWriter::commit(nlohmann::json manifest) {
  sync_file(ids_, temp_);
  sync_file(counted_file_, temp_);
  std::fclose(ids_);
  std::fclose(counted_file_);
  ids_ = counted_file_ = nullptr;
  {
    io::AtomicFile offsets((fs::path(temp_) / "offsets.bin").string());
    offsets.write(offsets_.data(), offsets_.size() * 8);
    offsets.commit();
  }
  manifest["version"] = kCacheVersion;
  manifest["examples"] = examples();
  manifest["tokens"] = tokens();
  manifest["counted"] = counted_;
  io::write_file_atomic((fs::path(temp_) / "manifest.json").string(), manifest.dump(2) + "\n");
  std::error_code ec;
  if (fs::exists(dir_, ec)) fs::remove_all(dir_, ec);  // an incomplete or stale cache
  fs::rename(temp_, dir_, ec);
  if (ec) {
    // Another run published the same key first: its cache is as good as ours.
    TUNE_CHECK(fs::exists(fs::path(dir_) / "manifest.json"), "cannot publish the data cache ", dir_,
               ": ", ec.message());
    fs::remove_all(temp_, ec);
  }
  committed_ = true;
}

}  // namespace tune::data
