// Lab: flash-attention backward (training, Tq == Tk) and the forward that saves lse, bf16.
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 --expt-relaxed-constexpr \
//        -I include -I src dev/kernels/attention_backward.cu -o attention_backward_lab
// The engine kernels (src/backend/cuda/attention.cu, attention_backward.cu) are compiled in.
// Forward variants: f1 the flash forward without lse (inference), f2 with lse (training).
// Backward variants (each includes the D = rowsum(dO * O) pre-kernel):
//   1: the simple warp-per-row kernels (what f32 runs; the reference on the GPU);
//   2: what the engine runs: on Hopper at D 64 / 128 the wgmma tile policy (Wgmma: swizzled
//      tiles, the warpgroup's 64 rows per wgmma, S and dP issued together, dV and dK together),
//      otherwise 3;
//   3: the mma.sync tile policy (MmaSync), dK/dV and dQ blocks in one launch;
//   4: 3 as two launches, dK/dV then dQ.
// An argument N runs configuration N only (for ncu).
// History (H100 SXM, bf16, causal, T 4096, TFLOP/s as counted below), mma.sync:
//   config                  fwd  fwd+lse  fused  cols/2  1 Q buf  two launches
//   B 4  Hq 16 Hkv 16 D 128 203  202      182    130     187      169
//   B 1  Hq 32 Hkv 8  D 128 188  189      182    129     185      138
//   B 4  Hq 16 Hkv 16 D 64  184  184      147    147     149      146
//   B 2  Hq 16 Hkv 16 D 256 188  186      103     73     100      106
//   Writing lse costs nothing measurable; one launch gains most where few long dK/dV blocks
//   leave a tail (GQA); splitting the dK/dV columns loses to the S and dP it recomputes.
// wgmma (2026-11-23): 225 at B 4 H 16 D 128 (mma.sync 185), 192 at the 8B shape T 2048 (149),
// 169 at D 64 (147); S and dP in flight together: 229. ncu (B 4 H 16 T 4096 D 128): tensor pipe
// ~53% busy, 2 blocks of 4 warps per SM (255 registers: dK and dV accumulators), so the waits
// between the products and the elementwise work are not hidden. The 7 products (no atomics) are
// 1.4 x FlashAttention-2's 5: 229 counted is ~320 TFLOP/s of products. Tried and dropped: at
// the 8B shape (T 2048, GQA 32/8) key tile 0's dK/dV blocks are as long as an even share of the
// launch, so splitting a key tile's query heads over two blocks (f32 partials, a combining pass)
// looked like a shorter tail; it measured 168 vs 198 TFLOP/s (the partials' traffic and the
// extra pass cost more than the tail). At D 64 the kernel needs fewer registers: capped at 168
// (launch bounds, 3 blocks per SM) it runs 188 vs 153 at the 1B shape, 202 vs 162 at B 4 T 4096.
// Matrix descriptors built once per product and stepped by an add (wg::advance) instead of
// converted from a pointer at every k step: 234 at B 4 H 16 D 128, 231 at the 8B shape T 4096;
// D 64 unchanged (200, 186 at the 1B shape). The tile loads' address math hoisted (one column
// chunk per thread, a pointer add per row step): 276 at B 4 H 16 D 128, 272 at the 8B shape
// T 4096; D 64 237 (B 4 T 4096), 219 at the 1B shape; the shared-memory offset stepped too:
// 279.7, 276.2, 240, 223. The mma.sync kernels' loads the same way (load_padded_rows, shared with
// the forward): 185 -> 192 at B 4 H 16 D 128, 103 -> 106 at D 256.
// The dK/dV blocks' lse and D_i loads (global loads whose latency every query tile waited for)
// made cp.async copies into the query tile's buffer, a tile ahead (the pre-kernel writes lse in
// log2 units beside D_i): 277.4-279.7 -> 285.9-287.4 at B 4 H 16 D 128, 273.1-276.2 -> 280.3-282.4
// at the 8B shape T 4096 (old and new alternating in one call). Deciding `any` and `whole` from
// the tile's first and last queries instead of the rows' votes (one barrier fewer per tile)
// measured the same (285.7-286.6) and was dropped.
// Next: 5 products with dQ accumulated in a fixed order (a semaphore per query tile), and 2
// consumer warpgroups per block. Checked: the forward's lse and out against a CPU reference in
// double (one head pair, small size), and every backward variant against variant 1 on the GPU
// (small size) or variant 2 (large). Timed: median of 10 (events), TFLOP/s counted as
// flash-attention does: causal forward 4 B Hq T^2 D / 2, backward 2.5 times that.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <type_traits>
#include <vector>

#include "../../src/backend/cuda/attention.cu"
#include "../../src/backend/cuda/attention_backward.cu"
#include "../../src/backend/cuda/attention_decode.cu"

using namespace tune::cuda;
using bf16 = __nv_bfloat16;

#define CK(x)                                                                        \
  do {                                                                               \
    cudaError_t e_ = (x);                                                            \
    if (e_ != cudaSuccess) {                                                         \
      std::printf("CUDA %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

// The engine's backward with the dK/dV column split (NO_128: columns per block at D 128) and
// query-tile buffers (QST) chosen here.
template <int NO_128, int QST, bool TWO_LAUNCHES = false>
void backward_variant(int variant, bf16* dq, bf16* dk, bf16* dv, const bf16* q, const bf16* k,
                      const bf16* v, const bf16* dout, const bf16* out, const float* lse,
                      float* delta, const DenseShape& s, float scale) {
  const int64_t rows = s.batch * s.q_seq * s.q_heads;
  const BackwardArgs p{nullptr,
                       lse,
                       delta,
                       delta + rows,
                       (int)s.q_seq,
                       (int)s.q_heads,
                       (int)s.kv_heads,
                       (int)s.head_dim,
                       scale,
                       scale * kLog2eBwd,
                       0};
  attention_row_terms<bf16><<<rows_grid(rows), kThreads, 0, cudaStreamPerThread>>>(
      delta, delta + rows, lse, dout, out, rows, (int)s.q_seq, (int)s.q_heads, (int)s.head_dim);
  auto run = [&](auto dp_tag, auto no_tag, auto bn_tag) {
    constexpr int DP = decltype(dp_tag)::value, NO = decltype(no_tag)::value;
    constexpr int BN = decltype(bn_tag)::value;
    if constexpr (TWO_LAUNCHES) {
      flash_backward_two_launches<bf16, DP, NO, BN, QST>(dq, dk, dv, q, k, v, dout, s, p);
    } else {
      flash_backward_at<bf16, DP, NO, BN, QST>(dq, dk, dv, q, k, v, dout, s, p);
    }
  };
  using std::integral_constant;
  if (variant == 1) {
    rows_backward<bf16>(dq, dk, dv, q, k, v, dout, s, p);
  } else if (variant == 2) {
    flash_backward<bf16>(dq, dk, dv, q, k, v, dout, s, p);
  } else if (s.head_dim == 64) {
    run(integral_constant<int, 64>{}, integral_constant<int, 64>{}, integral_constant<int, 64>{});
  } else if (s.head_dim == 128) {
    run(integral_constant<int, 128>{}, integral_constant<int, NO_128>{},
        integral_constant<int, 64>{});
  } else {
    run(integral_constant<int, 256>{}, integral_constant<int, (NO_128 < 128 ? NO_128 : 128)>{},
        integral_constant<int, 32>{});
  }
}

double rel_err(const std::vector<bf16>& got, const std::vector<bf16>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double a = __bfloat162float(got[i]), b = __bfloat162float(ref[i]);
    num += (a - b) * (a - b);
    den += b * b;
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

template <typename F>
double median_ms(F&& call, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int it = 0; it < reps + 2; ++it) {
    CK(cudaEventRecord(a, cudaStreamPerThread));
    call();
    CK(cudaEventRecord(b, cudaStreamPerThread));
    CK(cudaEventSynchronize(b));
    float t;
    CK(cudaEventElapsedTime(&t, a, b));
    if (it >= 2) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// With an argument N, only configuration N (0-based) runs: a profiler then sees one shape.
int main(int argc, char** argv) {
  const int only = argc > 1 ? std::atoi(argv[1]) : -1;
  const DenseShape configs[] = {
      {1, 512, 512, 8, 2, 128},    {1, 512, 512, 4, 1, 64},      {1, 300, 300, 4, 2, 256},
      {1, 333, 333, 6, 3, 128},    {2, 200, 200, 4, 4, 64},      {1, 2048, 2048, 32, 8, 128},
      {4, 2048, 2048, 32, 8, 64},  {4, 4096, 4096, 16, 16, 128}, {1, 4096, 4096, 32, 8, 128},
      {4, 4096, 4096, 16, 16, 64}, {2, 4096, 4096, 16, 16, 256},
  };
  std::printf("%-38s %8s %10s %10s %10s\n", "config", "variant", "ms", "TFLOP/s", "rel_err");
  for (const DenseShape& s : configs) {
    if (only >= 0 && &s - configs != only) continue;
    const int64_t nq = s.batch * s.q_seq * s.q_heads * s.head_dim;
    const int64_t nk = s.batch * s.kv_seq * s.kv_heads * s.head_dim;
    const int64_t nl = s.batch * s.q_heads * s.q_seq;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    std::vector<bf16> hq(nq), hk(nk), hv(nk), hdo(nq);
    for (auto* vec : {&hq, &hk, &hv, &hdo}) {
      for (auto& x : *vec) x = __float2bfloat16(nd(rng));
    }
    bf16 *q, *k, *v, *dout, *out, *dq, *dk, *dv;
    float *lse, *delta;
    CK(cudaMalloc(&q, nq * 2));
    CK(cudaMalloc(&dout, nq * 2));
    CK(cudaMalloc(&out, nq * 2));
    CK(cudaMalloc(&dq, nq * 2));
    CK(cudaMalloc(&k, nk * 2));
    CK(cudaMalloc(&v, nk * 2));
    CK(cudaMalloc(&dk, nk * 2));
    CK(cudaMalloc(&dv, nk * 2));
    CK(cudaMalloc(&lse, nl * 4));
    CK(cudaMalloc(&delta, 2 * nl * 4));  // D_i, then lse2
    CK(cudaMemcpy(q, hq.data(), nq * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(k, hk.data(), nk * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(v, hv.data(), nk * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dout, hdo.data(), nq * 2, cudaMemcpyHostToDevice));
    const float scale = 1.f / std::sqrt(static_cast<float>(s.head_dim));
    const double fwd_flops = 4.0 * s.batch * s.q_heads * s.q_seq * s.kv_seq * s.head_dim / 2;
    const bool small = s.q_seq <= 512;
    char name[80];
    std::snprintf(name, sizeof name, "B=%ld T=%ld Hq=%ld Hkv=%ld D=%ld", (long)s.batch,
                  (long)s.q_seq, (long)s.q_heads, (long)s.kv_heads, (long)s.head_dim);

    // Forward: f1 without lse, f2 with; f2's lse checked against the CPU on heads 0 and Hq - 1.
    for (int f = 1; f <= 2; ++f) {
      auto call = [&] {
        if (f == 1) {
          attention_forward(tune::DType::bf16, out, q, k, v, nullptr, s, scale, 0);
        } else {
          attention_forward_lse(tune::DType::bf16, out, lse, q, k, v, nullptr, s, scale, 0);
        }
      };
      call();
      CK(cudaDeviceSynchronize());
      double err = 0;
      if (f == 2 && small) {
        std::vector<float> got(nl);
        CK(cudaMemcpy(got.data(), lse, nl * 4, cudaMemcpyDeviceToHost));
        const int64_t d = s.head_dim, group = s.q_heads / s.kv_heads;
        for (int64_t h : {int64_t{0}, s.q_heads - 1}) {
          for (int64_t i = 0; i < s.q_seq; ++i) {
            double mx = -1e300, sum = 0;
            std::vector<double> p(i + 1);
            for (int64_t j = 0; j <= i; ++j) {
              double dot = 0;
              for (int64_t e = 0; e < d; ++e)
                dot += (double)__bfloat162float(hq[(i * s.q_heads + h) * d + e]) *
                       __bfloat162float(hk[(j * s.kv_heads + h / group) * d + e]);
              mx = std::max(mx, p[j] = dot * scale);
            }
            for (double x : p) sum += std::exp(x - mx);
            err = std::max(err, std::abs(got[h * s.q_seq + i] - (mx + std::log(sum))));
          }
        }
      }
      const double ms = median_ms(call, 10);
      std::printf("%-38s %8s %10.3f %10.1f %10.2e%s\n", name, f == 1 ? "fwd" : "fwd+lse", ms,
                  fwd_flops / (ms * 1e-3) / 1e12, err, err < 1e-3 ? "" : "  FAIL (lse abs)");
    }

    // Backward variants; the reference is variant 1 (small) or 2 (large).
    std::vector<bf16> ref[3];
    for (int var = small ? 1 : 2; var <= 4; ++var) {
      auto call = [&] {
        if (var == 4) {
          backward_variant<128, 2, true>(var, dq, dk, dv, q, k, v, dout, out, lse, delta, s, scale);
        } else {
          backward_variant<128, 2>(var, dq, dk, dv, q, k, v, dout, out, lse, delta, s, scale);
        }
      };
      CK(cudaMemset(dq, 0xff, nq * 2));
      CK(cudaMemset(dk, 0xff, nk * 2));
      CK(cudaMemset(dv, 0xff, nk * 2));
      call();
      CK(cudaDeviceSynchronize());
      std::vector<bf16> got[3] = {std::vector<bf16>(nq), std::vector<bf16>(nk),
                                  std::vector<bf16>(nk)};
      CK(cudaMemcpy(got[0].data(), dq, nq * 2, cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(got[1].data(), dk, nk * 2, cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(got[2].data(), dv, nk * 2, cudaMemcpyDeviceToHost));
      double err = 0;
      if (ref[0].empty()) {
        for (int i = 0; i < 3; ++i) ref[i] = got[i];
      } else {
        for (int i = 0; i < 3; ++i) err = std::max(err, rel_err(got[i], ref[i]));
      }
      const double ms = median_ms(call, var == 1 ? 3 : 10);
      std::printf("%-38s %8s %10.3f %10.1f %10.2e%s\n", name,
                  var == 1 ? "bwd1" : (var == 2 ? "bwd2" : (var == 3 ? "bwd3" : "bwd4")), ms,
                  2.5 * fwd_flops / (ms * 1e-3) / 1e12, err, err < 1e-2 ? "" : "  FAIL");
    }
    for (void* ptr : {(void*)q, (void*)k, (void*)v, (void*)dout, (void*)out, (void*)dq, (void*)dk,
                      (void*)dv, (void*)lse, (void*)delta})
      CK(cudaFree(ptr));
  }
  return 0;
}
