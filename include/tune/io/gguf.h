// GGUF files (llama.cpp's model format, version 3) and the ggml tensor encodings tune.cpp writes.
//
// Layout: "GGUF", u32 version (3), u64 tensor count, u64 metadata count; the metadata as
// (string key, u32 value type, value); the tensor infos as (string name, u32 n_dims, u64 ne[n_dims]
// innermost first, u32 ggml type, u64 offset into the data section); padding to
// general.alignment (32); the data section, each tensor starting on that alignment. Strings are
// u64 length + bytes, little-endian throughout.
//
// Encodings (ggml's block formats, from their definitions in ggml-common.h):
//   F32, F16, BF16      plain elements
//   Q8_0   32 values:   f16 d, i8 q[32]                    x = d * q
//   Q5_0   32 values:   f16 d, u8 qh[4], u8 qs[16]         x = d * (q - 16), q 5 bits
//   Q5_1   32 values:   f16 d, f16 m, u8 qh[4], u8 qs[16]  x = d * q + m, q 5 bits
//   Q4_K  256 values:   f16 d, f16 dmin, u8 scales[12], u8 qs[128]
//                       8 sub-blocks of 32 with 6-bit scale sc and min m:  x = d*sc*q - dmin*m
//   Q5_K  256 values:   f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]  (Q4_K + a 5th bit)
//   Q6_K  256 values:   u8 ql[128], u8 qh[64], i8 scales[16], f16 d
//                       16 sub-blocks of 16 with an 8-bit scale:         x = d*sc*(q - 32)
// A row (the innermost dimension) must be a multiple of its type's block size; callers choose a
// fallback type first (see gguf_fallback_type), as llama.cpp's quantize does.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace tune::io {

// ggml_type values as they are stored in the file.
enum class GgmlType : uint32_t {
  f32 = 0,
  f16 = 1,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  bf16 = 30
};

const char* ggml_type_name(GgmlType t);  // "F32", "Q4_K", ... as llama.cpp prints them
int64_t ggml_block_size(GgmlType t);     // values per block (1 for plain types)
int64_t ggml_block_bytes(GgmlType t);    // bytes per block
// Bytes of a row of n values; n must be a multiple of the block size.
int64_t ggml_row_bytes(GgmlType t, int64_t n);

// Encodes `rows` rows of `n` f32 values (row-major) into `t`; throws, naming `what`, when n is
// not a multiple of t's block size.
std::vector<uint8_t> ggml_encode(GgmlType t, const float* x, int64_t rows, int64_t n,
                                 const std::string& what);
// The inverse (for tests and checks): `rows` rows of n values.
std::vector<float> ggml_decode(GgmlType t, const uint8_t* data, int64_t rows, int64_t n);

// llama.cpp's quantize: a k-quant whose rows do not divide into 256 falls back to a 32-block type
// (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), and to F16 when even 32 does not divide the row.
GgmlType gguf_fallback_type(GgmlType wanted, int64_t row_length);

// GGUF metadata value types.
enum class GgufType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12
};

// Builds a GGUF file in memory order: metadata in the order added, then tensors in the order
// added. write() publishes it atomically (temporary name in the same folder, fsync, rename).
class GgufWriter {
 public:
  void add_string(const std::string& key, const std::string& value);
  void add_u32(const std::string& key, uint32_t value);
  void add_i32(const std::string& key, int32_t value);
  void add_u64(const std::string& key, uint64_t value);
  void add_f32(const std::string& key, float value);
  void add_bool(const std::string& key, bool value);
  void add_strings(const std::string& key, const std::vector<std::string>& values);
  void add_i32s(const std::string& key, const std::vector<int32_t>& values);
  void add_f32s(const std::string& key, const std::vector<float>& values);
  bool has_key(const std::string& key) const;

  // `shape` is row-major (outermost first, as in safetensors: [out, in] for a weight); the file
  // stores it innermost first. `data` must hold exactly the bytes the type and shape need.
  void add_tensor(const std::string& name, const std::vector<int64_t>& shape, GgmlType type,
                  std::vector<uint8_t> data);
  // A tensor whose bytes write() asks for when it reaches it, so that a model is encoded one
  // tensor at a time and never held whole.
  void declare_tensor(const std::string& name, const std::vector<int64_t>& shape, GgmlType type);
  size_t tensor_count() const { return tensors_.size(); }

  // `produce(i)` returns the bytes of the i-th tensor (in the order added) for every tensor
  // declared without data; the sizes are checked against the header already written.
  void write(const std::string& path,
             const std::function<std::vector<uint8_t>(size_t)>& produce = nullptr) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    GgmlType type;
    std::vector<uint8_t> data;
    bool declared = false;  // bytes come from write()'s producer
  };
  void begin_key(const std::string& key, GgufType type);
  std::string meta_;  // the encoded key/value pairs
  uint64_t meta_count_ = 0;
  std::vector<std::string> keys_;
  std::vector<Tensor> tensors_;
};

// A GGUF file read back whole (for tests and `tune` checks; not an inference loader).
struct GgufTensorInfo {
  std::vector<int64_t> shape;  // row-major, outermost first
  GgmlType type = GgmlType::f32;
  uint64_t offset = 0;  // into the data section
  uint64_t bytes = 0;
};
struct GgufFile {
  uint32_t version = 0;
  uint32_t alignment = 32;
  std::map<std::string, nlohmann::json> metadata;  // arrays as JSON arrays
  std::map<std::string, GgufType> metadata_types;
  std::vector<std::string> tensor_names;  // in file order
  std::map<std::string, GgufTensorInfo> tensors;
  std::vector<uint8_t> data;                                     // the data section
  std::vector<float> tensor_f32(const std::string& name) const;  // decoded
};
GgufFile read_gguf(const std::string& path);

}  // namespace tune::io
