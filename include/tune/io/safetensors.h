// safetensors files: the weight format of Hugging Face checkpoints.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON header, then the data section.
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (byte
// offsets into the data section) and may carry "__metadata__", a string -> string map. Tensors
// tile the data section exactly: sorted by offset they start at 0, touch without gaps or overlap,
// and the last one ends at the end of the file.
//
// Reading maps the file (read-only, MAP_PRIVATE) and validates the whole header before returning,
// so every later call is a lookup. tensor() is a zero-copy view into the mapping; the mapping
// stays alive while the file object or any tensor taken from it lives. Those views are read-only
// memory: writing through them faults, so clone() a tensor before modifying it. Their data
// pointers are as aligned as the file makes them (the data section starts 8-byte aligned; tensors
// follow each other without padding), which is not the 64-byte alignment of Tensor::empty.
//
// Every problem in a file is a tune::Error that names the file (and tensor) and says what to do;
// nothing is half-opened.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tune/core/tensor.h"

namespace tune::io {

struct TensorInfo {
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the data section, end exclusive
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // An empty file object (no tensors, empty path), to be assigned from open().
  SafetensorsFile();

  static SafetensorsFile open(const std::string& path);

  const std::string& path() const;
  // Tensor names in order of their data offset (the order they lie in the file).
  const std::vector<std::string>& names() const;
  bool contains(const std::string& name) const;
  // Throws, naming the tensor and the file, when the file has no such tensor.
  const TensorInfo& info(const std::string& name) const;
  // A read-only view of the tensor's bytes in the mapping; the same pointer on every call.
  Tensor tensor(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const;
  // Bytes of the whole file, and of its data section.
  uint64_t file_size() const;
  uint64_t data_size() const;

 private:
  struct State;
  explicit SafetensorsFile(std::shared_ptr<const State> state);
  std::shared_ptr<const State> state_;  // shared by copies: a copy is cheap and maps nothing
};

// Writes CPU tensors of any dtype, in the given order, with optional metadata. The header is
// compact JSON ("__metadata__" first, then the tensors in data order) padded with spaces to a
// multiple of 8 bytes, so the data section starts 8-byte aligned as the reference
// implementation does. The file is written through AtomicFile: it appears complete or not at all.
// Throws for duplicate names, the reserved name "__metadata__", and undefined or non-CPU
// tensors.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace tune::io
