// ops::attention_forward on the GPU (no saved probs) against the CPU op in f64 on the same
// rounded inputs: the tensor-core flash kernel (bf16, f16 with more than 4 queries) and the
// split-key kernel (f32, and 1-4 queries), causal with Tq = Tk and bottom-right aligned Tq < Tk,
// GQA 4:1, MQA, MHA, sliding windows, packed documents (key_start), head dims 64/80/96/128/256
// and 72 (padded inside the kernel), sequence lengths that are not multiples of the tiles; out
// inside a sentinel-filled buffer. bf16 within 2e-2 relative, f16 1e-2, f32 1e-5. Saving probs
// on CUDA throws.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using test::fetch;
using test::place;
using test::Placed;
using test::to_device;

struct Case {
  int64_t batch, q_seq, kv_seq, q_heads, kv_heads, dim, window;
  std::vector<int64_t> doc_starts;  // packed documents (key_start), empty: none
};

// key_start [B, Tq]: the start of the document holding each query's absolute position.
Tensor key_start_of(const Case& c) {
  std::vector<int64_t> ks;
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t i = 0; i < c.q_seq; ++i) {
      const int64_t a = c.kv_seq - c.q_seq + i;
      int64_t start = 0;
      for (int64_t s : c.doc_starts) {
        if (s <= a) start = s;
      }
      ks.push_back(start);
    }
  }
  return Tensor::from_i64({c.batch, c.q_seq}, ks);
}

double check(const Case& c, DType dt) {
  SCOPED_TRACE(str(dtype_name(dt), " B=", c.batch, " Tq=", c.q_seq, " Tk=", c.kv_seq,
                   " Hq=", c.q_heads, " Hkv=", c.kv_heads, " D=", c.dim, " window=", c.window,
                   " docs=", c.doc_starts.size()));
  const uint64_t seed = static_cast<uint64_t>(c.q_seq * 131 + c.kv_seq * 7 + c.dim + c.q_heads);
  const Tensor q =
      test::randn({c.batch, c.q_seq, c.q_heads, c.dim}, DType::f32, seed).to(dt).to(DType::f64);
  const Tensor k = test::randn({c.batch, c.kv_seq, c.kv_heads, c.dim}, DType::f32, seed + 1)
                       .to(dt)
                       .to(DType::f64);
  const Tensor v = test::randn({c.batch, c.kv_seq, c.kv_heads, c.dim}, DType::f32, seed + 2)
                       .to(dt)
                       .to(DType::f64);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.dim));
  const Tensor ks = c.doc_starts.empty() ? Tensor() : key_start_of(c);
  Tensor ref = Tensor::empty(q.shape(), DType::f64), no_probs;
  ops::attention_forward(ref, no_probs, q, k, v, scale, c.window, ks);

  Tensor ks_dev;
  if (ks.defined()) {
    ks_dev = Tensor::empty(ks.shape(), DType::i64, Device::cuda);
    ks_dev.copy_from(ks);
  }
  Placed out = place(q.shape(), dt, 64);
  Tensor no_probs_dev;
  ops::attention_forward(out.view, no_probs_dev, to_device(q, dt), to_device(k, dt),
                         to_device(v, dt), scale, c.window, ks_dev);
  const double err = test::rel_error(fetch(out, q.shape()), ref);
  const double tol = dt == DType::f32 ? 1e-5 : (dt == DType::f16 ? 1e-2 : 2e-2);
  EXPECT_LE(err, tol);
  return err;
}

TEST(CudaAttentionForward, CausalSelfAttentionAtAwkwardSizes) {
  double worst_bf16 = 0, worst_f32 = 0;
  for (DType dt : {DType::bf16, DType::f16, DType::f32}) {
    double worst = 0;
    for (int64_t t : {1, 7, 33, 257}) {
      for (int64_t d : {64, 80, 128, 256}) {
        worst = std::max(worst, check({2, t, t, 8, 2, d, 0, {}}, dt));  // GQA 4:1
      }
      worst = std::max(worst, check({1, t, t, 4, 1, 96, 0, {}}, dt));  // MQA
      worst = std::max(worst, check({1, t, t, 3, 3, 72, 0, {}}, dt));  // MHA, padded dim
    }
    if (dt != DType::f32) worst = std::max(worst, check({1, 4097, 4097, 4, 1, 128, 0, {}}, dt));
    if (dt == DType::bf16) worst_bf16 = worst;
    if (dt == DType::f32) worst_f32 = worst;
  }
  std::printf("attention_forward worst rel error: bf16 %.3g, f32 %.3g\n", worst_bf16, worst_f32);
}

TEST(CudaAttentionForward, WindowsDocumentsAndKvCacheOffsets) {
  for (DType dt : {DType::bf16, DType::f32}) {
    check({2, 257, 257, 8, 2, 128, 50, {}}, dt);                    // sliding window
    check({1, 300, 300, 4, 1, 64, 0, {0, 50, 120, 121, 200}}, dt);  // packed documents
    check({1, 300, 300, 4, 2, 80, 40, {0, 77, 250}}, dt);           // both
    check({2, 33, 300, 8, 2, 128, 0, {}}, dt);                      // chunked prefill, Tq < Tk
    check({1, 65, 1000, 8, 8, 256, 100, {}}, dt);
    check({1, 1, 4097, 8, 2, 128, 0, {}}, dt);  // decode, split keys
    check({3, 3, 777, 8, 1, 64, 0, {}}, dt);
    check({2, 4, 500, 8, 2, 128, 0, {0, 300, 498}}, dt);
    check({1, 5, 500, 8, 2, 128, 20, {}}, dt);  // 5 queries: one flash tile
  }
}

TEST(CudaAttentionForward, SavingProbsThrows) {
  const Tensor q = Tensor::zeros({1, 4, 2, 64}, DType::bf16, Device::cuda);
  Tensor out = Tensor::zeros({1, 4, 2, 64}, DType::bf16, Device::cuda);
  Tensor probs = Tensor::zeros({1, 2, 4, 4}, DType::bf16, Device::cuda);
  try {
    ops::attention_forward(out, probs, q, q, q, 0.125, 0);
    FAIL() << "no error for probs on CUDA";
  } catch (const Error& e) {
    EXPECT_TRUE(
        test::contains(e.what(), "[attention_forward] saving probs is not supported on CUDA"))
        << e.what();
  }
}

}  // namespace
}  // namespace tune
