// GGUF v3 writer and reader (layout in gguf.h). The writer keeps the encoded metadata and each
// tensor's bytes in memory and streams them through AtomicFile in one pass.
#include <cstring>
#include <fstream>

#include "tune/core/error.h"
#include "tune/io/files.h"
#include "tune/io/gguf.h"

namespace tune::io {

namespace {

constexpr uint32_t kVersion = 3;
constexpr uint64_t kAlignment = 32;

template <typename T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.append(s);
}
uint64_t align_up(uint64_t n) {
  return (n + kAlignment - 1) / kAlignment * kAlignment;
}

}  // namespace

void GgufWriter::begin_key(const std::string& key, GgufType type) {
  TUNE_ASSERT(!has_key(key), "GGUF metadata key ", key, " added twice");
  keys_.push_back(key);
  put_string(meta_, key);
  put<uint32_t>(meta_, static_cast<uint32_t>(type));
  ++meta_count_;
}

bool GgufWriter::has_key(const std::string& key) const {
  for (const auto& k : keys_)
    if (k == key) return true;
  return false;
}

void GgufWriter::add_string(const std::string& key, const std::string& value) {
  begin_key(key, GgufType::string);
  put_string(meta_, value);
}
void GgufWriter::add_u32(const std::string& key, uint32_t value) {
  begin_key(key, GgufType::u32);
  put(meta_, value);
}
void GgufWriter::add_i32(const std::string& key, int32_t value) {
  begin_key(key, GgufType::i32);
  put(meta_, value);
}
void GgufWriter::add_u64(const std::string& key, uint64_t value) {
  begin_key(key, GgufType::u64);
  put(meta_, value);
}
void GgufWriter::add_f32(const std::string& key, float value) {
  begin_key(key, GgufType::f32);
  put(meta_, value);
}
void GgufWriter::add_bool(const std::string& key, bool value) {
  begin_key(key, GgufType::boolean);
  put<uint8_t>(meta_, value ? 1 : 0);
}
void GgufWriter::add_strings(const std::string& key, const std::vector<std::string>& values) {
  begin_key(key, GgufType::array);
  put<uint32_t>(meta_, static_cast<uint32_t>(GgufType::string));
  put<uint64_t>(meta_, values.size());
  for (const auto& v : values) put_string(meta_, v);
}
void GgufWriter::add_i32s(const std::string& key, const std::vector<int32_t>& values) {
  begin_key(key, GgufType::array);
  put<uint32_t>(meta_, static_cast<uint32_t>(GgufType::i32));
  put<uint64_t>(meta_, values.size());
  for (int32_t v : values) put(meta_, v);
}
void GgufWriter::add_f32s(const std::string& key, const std::vector<float>& values) {
  begin_key(key, GgufType::array);
  put<uint32_t>(meta_, static_cast<uint32_t>(GgufType::f32));
  put<uint64_t>(meta_, values.size());
  for (float v : values) put(meta_, v);
}

namespace {

int64_t tensor_bytes(const std::vector<int64_t>& shape, GgmlType type) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  return rows * ggml_row_bytes(type, shape.back());
}

}  // namespace

void GgufWriter::declare_tensor(const std::string& name, const std::vector<int64_t>& shape,
                                GgmlType type) {
  for (const auto& t : tensors_) TUNE_ASSERT(t.name != name, "GGUF tensor ", name, " added twice");
  TUNE_ASSERT(!shape.empty(), "GGUF tensor ", name, " has no dimensions");
  tensor_bytes(shape, type);  // asserts that rows divide into blocks
  tensors_.push_back({name, shape, type, {}, true});
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& shape,
                            GgmlType type, std::vector<uint8_t> data) {
  declare_tensor(name, shape, type);
  int64_t expected = tensor_bytes(shape, type);
  TUNE_ASSERT(static_cast<int64_t>(data.size()) == expected, "GGUF tensor ", name, ": ",
              data.size(), " bytes given, ", ggml_type_name(type), " ", shape_str(shape), " needs ",
              expected);
  tensors_.back().data = std::move(data);
  tensors_.back().declared = false;
}

void GgufWriter::write(const std::string& path,
                       const std::function<std::vector<uint8_t>(size_t)>& produce) const {
  std::string head;
  head.append("GGUF");
  put<uint32_t>(head, kVersion);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, meta_count_);
  head.append(meta_);
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(head, *it);
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, offset);
    offset = align_up(offset + static_cast<uint64_t>(tensor_bytes(t.shape, t.type)));
  }
  head.resize(align_up(head.size()), '\0');
  AtomicFile file(path);
  file.write(head);
  static const char kZeros[kAlignment] = {};
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    const auto n = static_cast<size_t>(tensor_bytes(t.shape, t.type));
    if (t.declared) {
      TUNE_ASSERT(produce, "GGUF tensor ", t.name, " was declared but write() has no producer");
      std::vector<uint8_t> bytes = produce(i);
      TUNE_ASSERT(bytes.size() == n, "GGUF tensor ", t.name, ": ", bytes.size(),
                  " bytes produced, the header says ", n);
      file.write(bytes.data(), n);
    } else {
      file.write(t.data.data(), n);
    }
    file.write(kZeros, align_up(n) - n);
  }
  file.commit();
}

// ---- reader ----

namespace {

struct Cursor {
  const std::string& path;
  const std::vector<uint8_t>& bytes;
  size_t pos = 0;

  void need(size_t n) const {
    TUNE_CHECK(pos + n <= bytes.size(), path, ": truncated GGUF file (", n,
               " more bytes needed at offset ", pos, "); write it again");
  }
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, bytes.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string get_string() {
    auto n = get<uint64_t>();
    need(n);
    std::string s(reinterpret_cast<const char*>(bytes.data() + pos), n);
    pos += n;
    return s;
  }
  nlohmann::json value(GgufType t) {
    switch (t) {
      case GgufType::u8:
        return get<uint8_t>();
      case GgufType::i8:
        return get<int8_t>();
      case GgufType::u16:
        return get<uint16_t>();
      case GgufType::i16:
        return get<int16_t>();
      case GgufType::u32:
        return get<uint32_t>();
      case GgufType::i32:
        return get<int32_t>();
      case GgufType::f32:
        return get<float>();
      case GgufType::boolean:
        return get<uint8_t>() != 0;
      case GgufType::string:
        return get_string();
      case GgufType::u64:
        return get<uint64_t>();
      case GgufType::i64:
        return get<int64_t>();
      case GgufType::f64:
        return get<double>();
      case GgufType::array: {
        auto et = static_cast<GgufType>(get<uint32_t>());
        auto n = get<uint64_t>();
        nlohmann::json a = nlohmann::json::array();
        for (uint64_t i = 0; i < n; ++i) a.push_back(value(et));
        return a;
      }
    }
    throw Error(
        str(path, ": unknown GGUF value type ", static_cast<uint32_t>(t), " at offset ", pos));
  }
};

}  // namespace

std::vector<float> GgufFile::tensor_f32(const std::string& name) const {
  auto it = tensors.find(name);
  TUNE_CHECK(it != tensors.end(), "GGUF file has no tensor ", name);
  const auto& info = it->second;
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < info.shape.size(); ++i) rows *= info.shape[i];
  return ggml_decode(info.type, data.data() + info.offset, rows, info.shape.back());
}

GgufFile read_gguf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TUNE_CHECK(in, path, ": cannot open");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  Cursor c{path, bytes};
  c.need(4);
  TUNE_CHECK(std::memcmp(bytes.data(), "GGUF", 4) == 0, path, ": not a GGUF file (no magic)");
  c.pos = 4;
  GgufFile f;
  f.version = c.get<uint32_t>();
  auto n_tensors = c.get<uint64_t>();
  auto n_kv = c.get<uint64_t>();
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.get_string();
    auto t = static_cast<GgufType>(c.get<uint32_t>());
    f.metadata[key] = c.value(t);
    f.metadata_types[key] = t;
  }
  if (f.metadata.count("general.alignment")) {
    f.alignment = f.metadata["general.alignment"].get<uint32_t>();
  }
  for (uint64_t i = 0; i < n_tensors; ++i) {
    std::string name = c.get_string();
    auto n_dims = c.get<uint32_t>();
    GgufTensorInfo info;
    for (uint32_t d = 0; d < n_dims; ++d) info.shape.insert(info.shape.begin(), c.get<int64_t>());
    info.type = static_cast<GgmlType>(c.get<uint32_t>());
    info.offset = c.get<uint64_t>();
    int64_t rows = 1;
    for (size_t d = 0; d + 1 < info.shape.size(); ++d) rows *= info.shape[d];
    info.bytes = static_cast<uint64_t>(rows * ggml_row_bytes(info.type, info.shape.back()));
    f.tensor_names.push_back(name);
    f.tensors[name] = info;
  }
  size_t data_start = (c.pos + f.alignment - 1) / f.alignment * f.alignment;
  TUNE_CHECK(data_start <= bytes.size(), path, ": truncated GGUF file (no data section)");
  f.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(data_start), bytes.end());
  for (const auto& [name, info] : f.tensors) {
    TUNE_CHECK(info.offset % f.alignment == 0 && info.offset + info.bytes <= f.data.size(), path,
               ": tensor ", name, " lies outside the data section or is misaligned");
  }
  return f;
}

}  // namespace tune::io
