// safetensors reading and writing: round trips of every dtype, the exact byte layout, zero-copy
// views, and one handcrafted file per way a header can be wrong, each checked for a message
// that names the file, the tensor and the problem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <sstream>
#include <string>

#include "test_util.h"
#include "tune/core/tensor.h"
#include "tune/io/safetensors.h"

namespace tune::io {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string u64_le(uint64_t n) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &n, 8);
  return s;
}

// A file built by hand: header length, header text, then `data_bytes` zero bytes.
std::string raw_file(const test::TempDir& dir, const std::string& header, size_t data_bytes,
                     const std::string& name = "bad.safetensors") {
  std::string path = dir.file(name);
  write_bytes(path, u64_le(header.size()) + header + std::string(data_bytes, '\0'));
  return path;
}

// Expects open() to throw a tune::Error whose message holds every one of `parts`.
void expect_open_error(const std::string& path, std::initializer_list<std::string> parts) {
  try {
    SafetensorsFile::open(path);
    ADD_FAILURE() << "opening " << path << " should have failed";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "missing \"" << p << "\" in: " << msg;
  }
}

void expect_error(const std::function<void()>& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected a tune::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "missing \"" << p << "\" in: " << msg;
  }
}

Tensor filled(const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* p = static_cast<uint8_t*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(i * 37 + 11);
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(Safetensors, RoundTripsEveryDtypeWithMetadata) {
  test::TempDir dir("st_roundtrip");
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"f32", Tensor::from_f32({2, 3}, {1.5f, -2, 3, 0, 1e-3f, 7})},
      {"f64", Tensor::from_f64({3}, {1.0 / 3, -1e300, 2})},
      {"bf16", Tensor::from_f32({4}, {1, -0.5f, 3.25f, 100}).to(DType::bf16)},
      {"f16", Tensor::from_f32({2, 2}, {0.5f, -6, 65504, 1e-4f}).to(DType::f16)},
      {"i32", filled({5}, DType::i32)},
      {"i64", Tensor::from_i64({2}, {-1, INT64_MAX})},
      {"u8", filled({3, 1, 3}, DType::u8)},
  };
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "é ünïcode"}};
  std::string path = dir.file("all.safetensors");
  write_safetensors(path, tensors, meta);

  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.metadata(), meta);
  std::vector<std::string> expected_names;
  for (const auto& [name, t] : tensors) expected_names.push_back(name);
  EXPECT_EQ(f.names(), expected_names);  // written order is data order
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(f.contains(name));
    EXPECT_TRUE(same_bytes(f.tensor(name), t)) << name;
    EXPECT_EQ(f.info(name).dtype, t.dtype());
    EXPECT_EQ(f.info(name).end - f.info(name).begin, t.nbytes());
  }
  EXPECT_EQ(f.tensor("i64").item(1), static_cast<double>(INT64_MAX));
  EXPECT_FLOAT_EQ(static_cast<float>(f.tensor("bf16").item(2)), 3.25f);
  EXPECT_FALSE(f.contains("nope"));
}

TEST(Safetensors, HeaderIsPaddedToAMultipleOfEight) {
  test::TempDir dir("st_padding");
  for (int len = 1; len <= 9; ++len) {
    std::string path = dir.file(str("p", len, ".safetensors"));
    write_safetensors(path, {{std::string(len, 'w'), Tensor::from_f32({1}, {2})}});
    std::string bytes = read_bytes(path);
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    EXPECT_EQ(n % 8, 0u) << len;
    ASSERT_EQ(bytes.size(), 8 + n + 4);
    std::string header = bytes.substr(8, n);
    EXPECT_EQ(header.front(), '{');
    size_t close = header.rfind('}');
    EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos) << "pad with spaces";
    EXPECT_LT(n - (close + 1), 8u);
    float v;
    std::memcpy(&v, bytes.data() + 8 + n, 4);
    EXPECT_EQ(v, 2.0f);
  }
}

TEST(Safetensors, HeaderIsCompactAndInDataOrder) {
  test::TempDir dir("st_header");
  std::string path = dir.file("h.safetensors");
  write_safetensors(path, {{"z", Tensor::from_f32({1}, {1})}, {"a", Tensor::from_f32({2}, {2, 3})}},
                    {{"format", "pt"}});
  std::string bytes = read_bytes(path);
  std::string expected =
      R"({"__metadata__":{"format":"pt"},"z":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_EQ(bytes.substr(8, expected.size()), expected);
}

TEST(Safetensors, ZeroSizedTensorsAndEmptyFilesAreLegal) {
  test::TempDir dir("st_zero");
  std::string path = dir.file("z.safetensors");
  write_safetensors(path, {{"a", Tensor::empty({0, 4}, DType::f32)},
                           {"b", Tensor::from_f32({2}, {1, 2})},
                           {"c", Tensor::empty({3, 0}, DType::bf16)}});
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.tensor("a").shape(), (Shape{0, 4}));
  EXPECT_EQ(f.tensor("c").numel(), 0);
  EXPECT_EQ(f.tensor("b").to_f32_vector(), (std::vector<float>{1, 2}));

  std::string empty = dir.file("empty.safetensors");
  write_safetensors(empty, {});
  SafetensorsFile e = SafetensorsFile::open(empty);
  EXPECT_TRUE(e.names().empty());
  EXPECT_EQ(e.data_size(), 0u);
}

// True when /proc/self/maps shows `p` inside a mapping of the file `path`.
bool address_maps_file(const void* p, const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  auto addr = reinterpret_cast<uintptr_t>(p);
  std::string canonical = fs::canonical(path).string();
  while (std::getline(maps, line)) {
    uintptr_t lo, hi;
    if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) != 2) continue;
    if (addr >= lo && addr < hi) return line.find(canonical) != std::string::npos;
  }
  return false;
}

TEST(Safetensors, TensorsAreZeroCopyViewsThatKeepTheMappingAlive) {
  test::TempDir dir("st_zerocopy");
  std::string path = dir.file("m.safetensors");
  write_safetensors(path, {{"a", Tensor::from_f32({3}, {1, 2, 3})},
                           {"b", Tensor::from_f32({2, 2}, {4, 5, 6, 7})}});
  Tensor kept;
  {
    SafetensorsFile f = SafetensorsFile::open(path);
    Tensor b1 = f.tensor("b"), b2 = f.tensor("b");
    EXPECT_EQ(b1.raw(), b2.raw());
    EXPECT_TRUE(address_maps_file(b1.raw(), path));
    EXPECT_EQ(static_cast<char*>(b1.raw()) - static_cast<char*>(f.tensor("a").raw()), 12);
    SafetensorsFile copy = f;  // copies share the mapping
    EXPECT_EQ(copy.tensor("b").raw(), b1.raw());
    kept = b1;
  }
  // The file object is gone; the view still reads the mapped bytes.
  EXPECT_EQ(kept.to_f32_vector(), (std::vector<float>{4, 5, 6, 7}));
  EXPECT_TRUE(address_maps_file(kept.raw(), path));
}

TEST(Safetensors, MissingTensorNamesTensorAndFile) {
  test::TempDir dir("st_missing");
  std::string path = dir.file("m.safetensors");
  write_safetensors(path, {{"a", Tensor::from_f32({1}, {1})}});
  SafetensorsFile f = SafetensorsFile::open(path);
  expect_error([&] { f.tensor("model.norm.weight"); }, {"model.norm.weight", path, "not found"});
  expect_error([&] { SafetensorsFile::open(dir.file("absent.safetensors")); },
               {"cannot open", "absent.safetensors", "No such file"});
}

TEST(Safetensors, WriteRejectsBadArgumentsAndLeavesNoFile) {
  test::TempDir dir("st_writebad");
  std::string path = dir.file("w.safetensors");
  Tensor t = Tensor::from_f32({1}, {1});
  expect_error([&] { write_safetensors(path, {{"a", t}, {"a", t}}); }, {"\"a\"", "twice"});
  expect_error([&] { write_safetensors(path, {{"__metadata__", t}}); }, {"reserved"});
  expect_error([&] { write_safetensors(path, {{"u", Tensor()}}); }, {"\"u\"", "undefined"});
  expect_error(
      [&] {
        write_safetensors(dir.file("no/such/dir.safetensors"), {{"a", t}});
      },
      {"no/such", "does not exist"});
  EXPECT_TRUE(fs::is_empty(dir.path));
}

// --- handcrafted bad files: one per rule of the format ---

TEST(SafetensorsBad, TruncatedBeforeTheHeaderLength) {
  test::TempDir dir("st_bad_short");
  std::string path = dir.file("short.safetensors");
  write_bytes(path, "abc");
  expect_open_error(path, {"short.safetensors", "truncated", "3 bytes", "re-download"});
}

TEST(SafetensorsBad, HeaderLongerThanTheFile) {
  test::TempDir dir("st_bad_hlen");
  std::string path = dir.file("long.safetensors");
  write_bytes(path, u64_le(1000) + "{}");
  expect_open_error(path,
                    {"long.safetensors", "header longer than the file", "1000", "re-download"});
  // A PyTorch zip renamed to .safetensors reads as an absurd header length.
  write_bytes(path, std::string("PK\x03\x04\x14\x00\x00\x00", 8) + std::string(64, 'x'));
  expect_open_error(path, {"header longer than the file", "not a safetensors file"});
}

TEST(SafetensorsBad, HeaderMustStartWithBrace) {
  test::TempDir dir("st_bad_brace");
  expect_open_error(raw_file(dir, " {}     ", 0), {"bad.safetensors", "must start with '{'"});
  expect_open_error(raw_file(dir, "[1,2]   ", 0), {"must start with '{'"});
  expect_open_error(raw_file(dir, "", 0), {"header is empty"});
}

TEST(SafetensorsBad, HeaderNotValidJson) {
  test::TempDir dir("st_bad_json");
  expect_open_error(raw_file(dir, R"({"a": {"dtype": "F32",)", 0),
                    {"bad.safetensors", "not valid JSON", "re-download"});
  expect_open_error(raw_file(dir, "{} trailing", 0), {"not valid JSON"});
  expect_open_error(raw_file(dir, "{\"\xff\": 1}", 0), {"not valid JSON"});  // bad UTF-8
}

TEST(SafetensorsBad, EntryFieldsMustHaveTheirTypes) {
  test::TempDir dir("st_bad_fields");
  auto path = [&](const std::string& entry, size_t data = 4) {
    return raw_file(dir, str(R"({"w":)", entry, "}"), data);
  };
  expect_open_error(path("5"), {"tensor \"w\"", "must be an object"});
  expect_open_error(path(R"({"shape":[1],"data_offsets":[0,4]})"), {"\"w\"", "\"dtype\""});
  expect_open_error(path(R"({"dtype":7,"shape":[1],"data_offsets":[0,4]})"), {"\"dtype\""});
  expect_open_error(path(R"({"dtype":"F32","data_offsets":[0,4]})"), {"\"w\"", "\"shape\""});
  expect_open_error(path(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})"),
                    {"\"shape\"", "non-negative"});
  expect_open_error(path(R"({"dtype":"F32","shape":[1.0],"data_offsets":[0,4]})"), {"\"shape\""});
  expect_open_error(path(R"({"dtype":"F32","shape":1,"data_offsets":[0,4]})"), {"\"shape\""});
  expect_open_error(path(R"({"dtype":"F32","shape":[1]})"), {"\"w\"", "data_offsets"});
  expect_open_error(path(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,8]})"),
                    {"data_offsets", "[begin, end]"});
  expect_open_error(path(R"({"dtype":"F32","shape":[1],"data_offsets":[0,-4]})"), {"data_offsets"});
  expect_open_error(path(R"({"dtype":"F32","shape":[0],"data_offsets":[4,0]})"),
                    {"\"w\"", "begin after end"});
}

TEST(SafetensorsBad, UnknownAndUnsupportedDtypes) {
  test::TempDir dir("st_bad_dtype");
  expect_open_error(raw_file(dir, R"({"w":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}})", 4),
                    {"bad.safetensors", "tensor \"w\"", "unknown dtype", "\"F99\""});
  for (const char* dt : {"F8_E4M3", "F8_E5M2", "BOOL", "I8", "I16", "U16", "U32", "U64"}) {
    std::string h = str(R"({"q":{"dtype":")", dt, R"(","shape":[0],"data_offsets":[0,0]}})");
    expect_open_error(raw_file(dir, h, 0), {"tensor \"q\"", "unsupported dtype", dt, "convert"});
  }
}

TEST(SafetensorsBad, ByteCountMustMatchDtypeAndShape) {
  test::TempDir dir("st_bad_count");
  expect_open_error(
      raw_file(dir, R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 20),
      {"bad.safetensors", "tensor \"w\"", "dtype/shape does not match the byte count", "F32",
       "(2, 3)", "24 bytes", "span 20 bytes"});
  // A shape whose byte count overflows 64 bits must not wrap into a plausible size.
  expect_open_error(
      raw_file(dir, R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})",
               0),
      {"tensor \"w\"", "does not match the byte count", "2^64"});
}

TEST(SafetensorsBad, OverlapsAndGapsAreReportedDistinctly) {
  test::TempDir dir("st_bad_layout");
  auto two = [&](int a0, int a1, int b0, int b1, size_t data) {
    return raw_file(dir,
                    str(R"({"first":{"dtype":"U8","shape":[)", a1 - a0, R"(],"data_offsets":[)", a0,
                        ",", a1, R"(]},"second":{"dtype":"U8","shape":[)", b1 - b0,
                        R"(],"data_offsets":[)", b0, ",", b1, "]}}"),
                    data);
  };
  expect_open_error(two(0, 16, 8, 24, 24),
                    {"bad.safetensors", "\"first\"", "\"second\"", "overlap", "re-download"});
  expect_open_error(two(0, 8, 0, 8, 8), {"\"first\"", "\"second\"", "overlap"});
  expect_open_error(two(0, 8, 16, 24, 24),
                    {"bad.safetensors", "gap", "[8, 16)", "\"first\"", "\"second\""});
  expect_open_error(two(8, 16, 16, 24, 24), {"gap", "[0, 8)", "before the first tensor \"first\""});
  // A zero-sized tensor inside another one overlaps it.
  expect_open_error(two(0, 8, 4, 4, 8), {"overlap"});
}

TEST(SafetensorsBad, DataSectionMustEndWithTheFile) {
  test::TempDir dir("st_bad_end");
  std::string h = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  expect_open_error(raw_file(dir, h, 8), {"bad.safetensors", "truncated", "16 bytes",
                                          "8 bytes missing", "\"w\"", "re-download"});
  expect_open_error(raw_file(dir, h, 20), {"bad.safetensors", "4 trailing bytes"});
  expect_open_error(raw_file(dir, "{}", 3), {"3 trailing bytes"});
}

TEST(SafetensorsBad, MetadataMustMapStringsToStrings) {
  test::TempDir dir("st_bad_meta");
  expect_open_error(raw_file(dir, R"({"__metadata__":[1]})", 0),
                    {"bad.safetensors", "__metadata__", "object"});
  expect_open_error(raw_file(dir, R"({"__metadata__":{"format":"pt","step":3}})", 0),
                    {"__metadata__", "\"step\"", "number"});
  SafetensorsFile ok = SafetensorsFile::open(raw_file(dir, R"({"__metadata__":{"a":"b"}})", 0));
  EXPECT_EQ(ok.metadata().at("a"), "b");
}

TEST(SafetensorsBad, DuplicateTensorNames) {
  test::TempDir dir("st_bad_dup");
  expect_open_error(raw_file(dir,
                             R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                             R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                             2),
                    {"bad.safetensors", "tensor \"w\"", "twice"});
}

TEST(SafetensorsBad, NotARegularFile) {
  test::TempDir dir("st_bad_dir");
  expect_open_error(dir.path, {dir.path, "not a regular file"});
}

TEST(Safetensors, OpensTheGoldenLlamaCheckpoint) {
  std::string path = std::string(TUNE_TEST_DATA) + "/golden/llama_gqa/model.safetensors";
  SafetensorsFile f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.contains("model.embed_tokens.weight"));
  Tensor emb = f.tensor("model.embed_tokens.weight");
  EXPECT_EQ(emb.shape(), (Shape{512, 64}));
  EXPECT_EQ(emb.dtype(), DType::f32);
  EXPECT_GT(f.names().size(), 3u);
  uint64_t covered = 0;
  for (const auto& n : f.names()) covered += f.info(n).end - f.info(n).begin;
  EXPECT_EQ(covered, f.data_size());
}

}  // namespace
}  // namespace tune::io
