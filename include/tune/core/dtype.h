// Element types. Storage may be any of them; CPU kernels compute in f32 or f64 (f64 exists for
// finite-difference gradient tests). bf16/f16 convert to and from f32 with round-to-nearest-even,
// NaN kept NaN.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace tune {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, u8 };

size_t dtype_size(DType t);
// Our name, as users write it in configs: "f32", "bf16", ...
const char* dtype_name(DType t);
// Parses our names and the common aliases ("float32", "bfloat16", "fp16", ...); throws on others.
DType parse_dtype(std::string_view name);
bool is_float(DType t);

// safetensors dtype strings ("F32", "BF16", "I64", ...). Unknown strings return false.
bool dtype_from_safetensors(std::string_view s, DType* out);
const char* dtype_to_safetensors(DType t);

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40);  // quiet NaN
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);    // round to nearest, ties to even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace tune
