// GGUF: the ggml encodings round-trip (quantize -> dequantize) within the error their formats
// allow, hand-packed blocks decode to the values the format definition gives, the fallback rule
// for rows that do not divide into blocks, and the writer's file read back byte for byte.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"
#include "tune/core/dtype.h"
#include "tune/io/gguf.h"

namespace tune::io {
namespace {

std::vector<float> gaussian(int64_t n, uint64_t seed, double scale = 1.0) {
  Tensor t = test::randn({n}, DType::f32, seed, scale);
  return {t.data<float>(), t.data<float>() + n};
}

// Largest |x - y| within each block of `block`, divided by the block's largest |x|.
double worst_block_error(const std::vector<float>& x, const std::vector<float>& y, int64_t block) {
  double worst = 0;
  for (size_t b = 0; b < x.size(); b += static_cast<size_t>(block)) {
    double amax = 0, err = 0;
    for (size_t i = b; i < b + static_cast<size_t>(block); ++i) {
      amax = std::max(amax, std::fabs(double(x[i])));
      err = std::max(err, std::fabs(double(x[i]) - y[i]));
    }
    if (amax > 0) worst = std::max(worst, err / amax);
  }
  return worst;
}

double rms_rel_error(const std::vector<float>& x, const std::vector<float>& y) {
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += double(x[i]) * x[i];
  }
  return std::sqrt(num / den);
}

std::vector<float> round_trip(GgmlType t, const std::vector<float>& x, int64_t n) {
  int64_t rows = static_cast<int64_t>(x.size()) / n;
  auto bytes = ggml_encode(t, x.data(), rows, n, "test");
  EXPECT_EQ(static_cast<int64_t>(bytes.size()), rows * ggml_row_bytes(t, n));
  return ggml_decode(t, bytes.data(), rows, n);
}

TEST(GgufQuant, BlockSizes) {
  EXPECT_EQ(ggml_row_bytes(GgmlType::q8_0, 32), 34);
  EXPECT_EQ(ggml_row_bytes(GgmlType::q5_0, 64), 44);
  EXPECT_EQ(ggml_row_bytes(GgmlType::q4_k, 256), 144);
  EXPECT_EQ(ggml_row_bytes(GgmlType::q6_k, 512), 420);
  EXPECT_EQ(ggml_row_bytes(GgmlType::bf16, 3), 6);
}

TEST(GgufQuant, PlainTypesRoundTrip) {
  auto x = gaussian(1000, 1);
  EXPECT_EQ(round_trip(GgmlType::f32, x, 100), x);
  auto h = round_trip(GgmlType::f16, x, 100);
  auto b = round_trip(GgmlType::bf16, x, 100);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(h[i], f16_to_f32(f32_to_f16(x[i])));
    EXPECT_EQ(b[i], bf16_to_f32(f32_to_bf16(x[i])));
  }
}

// Q8_0: the error of each value is at most half a step d = amax/127 (plus d's f16 rounding).
TEST(GgufQuant, Q8_0RoundTrip) {
  auto x = gaussian(32 * 64, 2, 0.05);
  auto y = round_trip(GgmlType::q8_0, x, 256);
  EXPECT_LE(worst_block_error(x, y, 32), 0.5 / 127 * 1.01);
  // Values on the grid come back exactly: d = 1/127 * 127 steps.
  std::vector<float> grid(32);
  for (int i = 0; i < 32; ++i) grid[static_cast<size_t>(i)] = static_cast<float>(i * 4 - 64);
  grid[0] = -127;
  EXPECT_EQ(round_trip(GgmlType::q8_0, grid, 32), grid);
}

// Q5_0: steps of d = amax/16; the value opposite the largest may clip one step.
TEST(GgufQuant, Q5_0RoundTrip) {
  auto x = gaussian(32 * 64, 3);
  auto y = round_trip(GgmlType::q5_0, x, 64);
  EXPECT_LE(worst_block_error(x, y, 32), 1.0 / 16 * 1.01);
  EXPECT_LE(rms_rel_error(x, y), 0.05);  // uniform error of a step ~0.13 sigma
}

// Q4_K: 4 bits with a fitted scale and min per 32 values: each value within about one step of
// its sub-block's range / 15, and the error for Gaussian weights near 4-bit quantization's ~9%.
TEST(GgufQuant, Q4_KRoundTrip) {
  auto x = gaussian(256 * 32, 4, 0.02);
  auto y = round_trip(GgmlType::q4_k, x, 1024);
  for (size_t s = 0; s < x.size(); s += 32) {
    float lo = 0, hi = 0;  // the format's min is clipped at 0
    for (size_t i = s; i < s + 32; ++i) {
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
    }
    float step = (hi - lo) / 15;
    for (size_t i = s; i < s + 32; ++i) ASSERT_LE(std::fabs(x[i] - y[i]), 1.1 * step) << i;
  }
  double e = rms_rel_error(x, y);
  EXPECT_LE(e, 0.11);
  EXPECT_GE(e, 0.02);  // it really is 4 bits
  // All-positive data (min clipped to 0) and an all-zero block.
  std::vector<float> pos(256), zero(256, 0.0f);
  for (int i = 0; i < 256; ++i) pos[static_cast<size_t>(i)] = 1.0f + 0.01f * i;
  EXPECT_LE(rms_rel_error(pos, round_trip(GgmlType::q4_k, pos, 256)), 0.05);
  EXPECT_EQ(round_trip(GgmlType::q4_k, zero, 256), zero);
}

// Q5_1: 5 bits between the block's min and max: within half a step (max - min) / 31.
TEST(GgufQuant, Q5_1RoundTrip) {
  auto x = gaussian(32 * 64, 8);
  auto y = round_trip(GgmlType::q5_1, x, 64);
  for (size_t b = 0; b < x.size(); b += 32) {
    float lo = *std::min_element(x.begin() + b, x.begin() + b + 32);
    float hi = *std::max_element(x.begin() + b, x.begin() + b + 32);
    for (size_t i = b; i < b + 32; ++i)
      ASSERT_LE(std::fabs(x[i] - y[i]), 0.51 * (hi - lo) / 31 + 1e-3) << i;
  }
  EXPECT_EQ(ggml_row_bytes(GgmlType::q5_1, 32), 24);
}

// Q5_K: Q4_K's scales with 5-bit quants: about half Q4_K's error.
TEST(GgufQuant, Q5_KRoundTrip) {
  auto x = gaussian(256 * 32, 9, 0.02);
  auto y5 = round_trip(GgmlType::q5_k, x, 1024);
  auto y4 = round_trip(GgmlType::q4_k, x, 1024);
  double e5 = rms_rel_error(x, y5), e4 = rms_rel_error(x, y4);
  EXPECT_LE(e5, 0.055);
  EXPECT_LE(e5, 0.6 * e4);
  EXPECT_GE(e5, 0.01);
  EXPECT_EQ(ggml_row_bytes(GgmlType::q5_k, 256), 176);
  std::vector<float> zero(256, 0.0f);
  EXPECT_EQ(round_trip(GgmlType::q5_k, zero, 256), zero);
}

// Q6_K: 6 bits with an 8-bit scale per 16 values.
TEST(GgufQuant, Q6_KRoundTrip) {
  auto x = gaussian(256 * 32, 5, 0.02);
  auto y = round_trip(GgmlType::q6_k, x, 512);
  EXPECT_LE(worst_block_error(x, y, 16), 1.0 / 31);
  double e = rms_rel_error(x, y);
  EXPECT_LE(e, 0.03);
  EXPECT_GE(e, 0.005);
  std::vector<float> zero(256, 0.0f);
  EXPECT_EQ(round_trip(GgmlType::q6_k, zero, 256), zero);
}

// Hand-packed blocks, read as the format defines them (ggml's dequantize_row_q4_K/q6_K).
TEST(GgufQuant, Q4_KDecodesTheFormat) {
  std::vector<uint8_t> block(144, 0);
  uint16_t d = f32_to_f16(0.5f), dmin = f32_to_f16(0.25f);
  std::memcpy(block.data(), &d, 2);
  std::memcpy(block.data() + 2, &dmin, 2);
  // sub-block scales 1..8, mins 10..17 (6 bits; sub-blocks 4-7 split 4 + 2 bits).
  uint8_t* sc = block.data() + 4;
  for (int j = 0; j < 8; ++j) {
    int s = j + 1, m = j + 10;
    if (j < 4) {
      sc[j] = static_cast<uint8_t>(s);
      sc[j + 4] = static_cast<uint8_t>(m);
    } else {
      sc[j + 4] = static_cast<uint8_t>((s & 0xF) | ((m & 0xF) << 4));
      sc[j - 4] |= static_cast<uint8_t>((s >> 4) << 6);
      sc[j] |= static_cast<uint8_t>((m >> 4) << 6);
    }
  }
  // Value i of the block: quant (i % 16); 64-value groups share 32 bytes, low nibble first.
  uint8_t* qs = block.data() + 16;
  for (int g = 0; g < 4; ++g)
    for (int l = 0; l < 32; ++l)
      qs[32 * g + l] = static_cast<uint8_t>((l % 16) | (((l + 32) % 16) << 4));
  auto y = ggml_decode(GgmlType::q4_k, block.data(), 1, 256);
  for (int i = 0; i < 256; ++i) {
    int sub = i / 32;
    float want = 0.5f * (sub + 1) * (i % 16) - 0.25f * (sub + 10);
    ASSERT_EQ(y[static_cast<size_t>(i)], want) << i;
  }
}

// Q5_K: Q4_K's header and scales, qh[32] (bit 2g / 2g+1 of qh[l]: fifth bit of value l / l+32
// of 64-value group g), then the low nibbles as Q4_K lays them out.
TEST(GgufQuant, Q5_KDecodesTheFormat) {
  std::vector<uint8_t> block(176, 0);
  uint16_t d = f32_to_f16(0.5f), dmin = f32_to_f16(0.25f);
  std::memcpy(block.data(), &d, 2);
  std::memcpy(block.data() + 2, &dmin, 2);
  uint8_t* sc = block.data() + 4;
  for (int j = 0; j < 8; ++j) {  // scales 1..8, mins 10..17, packed as in Q4_K
    int s = j + 1, m = j + 10;
    if (j < 4) {
      sc[j] = static_cast<uint8_t>(s);
      sc[j + 4] = static_cast<uint8_t>(m);
    } else {
      sc[j + 4] = static_cast<uint8_t>((s & 0xF) | ((m & 0xF) << 4));
      sc[j - 4] |= static_cast<uint8_t>((s >> 4) << 6);
      sc[j] |= static_cast<uint8_t>((m >> 4) << 6);
    }
  }
  uint8_t* qh = block.data() + 16;
  uint8_t* ql = block.data() + 48;
  auto quant = [](int i) { return (i * 7) % 32; };  // value i's 5-bit quant
  for (int g = 0; g < 4; ++g)
    for (int l = 0; l < 32; ++l) {
      int a = quant(64 * g + l), b = quant(64 * g + 32 + l);
      ql[32 * g + l] = static_cast<uint8_t>((a & 0xF) | ((b & 0xF) << 4));
      qh[l] |= static_cast<uint8_t>(((a >> 4) << (2 * g)) | ((b >> 4) << (2 * g + 1)));
    }
  auto y = ggml_decode(GgmlType::q5_k, block.data(), 1, 256);
  for (int i = 0; i < 256; ++i) {
    int sub = i / 32;
    float want = 0.5f * (sub + 1) * quant(i) - 0.25f * (sub + 10);
    ASSERT_EQ(y[static_cast<size_t>(i)], want) << i;
  }
}

TEST(GgufQuant, Q6_KDecodesTheFormat) {
  std::vector<uint8_t> block(210, 0);
  uint8_t* ql = block.data();
  uint8_t* qh = block.data() + 128;
  auto* sc = reinterpret_cast<int8_t*>(block.data() + 192);
  for (int i = 0; i < 16; ++i) sc[i] = static_cast<int8_t>(i - 8);
  uint16_t d = f32_to_f16(0.125f);
  std::memcpy(block.data() + 208, &d, 2);
  // Quant of value i: q = i % 64 (stored unsigned, value q - 32).
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      int base = 128 * half;
      int q[4] = {(base + l) % 64, (base + l + 32) % 64, (base + l + 64) % 64,
                  (base + l + 96) % 64};
      ql[64 * half + l] = static_cast<uint8_t>((q[0] & 0xF) | ((q[2] & 0xF) << 4));
      ql[64 * half + l + 32] = static_cast<uint8_t>((q[1] & 0xF) | ((q[3] & 0xF) << 4));
      qh[32 * half + l] = static_cast<uint8_t>((q[0] >> 4) | ((q[1] >> 4) << 2) |
                                               ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6));
    }
  }
  auto y = ggml_decode(GgmlType::q6_k, block.data(), 1, 256);
  for (int i = 0; i < 256; ++i) {
    float want = 0.125f * (i / 16 - 8) * (i % 64 - 32);
    ASSERT_EQ(y[static_cast<size_t>(i)], want) << i;
  }
}

// llama.cpp's quantize: Q4_K -> Q5_0, Q6_K -> Q8_0 when a row is not a multiple of 256, F16 when
// not even of 32; the fallback types really encode such rows.
TEST(GgufQuant, FallbackForShortRows) {
  EXPECT_EQ(gguf_fallback_type(GgmlType::q4_k, 512), GgmlType::q4_k);
  EXPECT_EQ(gguf_fallback_type(GgmlType::q4_k, 96), GgmlType::q5_0);
  EXPECT_EQ(gguf_fallback_type(GgmlType::q6_k, 96), GgmlType::q8_0);
  EXPECT_EQ(gguf_fallback_type(GgmlType::q5_k, 96), GgmlType::q5_1);
  EXPECT_EQ(gguf_fallback_type(GgmlType::q4_k, 100), GgmlType::f16);
  EXPECT_EQ(gguf_fallback_type(GgmlType::q8_0, 100), GgmlType::f16);
  auto x = gaussian(96 * 4, 6);
  auto y = round_trip(gguf_fallback_type(GgmlType::q4_k, 96), x, 96);
  EXPECT_LE(rms_rel_error(x, y), 0.05);  // uniform error of a step ~0.13 sigma
  try {
    ggml_encode(GgmlType::q4_k, x.data(), 4, 96, "blk.0.ffn_down.weight");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(test::contains(e.what(), "blk.0.ffn_down.weight: rows of 96 values"));
    EXPECT_TRUE(test::contains(e.what(), "divisible by 256"));
  }
}

TEST(GgufWriter, WritesAndReadsBack) {
  test::TempDir dir("gguf_writer");
  std::string path = dir.path + "/m.gguf";
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 2);
  w.add_f32("llama.rope.freq_base", 10000.0f);
  w.add_bool("tokenizer.ggml.add_bos_token", true);
  w.add_strings("tokenizer.ggml.tokens", {"a", "b c", ""});
  w.add_i32s("tokenizer.ggml.token_type", {1, 3, 6});
  w.add_f32s("tokenizer.ggml.scores", {0.0f, -1.5f, 2.0f});
  auto x = gaussian(3 * 64, 7);
  w.add_tensor("a.weight", {3, 64}, GgmlType::f32,
               ggml_encode(GgmlType::f32, x.data(), 3, 64, "a"));
  w.add_tensor("b.weight", {3, 64}, GgmlType::q8_0,
               ggml_encode(GgmlType::q8_0, x.data(), 3, 64, "b"));
  w.add_tensor("c", {5}, GgmlType::f16, ggml_encode(GgmlType::f16, x.data(), 1, 5, "c"));
  w.write(path);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid())));

  GgufFile f = read_gguf(path);
  EXPECT_EQ(f.version, 3u);
  EXPECT_EQ(f.metadata.at("general.architecture"), "llama");
  EXPECT_EQ(f.metadata_types.at("llama.block_count"), GgufType::u32);
  EXPECT_EQ(f.metadata.at("llama.block_count"), 2);
  EXPECT_EQ(f.metadata.at("llama.rope.freq_base"), 10000.0);
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.add_bos_token"), true);
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.tokens"), nlohmann::json({"a", "b c", ""}));
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.token_type"), nlohmann::json({1, 3, 6}));
  EXPECT_EQ(f.metadata.at("tokenizer.ggml.scores"), nlohmann::json({0.0, -1.5, 2.0}));
  EXPECT_EQ(f.tensor_names, (std::vector<std::string>{"a.weight", "b.weight", "c"}));
  EXPECT_EQ(f.tensors.at("b.weight").shape, (std::vector<int64_t>{3, 64}));
  EXPECT_EQ(f.tensors.at("b.weight").type, GgmlType::q8_0);
  for (const auto& [name, info] : f.tensors) EXPECT_EQ(info.offset % 32, 0u) << name;
  EXPECT_EQ(f.tensor_f32("a.weight"), x);
  EXPECT_EQ(f.tensor_f32("b.weight"), round_trip(GgmlType::q8_0, x, 64));
  EXPECT_EQ(f.tensor_f32("c")[4], f16_to_f32(f32_to_f16(x[4])));
  // The file on disk: magic, version 3, 3 tensors, 7 keys; ne stored innermost first.
  std::ifstream in(path, std::ios::binary);
  char head[24];
  in.read(head, 24);
  uint32_t version;
  uint64_t nt, nkv;
  std::memcpy(&version, head + 4, 4);
  std::memcpy(&nt, head + 8, 8);
  std::memcpy(&nkv, head + 16, 8);
  EXPECT_EQ(std::string(head, 4), "GGUF");
  EXPECT_EQ(version, 3u);
  EXPECT_EQ(nt, 3u);
  EXPECT_EQ(nkv, 7u);
}

// Declared tensors get their bytes from write()'s producer, one at a time, in order; bytes that
// disagree with the header already written are an error and leave no file.
TEST(GgufWriter, StreamsDeclaredTensors) {
  test::TempDir dir("gguf_stream");
  std::string path = dir.path + "/s.gguf";
  auto x = gaussian(4 * 256, 10);
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.declare_tensor("q.weight", {4, 256}, GgmlType::q4_k);
  w.add_tensor("f.weight", {2}, GgmlType::f32, ggml_encode(GgmlType::f32, x.data(), 1, 2, "f"));
  w.declare_tensor("h.weight", {4, 256}, GgmlType::f16);
  std::vector<size_t> asked;
  w.write(path, [&](size_t i) {
    asked.push_back(i);
    GgmlType t = i == 0 ? GgmlType::q4_k : GgmlType::f16;
    return ggml_encode(t, x.data(), 4, 256, "t");
  });
  EXPECT_EQ(asked, (std::vector<size_t>{0, 2}));
  GgufFile f = read_gguf(path);
  EXPECT_EQ(f.tensor_f32("q.weight"), round_trip(GgmlType::q4_k, x, 256));
  EXPECT_EQ(f.tensor_f32("h.weight"), round_trip(GgmlType::f16, x, 256));
  EXPECT_EQ(f.tensor_f32("f.weight")[1], x[1]);

  std::string bad = dir.path + "/bad.gguf";
  EXPECT_THROW(w.write(bad, [&](size_t) { return std::vector<uint8_t>(7); }), Error);
  EXPECT_FALSE(std::filesystem::exists(bad));
}

}  // namespace
}  // namespace tune::io
