// ops::attention_forward on the GPU (no saved probs) against the CPU op in f64 on the same
// rounded inputs: the tensor-core flash kernel (bf16, f16 with more than 4 queries) and the
// split-key kernel (f32, and 1-4 queries), causal with Tq = Tk and bottom-right aligned Tq < Tk,
// GQA 4:1, MQA, MHA, sliding windows, packed documents (key_start), head dims 64/80/96/128/256
// and 72 (padded inside the kernel), sequence lengths that are not multiples of the tiles; out
// inside a sentinel-filled buffer. bf16 within 2e-2 relative, f16 1e-2, f32 1e-5. Saving probs
// on CUDA throws. Training (attention_forward_lse, attention_backward_lse): out, lse, dq, dk, dv
// against the CPU in f64 at Tq = Tk in {1, 7, 33, 257, 1000}, head dims 8 to 256, GQA, MQA,
// windows and packed documents; bf16 within 2e-2, f32 1e-4; deterministic to the bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
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

// Training attention (attention_forward_lse / attention_backward_lse, Tq == Tk) against the CPU
// op in f64 on the same rounded inputs: out, lse and dq, dk, dv, each inside sentinels; lse in f32.
// The device's backward reads the device's own out and lse, as training does.
struct GradErrors {
  double out = 0, lse = 0, dq = 0, dk = 0, dv = 0;
  double worst() const { return std::max({out, lse, dq, dk, dv}); }
};

GradErrors check_training(const Case& c, DType dt) {
  SCOPED_TRACE(str("lse ", dtype_name(dt), " B=", c.batch, " T=", c.q_seq, " Hq=", c.q_heads,
                   " Hkv=", c.kv_heads, " D=", c.dim, " window=", c.window,
                   " docs=", c.doc_starts.size()));
  const uint64_t seed = static_cast<uint64_t>(c.q_seq * 31 + c.dim * 3 + c.q_heads + c.window);
  const Shape qs{c.batch, c.q_seq, c.q_heads, c.dim}, ks{c.batch, c.kv_seq, c.kv_heads, c.dim};
  const Shape ls{c.batch, c.q_heads, c.q_seq};
  const Tensor q = test::rounded(qs, dt, seed), k = test::rounded(ks, dt, seed + 1);
  const Tensor v = test::rounded(ks, dt, seed + 2), dout = test::rounded(qs, dt, seed + 3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.dim));
  const Tensor starts = c.doc_starts.empty() ? Tensor() : key_start_of(c);
  Tensor out_ref = Tensor::empty(qs, DType::f64), lse_ref = Tensor::empty(ls, DType::f64);
  ops::attention_forward_lse(out_ref, lse_ref, q, k, v, scale, c.window, starts);
  Tensor dq_ref = Tensor::empty(qs, DType::f64), dk_ref = Tensor::empty(ks, DType::f64);
  Tensor dv_ref = Tensor::empty(ks, DType::f64);
  ops::attention_backward_lse(dq_ref, dk_ref, dv_ref, dout, q, k, v, out_ref, lse_ref, scale,
                              c.window, starts);

  Tensor starts_dev;
  if (starts.defined()) {
    starts_dev = Tensor::empty(starts.shape(), DType::i64, Device::cuda);
    starts_dev.copy_from(starts);
  }
  const Tensor q_dev = to_device(q, dt), k_dev = to_device(k, dt), v_dev = to_device(v, dt);
  const Tensor dout_dev = to_device(dout, dt);
  Placed out = place(qs, dt, 64), lse = place(ls, DType::f32, 64);
  ops::attention_forward_lse(out.view, lse.view, q_dev, k_dev, v_dev, scale, c.window, starts_dev);
  Placed dq = place(qs, dt, 64), dk = place(ks, dt, 64), dv = place(ks, dt, 64);
  ops::attention_backward_lse(dq.view, dk.view, dv.view, dout_dev, q_dev, k_dev, v_dev, out.view,
                              lse.view, scale, c.window, starts_dev);
  // A query that sees one key (T 1, window 1) has dq = dk = 0 exactly (dS = dP - D = 0): the
  // device's rounding noise is then measured against a floor of 1e-2 per element rather than
  // against a zero reference norm.
  auto grad_error = [](const Tensor& got, const Tensor& ref) {
    const double floor = 1e-2 * std::sqrt(static_cast<double>(ref.numel()));
    double diff = 0, norm = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      diff += (got.item(i) - ref.item(i)) * (got.item(i) - ref.item(i));
      norm += ref.item(i) * ref.item(i);
    }
    return std::sqrt(diff) / std::max(std::sqrt(norm), floor);
  };
  GradErrors e;
  e.out = test::rel_error(fetch(out, qs, "out"), out_ref);
  e.lse = test::rel_error(fetch(lse, ls, "lse"), lse_ref);
  e.dq = grad_error(fetch(dq, qs, "dq"), dq_ref);
  e.dk = grad_error(fetch(dk, ks, "dk"), dk_ref);
  e.dv = grad_error(fetch(dv, ks, "dv"), dv_ref);
  const double tol = dt == DType::f32 ? 1e-4 : (dt == DType::f16 ? 1e-2 : 2e-2);
  EXPECT_LE(e.out, tol);
  EXPECT_LE(e.lse, dt == DType::f32 ? 1e-5 : 1e-3);
  EXPECT_LE(e.dq, tol);
  EXPECT_LE(e.dk, tol);
  EXPECT_LE(e.dv, tol);
  return e;
}

Case training(int64_t batch, int64_t t, int64_t q_heads, int64_t kv_heads, int64_t dim,
              int64_t window, std::vector<int64_t> docs = {}) {
  return {batch, t, t, q_heads, kv_heads, dim, window, std::move(docs)};
}

TEST(CudaAttentionTraining, ForwardLseAndBackwardAtAwkwardSizes) {
  for (DType dt : {DType::bf16, DType::f32}) {
    double worst = 0;
    for (int64_t t : {1, 7, 33, 257, 1000}) {
      for (int64_t d : {64, 80, 128, 256}) {
        worst = std::max(worst, check_training(training(2, t, 8, 2, d, 0), dt).worst());  // GQA
      }
      worst = std::max(worst, check_training(training(1, t, 4, 1, 96, 0), dt).worst());  // MQA
      worst = std::max(worst, check_training(training(1, t, 3, 3, 72, 0), dt).worst());  // MHA
    }
    std::printf("attention training (lse) worst rel error %s: %.3g\n", dtype_name(dt), worst);
  }
  check_training(training(1, 300, 4, 2, 64, 0), DType::f16);
  check_training(training(1, 33, 2, 1, 8, 0), DType::f32);  // the smallest head dim
  check_training(training(1, 70, 2, 1, 8, 0), DType::bf16);
}

TEST(CudaAttentionTraining, WindowsAndPackedDocuments) {
  for (DType dt : {DType::bf16, DType::f32}) {
    check_training(training(2, 257, 8, 2, 128, 50), dt);                        // sliding window
    check_training(training(1, 300, 8, 2, 64, 0, {0, 50, 120, 121, 200}), dt);  // packed
    check_training(training(1, 300, 4, 2, 80, 40, {0, 77, 250}), dt);           // both
    check_training(training(1, 1000, 8, 1, 256, 100, {0, 500, 501, 999}), dt);
    check_training(training(2, 130, 4, 4, 128, 1), dt);  // each query sees only itself
  }
}

// The same inputs give the same gradients to the bit (no atomics), and the CUDA backward refuses
// Tq < Tk with an error that says what to do.
TEST(CudaAttentionTraining, DeterministicAndRefusesKvOffsets) {
  const Shape qs{2, 517, 8, 128}, ks{2, 517, 2, 128}, ls{2, 8, 517};
  const Tensor q = to_device(test::rounded(qs, DType::bf16, 1), DType::bf16);
  const Tensor k = to_device(test::rounded(ks, DType::bf16, 2), DType::bf16);
  const Tensor v = to_device(test::rounded(ks, DType::bf16, 3), DType::bf16);
  const Tensor dout = to_device(test::rounded(qs, DType::bf16, 4), DType::bf16);
  Tensor out = Tensor::empty(qs, DType::bf16, Device::cuda);
  Tensor lse = Tensor::empty(ls, DType::f32, Device::cuda);
  ops::attention_forward_lse(out, lse, q, k, v, 0.088, 0);
  Tensor grads[2][3];
  for (auto& g : grads) {
    g[0] = Tensor::empty(qs, DType::bf16, Device::cuda);
    g[1] = Tensor::empty(ks, DType::bf16, Device::cuda);
    g[2] = Tensor::empty(ks, DType::bf16, Device::cuda);
    ops::attention_backward_lse(g[0], g[1], g[2], dout, q, k, v, out, lse, 0.088, 0);
  }
  for (int i = 0; i < 3; ++i) {
    const Tensor a = grads[0][i].to(Device::cpu), b = grads[1][i].to(Device::cpu);
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << i;
  }
  const Tensor q_short = Tensor::zeros({1, 4, 2, 64}, DType::bf16, Device::cuda);
  const Tensor k_long = Tensor::zeros({1, 8, 2, 64}, DType::bf16, Device::cuda);
  Tensor dq = Tensor::zeros({1, 4, 2, 64}, DType::bf16, Device::cuda);
  Tensor dk = Tensor::zeros({1, 8, 2, 64}, DType::bf16, Device::cuda);
  Tensor dv = Tensor::zeros({1, 8, 2, 64}, DType::bf16, Device::cuda);
  Tensor lse_short = Tensor::zeros({1, 2, 4}, DType::f32, Device::cuda);
  try {
    ops::attention_backward_lse(dq, dk, dv, q_short, q_short, k_long, k_long, q_short, lse_short,
                                0.125, 0);
    FAIL() << "no error for Tq < Tk";
  } catch (const Error& e) {
    EXPECT_TRUE(test::contains(e.what(), "[attention_backward_lse]")) << e.what();
    EXPECT_TRUE(test::contains(e.what(), "needs Tq == Tk")) << e.what();
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
