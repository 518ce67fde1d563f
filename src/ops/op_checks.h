// Argument checks shared by the op files, and the dtype dispatch to templated kernels. Every
// message starts with the op's name in brackets and names the tensors with their shapes, as in
// MLX: "[rms_norm_forward] x has shape (2, 3) but w has shape (4); expected w to be (3)".
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>

#include "tune/core/tensor.h"

namespace tune::ops::detail {

// A tensor with the name the op's signature gives it, for messages.
struct Arg {
  const char* name;
  const Tensor& tensor;
};

[[noreturn]] void fail(const char* op, const std::string& message);

void check_defined(const char* op, const Arg& a);
void check_rank(const char* op, const Arg& a, int64_t rank);
// a must have `expected` shape; `ref` is the tensor that implies it, quoted in the message.
void check_shape(const char* op, const Arg& a, const Shape& expected, const Arg& ref);
void check_same_shape(const char* op, const Arg& a, const Arg& b);

// All defined, on one device; returns it.
Device check_device(const char* op, std::initializer_list<Arg> args);
[[noreturn]] void no_cuda_kernel(const char* op);
// All share one dtype, and it is one the CPU kernels compute in (f32, f64); returns it.
DType check_float(const char* op, std::initializer_list<Arg> args);
// The CUDA counterpart of check_float: all share one dtype the CUDA kernels take (f32, bf16,
// f16, computed in f32); returns it.
DType check_cuda_float(const char* op, std::initializer_list<Arg> args);
// An index tensor: i64 or i32.
void check_index(const char* op, const Arg& a);
// Flat index of the first element of the index tensor outside [0, limit) and not equal to
// `ignored` (e.g. -100 for cross-entropy), or -1 when all are in range. CPU tensors only.
int64_t first_out_of_range(const Tensor& ids, int64_t limit,
                           std::optional<int64_t> ignored = std::nullopt);
// Throws when the memory of a and b overlaps (an output that must not alias an input).
void check_no_overlap(const char* op, const Arg& out, const Arg& in);

// Calls f(T{}) with T = float or double for a dtype that check_float accepted.
template <typename F>
void dispatch_float(DType t, F&& f) {
  if (t == DType::f32) {
    f(float{});
  } else {
    f(double{});
  }
}

// Calls f(I{}) with I = int32_t or int64_t for a dtype that check_index accepted.
template <typename F>
void dispatch_index(DType t, F&& f) {
  if (t == DType::i32) {
    f(int32_t{});
  } else {
    f(int64_t{});
  }
}

}  // namespace tune::ops::detail
