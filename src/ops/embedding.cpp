// Embedding lookup (out = table[ids]) and its scatter-add backward.
#include "backend/cpu/cpu_kernels.h"
#include "backend/cuda/embedding_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

namespace {

// ids must index rows of a (V, C) table.
void check_ids_in_vocab(const char* op, const Tensor& ids, int64_t vocab, const char* table) {
  const int64_t bad = detail::first_out_of_range(ids, vocab);
  if (bad >= 0) {
    detail::fail(op, str("id ", static_cast<int64_t>(ids.item(bad)), " at position ", bad,
                         " of ids is outside [0, ", vocab, "): ", table, " has ", vocab,
                         " rows (the vocabulary size)"));
  }
}

// After a CUDA kernel reported `bad` (-1: none), the same message as the CPU check: the id is read
// back from the device.
void throw_if_bad_cuda_id(const char* op, const Tensor& ids, int64_t bad, int64_t vocab,
                          const char* table) {
  if (bad < 0) return;
  Tensor one = Tensor::empty({1}, ids.dtype());
  one.copy_from(ids.narrow(bad, 1));
  detail::fail(op, str("id ", static_cast<int64_t>(one.item(0)), " at position ", bad,
                       " of ids is outside [0, ", vocab, "): ", table, " has ", vocab,
                       " rows (the vocabulary size)"));
}

}  // namespace

void embedding_forward(Tensor& out, const Tensor& ids, const Tensor& table) {
  constexpr const char* op = "embedding_forward";
  const Arg oa{"out", out}, ia{"ids", ids}, ta{"table", table};
  detail::check_rank(op, ta, 2);
  detail::check_rank(op, ia, 1);
  detail::check_shape(op, oa, {ids.size(0), table.size(1)}, ta);
  detail::check_index(op, ia);
  if (detail::check_device(op, {oa, ia, ta}) == Device::cuda) {
    // Ids stay on the device: the kernel checks them (backend/cuda/embedding_kernels.h).
    const DType dt = detail::check_cuda_float(op, {oa, ta});
    const int64_t bad = cuda::embedding_forward(dt, ids.dtype(), out.raw(), ids.raw(), table.raw(),
                                                ids.size(0), table.size(1), table.size(0));
    throw_if_bad_cuda_id(op, ids, bad, table.size(0), "table");
    return;
  }
  const DType dt = detail::check_float(op, {oa, ta});
  check_ids_in_vocab(op, ids, table.size(0), "table");
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    detail::dispatch_index(ids.dtype(), [&](auto itag) {
      using I = decltype(itag);
      cpu::embedding_forward<T, I>(out.data<T>(), ids.data<I>(), table.data<T>(), ids.size(0),
                                   table.size(1));
    });
  });
}

void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids) {
  constexpr const char* op = "embedding_backward";
  const Arg ta{"dtable", dtable}, oa{"dout", dout}, ia{"ids", ids};
  detail::check_rank(op, ta, 2);
  detail::check_rank(op, ia, 1);
  detail::check_shape(op, oa, {ids.size(0), dtable.size(1)}, ta);
  detail::check_index(op, ia);
  if (detail::check_device(op, {ta, oa, ia}) == Device::cuda) {
    const DType dt = detail::check_cuda_float(op, {ta, oa});
    const int64_t bad =
        cuda::embedding_backward(dt, ids.dtype(), dtable.raw(), dout.raw(), ids.raw(), ids.size(0),
                                 dtable.size(1), dtable.size(0));
    throw_if_bad_cuda_id(op, ids, bad, dtable.size(0), "dtable");
    return;
  }
  const DType dt = detail::check_float(op, {ta, oa});
  check_ids_in_vocab(op, ids, dtable.size(0), "dtable");
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    detail::dispatch_index(ids.dtype(), [&](auto itag) {
      using I = decltype(itag);
      cpu::embedding_backward<T, I>(dtable.data<T>(), dout.data<T>(), ids.data<I>(), ids.size(0),
                                    dtable.size(1));
    });
  });
}

}  // namespace tune::ops
