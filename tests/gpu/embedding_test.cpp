// ops::embedding_forward / embedding_backward on the GPU against the CPU op in f64 on the same
// rounded inputs: f32/bf16/f16 tables, i32 and i64 ids with many repeats (the backward sums each
// id's rows in one segment after sorting by id), long runs of one id, awkward row counts and
// widths, outputs inside sentinel-filled buffers (pads of 37 elements misalign rows for 16-byte
// access, 64 keep them aligned). Forward is an exact copy; backward within 1e-6 (f32; 1e-5 with a
// run of 32768 rows) or the storage dtype's rounding of one addition. Bad ids throw naming the id;
// backward is bitwise reproducible.
#include <gtest/gtest.h>

#include "gpu/gpu_test_util.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using test::fetch;
using test::place;
using test::Placed;
using test::rounded;
using test::to_device;

// i64 ids as id_type.
Tensor as_id_type(const Tensor& ids, DType id_type) {
  if (id_type == DType::i64) return ids;
  const int64_t n = ids.numel();
  Tensor i32 = Tensor::empty({n}, DType::i32);
  for (int64_t i = 0; i < n; ++i) i32.data<int32_t>()[i] = static_cast<int32_t>(ids.item(i));
  return i32;
}

Tensor ids_of(DType id_type, int64_t n, int64_t vocab, uint64_t seed) {
  // Few distinct ids (vocab / 3 + 1 of them) so that rows repeat.
  Tensor ids = test::randint({n}, vocab / 3 + 1, seed);
  for (int64_t i = 0; i < n; ++i) ids.data<int64_t>()[i] *= 3;
  return as_id_type(ids, id_type);
}

Tensor ids_to_device(const Tensor& ids) {
  Tensor d = Tensor::empty(ids.shape(), ids.dtype(), Device::cuda);
  d.copy_from(ids);
  return d;
}

// The backward into a table of `vocab` rows that holds values already, on the device against the
// CPU: within f32_tol in f32, the storage dtype's rounding of one addition otherwise.
void expect_backward_matches(DType dtype, const Tensor& ids, int64_t vocab, int64_t c, int64_t pad,
                             uint64_t seed, double f32_tol) {
  const int64_t n = ids.numel();
  const Tensor dout = rounded({n, c}, dtype, seed);
  const Tensor dtable0 = rounded({vocab, c}, dtype, seed + 1);
  Tensor dtable_ref = dtable0.clone();
  ops::embedding_backward(dtable_ref, dout, ids);
  Placed dtable = place({vocab, c}, dtype, pad, dtable0);
  Placed dout_dev = place({n, c}, dtype, pad, dout);
  ops::embedding_backward(dtable.view, dout_dev.view, ids_to_device(ids));
  const double tol = dtype == DType::f32 ? f32_tol : (dtype == DType::bf16 ? 8e-3 : 1e-3);
  EXPECT_LE(test::rel_error(fetch(dtable, {vocab, c}, "dtable"), dtable_ref), tol);
}

void check(DType dtype, DType id_type, int64_t n, int64_t c, int64_t pad) {
  SCOPED_TRACE(
      str(dtype_name(dtype), " ids ", dtype_name(id_type), " n=", n, " c=", c, " pad=", pad));
  const int64_t vocab = 97;
  const uint64_t seed = static_cast<uint64_t>(n * 7919 + c * 31 + pad);
  const Tensor table = rounded({vocab, c}, dtype, seed);
  const Tensor ids = ids_of(id_type, n, vocab, seed + 1);
  const Tensor ids_dev = ids_to_device(ids);

  Tensor out_ref = Tensor::empty({n, c}, DType::f64);
  ops::embedding_forward(out_ref, ids, table);
  Placed table_dev = place({vocab, c}, dtype, pad, table);
  Placed out = place({n, c}, dtype, pad);
  ops::embedding_forward(out.view, ids_dev, table_dev.view);
  EXPECT_EQ(test::max_abs_diff(fetch(out, {n, c}, "out"), out_ref), 0.0);

  expect_backward_matches(dtype, ids, vocab, c, pad, seed + 2, 1e-6);
}

// Long runs of one id, the backward's segments after its sort: few ids over many rows, GPT-2's
// 65536 tokens over its 50257 ids, and a pad id on every other row (one run of n / 2 rows).
void check_repeats(DType dtype, DType id_type, int64_t n, int64_t vocab, bool pad_rows,
                   int64_t pad) {
  SCOPED_TRACE(str(dtype_name(dtype), " ids ", dtype_name(id_type), " n=", n, " vocab=", vocab,
                   pad_rows ? " pad rows" : "", " pad=", pad));
  const int64_t c = 64;
  const uint64_t seed = static_cast<uint64_t>(n * 13 + vocab + (pad_rows ? 1 : 0));
  Tensor ids = test::randint({n}, vocab, seed);
  if (pad_rows) {
    for (int64_t i = 0; i < n; i += 2) ids.data<int64_t>()[i] = vocab - 1;
  }
  // f32: a run of 32768 rows is summed in f32, so its rounding grows past one addition's.
  expect_backward_matches(dtype, as_id_type(ids, id_type), vocab, c, pad, seed + 1, 1e-5);
}

TEST(CudaEmbedding, BackwardMatchesCpuWithLongRunsOfOneId) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (DType id_type : {DType::i64, DType::i32}) {
      check_repeats(dtype, id_type, 4097, 7, false, 37);
      check_repeats(dtype, id_type, 4097, 7, false, 64);
      check_repeats(dtype, id_type, 65536, 50257, false, 64);
      check_repeats(dtype, id_type, 65536, 50257, true, 64);
    }
  }
}

TEST(CudaEmbedding, MatchesCpuAtAwkwardSizes) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (DType id_type : {DType::i64, DType::i32}) {
      for (int64_t n : {1, 7, 33, 257, 4097}) {
        for (int64_t c : {64, 80, 128, 256}) {
          check(dtype, id_type, n, c, 37);
          check(dtype, id_type, n, c, 64);
        }
      }
      check(dtype, id_type, 1031, 4096, 64);
      check(dtype, id_type, 33, 4104, 37);
    }
  }
}

TEST(CudaEmbedding, BadIdThrowsNamingItAndBackwardIsReproducible) {
  const int64_t vocab = 50, c = 64, n = 300;
  const Tensor table = to_device(rounded({vocab, c}, DType::bf16, 1), DType::bf16);
  Tensor ids = test::randint({n}, vocab, 2);
  ids.data<int64_t>()[123] = 50;
  ids.data<int64_t>()[200] = -4;
  const Tensor ids_dev = ids_to_device(ids);
  Tensor out = Tensor::empty({n, c}, DType::bf16, Device::cuda);
  try {
    ops::embedding_forward(out, ids_dev, table);
    FAIL() << "no error for id 50";
  } catch (const Error& e) {
    EXPECT_TRUE(test::contains(e.what(),
                               "[embedding_forward] id 50 at position 123 of ids is "
                               "outside [0, 50)"))
        << e.what();
  }
  Tensor dtable = to_device(rounded({vocab, c}, DType::bf16, 3), DType::bf16);
  EXPECT_THROW(ops::embedding_backward(dtable, out, ids_dev), Error);

  // Many repeats of few ids: two runs give the same bits.
  const Tensor rep = ids_to_device(test::randint({4097}, 5, 4));
  const Tensor dout = to_device(rounded({4097, c}, DType::f32, 5), DType::f32);
  Tensor d1 = Tensor::zeros({vocab, c}, DType::f32, Device::cuda);
  Tensor d2 = Tensor::zeros({vocab, c}, DType::f32, Device::cuda);
  ops::embedding_backward(d1, dout, rep);
  ops::embedding_backward(d2, dout, rep);
  Tensor h1 = Tensor::empty({vocab, c}, DType::f32), h2 = h1.clone();
  h1.copy_from(d1);
  h2.copy_from(d2);
  EXPECT_EQ(test::max_abs_diff(h1.to(DType::f64), h2.to(DType::f64)), 0.0);
}

}  // namespace
}  // namespace tune
