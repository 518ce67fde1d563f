// Row argmax of logits: greedy decoding's choice, on the device that holds the logits.
#include "backend/cpu/argmax_kernels.h"
#include "backend/cuda/argmax_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

void argmax_rows(Tensor& out, const Tensor& x) {
  constexpr const char* op = "argmax_rows";
  const Arg oa{"out", out}, xa{"x", x};
  detail::check_rank(op, xa, 2);
  detail::check_shape(op, oa, {x.size(0)}, xa);
  if (out.dtype() != DType::i64)
    detail::fail(op, str("out is ", out.describe(), "; it must be i64"));
  if (detail::check_device(op, {oa, xa}) == Device::cuda) {
    const DType dt = detail::check_cuda_float(op, {xa});
    cuda::argmax_rows(dt, out.data<int64_t>(), x.raw(), x.size(0), x.size(1));
    return;
  }
  const DType dt = detail::check_float(op, {xa});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::argmax_rows<T>(out.data<int64_t>(), x.data<T>(), x.size(0), x.size(1));
  });
}

}  // namespace tune::ops
