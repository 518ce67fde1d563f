// The paged KV cache on the GPU. kv_cache_write: every row lands in its slot, padding rows
// (slot -1) and all other slots keep their sentinels, bit-exact against the CPU op.
// attention_decode: bf16/f16/f32 pages reached through shuffled block tables, against the CPU
// attention_forward in f64 on the same keys gathered into contiguous rows: few long sequences
// (split keys + merge) and many short ones, GQA 4:1, MQA (8 and 32 heads on one kv head), MHA,
// windows, head dims 64/80/128/256, pages of 16 and 7 positions; out inside a sentinel-filled
// buffer. bf16 within 2e-2 relative, f16 1e-2, f32 1e-5. The explicit workspace gives the same
// bits as the pooled one, and a CUDA-graph capture of write + decode replays to the same result.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using test::fetch;
using test::kSentinel;
using test::place;
using test::Placed;
using test::to_device;

Tensor to_host(const Tensor& device) {
  Tensor h = Tensor::empty(device.shape(), device.dtype());
  h.copy_from(device);
  return h;
}

Tensor i32_tensor(const Shape& shape, const std::vector<int32_t>& values) {
  Tensor t = Tensor::empty(shape, DType::i32);
  std::memcpy(t.raw(), values.data(), values.size() * sizeof(int32_t));
  return t;
}

TEST(CudaKvCacheWrite, RowsLandInTheirSlotsBitExact) {
  for (DType dt : {DType::bf16, DType::f32}) {
    for (DType slot_type : {DType::i32, DType::i64}) {
      for (int64_t n : {1, 7, 33, 257, 4097}) {
        SCOPED_TRACE(str(dtype_name(dt), " slots ", dtype_name(slot_type), " n=", n));
        const int64_t page = 16, pages = (n + 40) / page + 2, heads = 2, dim = 80;
        const Tensor k = test::randn({n, heads, dim}, DType::f32, n).to(dt);
        const Tensor v = test::randn({n, heads, dim}, DType::f32, n + 1).to(dt);
        // Distinct slots from a shuffled range; every 5th row is padding (-1).
        std::vector<int64_t> order(static_cast<size_t>(pages * page));
        std::iota(order.begin(), order.end(), 0);
        std::reverse(order.begin(), order.end());
        std::rotate(order.begin(), order.begin() + 11, order.end());
        std::vector<int64_t> sl(static_cast<size_t>(n));
        for (int64_t r = 0; r < n; ++r) sl[r] = r % 5 == 3 ? -1 : order[static_cast<size_t>(r)];
        Tensor slots = Tensor::from_i64({n}, sl);
        if (slot_type == DType::i32) {
          std::vector<int32_t> s32(sl.begin(), sl.end());
          slots = i32_tensor({n}, s32);
        }
        Tensor kp_ref = test::full({pages, page, heads, dim}, DType::f32, kSentinel).to(dt);
        Tensor vp_ref = kp_ref.clone();
        ops::kv_cache_write(kp_ref, vp_ref, k, v, slots);
        Tensor kp = to_device(test::full({pages, page, heads, dim}, DType::f32, kSentinel), dt);
        Tensor vp = to_device(test::full({pages, page, heads, dim}, DType::f32, kSentinel), dt);
        Tensor slots_dev = Tensor::empty({n}, slot_type, Device::cuda);
        slots_dev.copy_from(slots);
        ops::kv_cache_write(kp, vp, to_device(k, dt), to_device(v, dt), slots_dev);
        EXPECT_EQ(test::max_abs_diff(to_host(kp).to(DType::f64), kp_ref.to(DType::f64)), 0.0);
        EXPECT_EQ(test::max_abs_diff(to_host(vp).to(DType::f64), vp_ref.to(DType::f64)), 0.0);
      }
    }
  }
}

struct DecodeCase {
  int64_t q_heads, kv_heads, dim, page, window;
  std::vector<int32_t> lens;
};

// The paged cache of one case, built on the host in f64 (values rounded to dt).
struct PagedCache {
  int64_t max_pages = 0, total_pages = 0;
  std::vector<int32_t> table;
  Tensor kp, vp, q;  // f64, rounded to dt
};

PagedCache build(const DecodeCase& c, DType dt, uint64_t seed) {
  PagedCache p;
  const int64_t n = static_cast<int64_t>(c.lens.size());
  const int64_t max_len = *std::max_element(c.lens.begin(), c.lens.end());
  p.max_pages = (max_len + c.page - 1) / c.page + 1;
  p.total_pages = n * p.max_pages + 3;
  std::vector<int32_t> order(static_cast<size_t>(p.total_pages));
  std::iota(order.begin(), order.end(), 0);
  std::reverse(order.begin(), order.end());
  std::rotate(order.begin(), order.begin() + 2, order.end());
  p.table.assign(static_cast<size_t>(n * p.max_pages), 0);
  size_t next = 0;
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t i = 0; i < (c.lens[s] + c.page - 1) / c.page; ++i) {
      p.table[static_cast<size_t>(s * p.max_pages + i)] = order[next++];
    }
  }
  const Shape ps{p.total_pages, c.page, c.kv_heads, c.dim};
  p.kp = test::randn(ps, DType::f32, seed).to(dt).to(DType::f64);
  p.vp = test::randn(ps, DType::f32, seed + 1).to(dt).to(DType::f64);
  p.q = test::randn({n, c.q_heads, c.dim}, DType::f32, seed + 2).to(dt).to(DType::f64);
  return p;
}

// attention_forward (CPU, f64) of each sequence's query on its keys gathered from the pages.
Tensor reference(const DecodeCase& c, const PagedCache& p, double scale) {
  const int64_t n = static_cast<int64_t>(c.lens.size()), row = c.kv_heads * c.dim;
  Tensor out = Tensor::empty({n, c.q_heads, c.dim}, DType::f64);
  for (int64_t s = 0; s < n; ++s) {
    const int64_t len = c.lens[static_cast<size_t>(s)];
    Tensor k = Tensor::empty({1, len, c.kv_heads, c.dim}, DType::f64), v = k.clone();
    for (int64_t t = 0; t < len; ++t) {
      const int64_t slot =
          p.table[static_cast<size_t>(s * p.max_pages + t / c.page)] * c.page + t % c.page;
      std::memcpy(k.data<double>() + t * row, p.kp.data<double>() + slot * row,
                  static_cast<size_t>(row) * sizeof(double));
      std::memcpy(v.data<double>() + t * row, p.vp.data<double>() + slot * row,
                  static_cast<size_t>(row) * sizeof(double));
    }
    Tensor o = out.narrow(s, 1).view({1, 1, c.q_heads, c.dim}), no_probs;
    ops::attention_forward(o, no_probs, p.q.narrow(s, 1).view({1, 1, c.q_heads, c.dim}), k, v,
                           scale, c.window);
  }
  return out;
}

// The largest relative errors seen, printed by the tests for the record.
double g_worst_bf16 = 0, g_worst_f16 = 0, g_worst_f32 = 0;

void print_worst(const char* test) {
  std::printf("%s: worst relative error bf16 %.3g, f16 %.3g, f32 %.3g\n", test, g_worst_bf16,
              g_worst_f16, g_worst_f32);
}

void check_decode(const DecodeCase& c, DType dt) {
  const int64_t n = static_cast<int64_t>(c.lens.size());
  SCOPED_TRACE(str(dtype_name(dt), " N=", n, " Hq=", c.q_heads, " Hkv=", c.kv_heads, " D=", c.dim,
                   " S=", c.page, " window=", c.window, " first len=", c.lens[0]));
  const PagedCache p = build(c, dt, static_cast<uint64_t>(n * 977 + c.dim + c.q_heads));
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.dim));
  const Tensor ref = reference(c, p, scale);

  const Tensor kp = to_device(p.kp, dt), vp = to_device(p.vp, dt), q = to_device(p.q, dt);
  const Tensor table = to_device(i32_tensor({n, p.max_pages}, p.table), DType::i32);
  const Tensor lens = to_device(i32_tensor({n}, c.lens), DType::i32);
  Placed out = place({n, c.q_heads, c.dim}, dt, 64);
  ops::attention_decode(out.view, q, kp, vp, table, lens, scale, c.window);
  const double tol = dt == DType::f32 ? 1e-5 : (dt == DType::f16 ? 1e-2 : 2e-2);
  const Tensor got = fetch(out, {n, c.q_heads, c.dim}, "out");
  const double err = test::rel_error(got, ref);
  EXPECT_LE(err, tol);
  double& worst = dt == DType::f32 ? g_worst_f32 : (dt == DType::f16 ? g_worst_f16 : g_worst_bf16);
  worst = std::max(worst, err);

  // The same call with an explicit workspace: the same bits.
  const int64_t ws_size = ops::attention_decode_workspace_size(q, kp, table, c.window);
  if (ws_size > 0) {
    Tensor ws = Tensor::empty({ws_size}, DType::f32, Device::cuda);
    Tensor out2 = Tensor::empty({n, c.q_heads, c.dim}, dt, Device::cuda);
    ops::attention_decode(out2, q, kp, vp, table, lens, scale, c.window, ws);
    EXPECT_EQ(test::max_abs_diff(to_host(out2).to(DType::f64), got), 0.0);
  }
}

TEST(CudaAttentionDecode, ManyShortSequences) {
  std::vector<int32_t> lens;
  for (int i = 0; i < 64; ++i) lens.push_back(1 + (i * 37) % 300);
  const std::vector<int32_t> few{1, 7, 33, 17, 257, 2, 100};
  for (DType dt : {DType::bf16, DType::f16, DType::f32}) {
    for (int64_t d : {64, 80, 128, 256}) {
      check_decode({8, 2, d, 16, 0, lens}, dt);  // GQA 4:1
      check_decode({8, 1, d, 16, 0, few}, dt);   // MQA
    }
    check_decode({4, 4, 128, 7, 0, few}, dt);     // MHA, pages of 7
    check_decode({32, 1, 128, 16, 0, few}, dt);   // MQA, 32 query heads
    check_decode({8, 2, 128, 16, 50, lens}, dt);  // window
    check_decode({12, 4, 64, 16, 0, {33}}, dt);   // one sequence, 3 heads per kv head
  }
  print_worst("ManyShortSequences (cumulative)");
}

TEST(CudaAttentionDecode, FewLongSequencesSplitTheKeys) {
  for (DType dt : {DType::bf16, DType::f32}) {
    check_decode({8, 2, 128, 16, 0, {4097}}, dt);
    check_decode({8, 1, 256, 16, 0, {8191, 33}}, dt);
    check_decode({8, 2, 80, 16, 1000, {4097, 5000, 1}}, dt);
    check_decode({32, 8, 128, 16, 0, {3000, 4097, 7, 2500}}, dt);
  }
  print_worst("FewLongSequencesSplitTheKeys (cumulative)");
}

TEST(CudaAttentionDecode, GraphCaptureOfWriteAndDecodeReplays) {
  const DecodeCase c{8, 2, 128, 16, 0, {4097, 33, 700}};
  const DType dt = DType::bf16;
  const int64_t n = 3;
  const PagedCache p = build(c, dt, 5);
  const double scale = 1.0 / std::sqrt(128.0);
  Tensor kp = to_device(p.kp, dt), vp = to_device(p.vp, dt);
  const Tensor q = to_device(p.q, dt);
  const Tensor table = to_device(i32_tensor({n, p.max_pages}, p.table), DType::i32);
  const Tensor lens = to_device(i32_tensor({n}, c.lens), DType::i32);
  // The new rows (the last position of each sequence) are written inside the graph.
  const Tensor knew = to_device(test::randn({n, 2, 128}, DType::f32, 9), dt);
  const Tensor vnew = to_device(test::randn({n, 2, 128}, DType::f32, 10), dt);
  std::vector<int64_t> sl;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t t = c.lens[s] - 1;
    sl.push_back(p.table[static_cast<size_t>(s * p.max_pages + t / 16)] * 16 + t % 16);
  }
  Tensor slots = Tensor::empty({n}, DType::i64, Device::cuda);
  slots.copy_from(Tensor::from_i64({n}, sl));
  const int64_t ws_size = ops::attention_decode_workspace_size(q, kp, table, 0);
  ASSERT_GT(ws_size, 0) << "the 4097-key sequence should be split";
  Tensor ws = Tensor::empty({ws_size}, DType::f32, Device::cuda);
  Tensor out = Tensor::empty({n, 8, 128}, dt, Device::cuda);

  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeThreadLocal),
            cudaSuccess);
  ops::kv_cache_write(kp, vp, knew, vnew, slots);
  ops::attention_decode(out, q, kp, vp, table, lens, scale, 0, ws);
  ASSERT_EQ(cudaStreamEndCapture(cudaStreamPerThread, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, cudaStreamPerThread), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(cudaStreamPerThread), cudaSuccess);
  const Tensor from_graph = to_host(out).to(DType::f64);

  // Eagerly, on the same (already written) cache: the same bits.
  Tensor eager = Tensor::empty({n, 8, 128}, dt, Device::cuda);
  ops::attention_decode(eager, q, kp, vp, table, lens, scale, 0, ws);
  EXPECT_EQ(test::max_abs_diff(to_host(eager).to(DType::f64), from_graph), 0.0);
  // And the written rows are in the cache: compare with the CPU reference on the updated pages.
  PagedCache updated = p;
  updated.kp = to_host(kp).to(DType::f64);
  updated.vp = to_host(vp).to(DType::f64);
  EXPECT_LE(test::rel_error(from_graph, reference(c, updated, scale)), 2e-2);
  const Tensor knew_h = to_host(knew).to(DType::f64);
  EXPECT_EQ(updated.kp.item(sl[1] * 256 + 5), knew_h.item(256 + 5));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

TEST(CudaAttentionDecode, RejectsMisalignedAndOddHeadDims) {
  const Tensor kp = Tensor::zeros({2, 4, 1, 12}, DType::bf16, Device::cuda);
  const Tensor vp = Tensor::zeros({2, 4, 1, 12}, DType::bf16, Device::cuda);
  const Tensor q = Tensor::zeros({1, 1, 12}, DType::bf16, Device::cuda);
  Tensor out = Tensor::zeros({1, 1, 12}, DType::bf16, Device::cuda);
  const Tensor table = to_device(i32_tensor({1, 2}, {0, 1}), DType::i32);
  const Tensor lens = to_device(i32_tensor({1}, {5}), DType::i32);
  try {
    ops::attention_decode(out, q, kp, vp, table, lens, 1.0, 0);
    FAIL() << "no error for head dim 12";
  } catch (const Error& e) {
    EXPECT_TRUE(test::contains(e.what(), "[attention_decode] head dim 12 is not supported on CUDA"))
        << e.what();
  }
}

}  // namespace
}  // namespace tune
