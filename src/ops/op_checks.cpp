#include "ops/op_checks.h"

#include <algorithm>

namespace tune::ops::detail {

void fail(const char* op, const std::string& message) {
  throw Error(str("[", op, "] ", message));
}

void check_defined(const char* op, const Arg& a) {
  if (!a.tensor.defined()) fail(op, str(a.name, " is undefined; pass an allocated tensor"));
}

void check_rank(const char* op, const Arg& a, int64_t rank) {
  check_defined(op, a);
  if (a.tensor.dim() != rank) {
    fail(op, str(a.name, " must have ", rank, " dimensions but has shape ",
                 shape_str(a.tensor.shape())));
  }
}

void check_shape(const char* op, const Arg& a, const Shape& expected, const Arg& ref) {
  check_defined(op, a);
  if (a.tensor.shape() != expected) {
    fail(op,
         str(a.name, " has shape ", shape_str(a.tensor.shape()), " but ", ref.name, " has shape ",
             shape_str(ref.tensor.shape()), "; expected ", a.name, " to be ", shape_str(expected)));
  }
}

void check_same_shape(const char* op, const Arg& a, const Arg& b) {
  check_shape(op, a, b.tensor.shape(), b);
}

Device check_device(const char* op, std::initializer_list<Arg> args) {
  const Arg* first = nullptr;
  for (const Arg& a : args) {
    check_defined(op, a);
    if (!first) {
      first = &a;
    } else if (a.tensor.device() != first->tensor.device()) {
      fail(op, str(first->name, " is ", first->tensor.describe(), " but ", a.name, " is ",
                   a.tensor.describe(), "; move them to one device"));
    }
  }
  return first ? first->tensor.device() : Device::cpu;
}

void no_cuda_kernel(const char* op) {
  fail(op, "no CUDA kernel yet");
}

DType check_float(const char* op, std::initializer_list<Arg> args) {
  const Arg* first = nullptr;
  for (const Arg& a : args) {
    check_defined(op, a);
    const DType t = a.tensor.dtype();
    if (t != DType::f32 && t != DType::f64) {
      fail(op, str(a.name, " is ", a.tensor.describe(), "; CPU kernels compute in f32 or f64"));
    }
    if (!first) {
      first = &a;
    } else if (t != first->tensor.dtype()) {
      fail(op, str(first->name, " is ", first->tensor.describe(), " but ", a.name, " is ",
                   a.tensor.describe(), "; the float tensors of one op share one dtype"));
    }
  }
  return first ? first->tensor.dtype() : DType::f32;
}

DType check_cuda_float(const char* op, std::initializer_list<Arg> args) {
  const Arg* first = nullptr;
  for (const Arg& a : args) {
    check_defined(op, a);
    const DType t = a.tensor.dtype();
    if (t != DType::f32 && t != DType::bf16 && t != DType::f16) {
      fail(op, str(a.name, " is ", a.tensor.describe(), "; CUDA kernels take f32, bf16 or f16"));
    }
    if (!first) {
      first = &a;
    } else if (t != first->tensor.dtype()) {
      fail(op, str(first->name, " is ", first->tensor.describe(), " but ", a.name, " is ",
                   a.tensor.describe(), "; the float tensors of one op share one dtype"));
    }
  }
  return first ? first->tensor.dtype() : DType::f32;
}

void check_index(const char* op, const Arg& a) {
  check_defined(op, a);
  const DType t = a.tensor.dtype();
  if (t != DType::i64 && t != DType::i32) {
    fail(op, str(a.name, " is ", a.tensor.describe(), "; index tensors are i64 or i32"));
  }
}

int64_t first_out_of_range(const Tensor& ids, int64_t limit, std::optional<int64_t> ignored) {
  int64_t found = -1;
  dispatch_index(ids.dtype(), [&](auto tag) {
    using I = decltype(tag);
    const I* p = ids.data<I>();
    const int64_t n = ids.numel();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = static_cast<int64_t>(p[i]);
      if ((id < 0 || id >= limit) && id != ignored) {
        found = i;
        return;
      }
    }
  });
  return found;
}

void check_no_overlap(const char* op, const Arg& out, const Arg& in) {
  const auto* o = static_cast<const char*>(out.tensor.raw());
  const auto* i = static_cast<const char*>(in.tensor.raw());
  const size_t on = out.tensor.nbytes(), in_n = in.tensor.nbytes();
  if (on == 0 || in_n == 0) return;
  if (o < i + in_n && i < o + on) {
    fail(op, str(out.name, " overlaps ", in.name, " in memory; ", out.name,
                 " must be a separate buffer"));
  }
}

}  // namespace tune::ops::detail
