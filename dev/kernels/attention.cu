// Lab: causal attention forward (prefill), bf16.
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 --expt-relaxed-constexpr \
//        -I include -I src dev/kernels/attention.cu -o attention_lab
// The engine kernels (src/backend/cuda/attention.cu and attention_decode.cu) are compiled in:
//   1: the split-key SIMT kernel run over every query (what f32 uses; no tensor cores);
//   2: what the engine runs: on Hopper at D 64 / 128 the wgmma kernels (D 128: the pipelined
//      one, 128-key tiles, 2 warpgroups; D 64: 64-key tiles, 2 warpgroups), otherwise 3;
//   3: the mma.sync m16n8k16 flash kernel, two K/V buffers (the engine off Hopper, D 80/96/256);
//   4-6: flash_forward_wgmma with (keys per tile, warpgroups) = (64, 1), (64, 2), (128, 1);
//   7-9: flash_forward_wgmma_pipelined with (128, 2), (64, 2), (64, 1).
// An argument N runs configuration N only (for ncu).
// History (H100, bf16, TFLOP/s at T 4096 Hq 32 Hkv 8 D 128): mma.sync, one buffer, mask on every
// tile 164; mask only on edge tiles 193; a second K/V buffer within noise (it costs a block per
// SM). wgmma (2026-11-23): 1 warpgroup 64-key tiles 232, 2 warpgroups 249, 128-key tiles with 2
// warpgroups 260-273 (1 warpgroup with 128-key tiles: 174, one block per SM); pipelined (S of
// the next tile and P V of this one in flight together, the softmax between them) 281; at
// T 8192 311, at B 4 H 16 288. At D 64 the pipelined kernel loses (220 vs 254 for (64, 2)).
// Next: warp specialization (a producer warp with TMA, 2 consumer warpgroups taking turns),
// FlashAttention-3's remaining steps.
// Checked against a CPU reference in double on a slice of heads at the small size, and against
// each other at every size; timed (median of 20, events) in TFLOP/s of the causal half
// (4 B Hq Tq Tk D / 2 flops).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "../../src/backend/cuda/attention.cu"
#include "../../src/backend/cuda/attention_backward.cu"
#include "../../src/backend/cuda/attention_decode.cu"

using namespace tune::cuda;

#define CK(x)                                                                        \
  do {                                                                               \
    cudaError_t e_ = (x);                                                            \
    if (e_ != cudaSuccess) {                                                         \
      std::printf("CUDA %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

// Variants 3-6: the mma.sync flash kernel (what the engine runs off Hopper and at other head dims)
// and wgmma tilings other than the engine's.
bool flash_variant(int v, void* out, const void* q, const void* k, const void* vv,
                   const DenseShape& s, float scale) {
  const FlashArgs p{nullptr,         s.q_seq,         s.kv_seq,         (int)s.q_heads,
                    (int)s.kv_heads, (int)s.head_dim, scale * kLog2eTc, 0};
  using T = __nv_bfloat16;
  auto wgmma = [&](auto bn, auto groups) {
    constexpr int BN = decltype(bn)::value, G = decltype(groups)::value;
    if (s.head_dim == 64) {
      launch_flash_wgmma<T, 64, BN, G>(out, q, k, vv, s, p);
    } else if (s.head_dim == 128) {
      launch_flash_wgmma<T, 128, BN, G>(out, q, k, vv, s, p);
    } else {
      return false;
    }
    return true;
  };
  auto wgmma_pipelined = [&](auto bn, auto groups) {
    constexpr int BN = decltype(bn)::value, G = decltype(groups)::value;
    if (s.head_dim == 64) {
      launch_flash_wgmma<T, 64, BN, G, true>(out, q, k, vv, s, p);
    } else if (s.head_dim == 128) {
      launch_flash_wgmma<T, 128, BN, G, true>(out, q, k, vv, s, p);
    } else {
      return false;
    }
    return true;
  };
  using std::integral_constant;
  switch (v) {
    case 3:
      if (s.head_dim <= 64) {
        launch_flash<T, 64, 64>(out, q, k, vv, s, p);
      } else if (s.head_dim <= 128) {
        launch_flash<T, 128, 64>(out, q, k, vv, s, p);
      } else {
        launch_flash<T, 256, 32>(out, q, k, vv, s, p);
      }
      return true;
    case 4:
      return wgmma(integral_constant<int, 64>{}, integral_constant<int, 1>{});
    case 5:
      return wgmma(integral_constant<int, 64>{}, integral_constant<int, 2>{});
    case 6:
      return wgmma(integral_constant<int, 128>{}, integral_constant<int, 1>{});
    case 7:
      return wgmma_pipelined(integral_constant<int, 128>{}, integral_constant<int, 2>{});
    case 8:
      return wgmma_pipelined(integral_constant<int, 64>{}, integral_constant<int, 2>{});
    case 9:
      return wgmma_pipelined(integral_constant<int, 64>{}, integral_constant<int, 1>{});
    default:
      return false;
  }
}

// With an argument N, only configuration N (0-based) runs: a profiler then sees one shape.
int main(int argc, char** argv) {
  const int only = argc > 1 ? std::atoi(argv[1]) : -1;
  const DenseShape configs[] = {
      {1, 512, 512, 8, 2, 128},    {1, 4096, 4096, 32, 8, 128}, {2, 4096, 4096, 32, 8, 64},
      {1, 4096, 4096, 16, 4, 256}, {4, 2048, 2048, 32, 8, 128}, {1, 8192, 8192, 32, 8, 128},
      {1, 300, 300, 4, 2, 64},     {2, 333, 333, 6, 3, 128},    {4, 4096, 4096, 16, 16, 128},
  };
  std::printf("%-36s %8s %10s %10s %10s\n", "config", "variant", "ms", "TFLOP/s", "rel_err");
  for (const DenseShape& s : configs) {
    if (only >= 0 && &s - configs != only) continue;
    const int64_t nq = s.batch * s.q_seq * s.q_heads * s.head_dim;
    const int64_t nk = s.batch * s.kv_seq * s.kv_heads * s.head_dim;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    std::vector<__nv_bfloat16> hq(nq), hk(nk), hv(nk);
    for (auto& x : hq) x = __float2bfloat16(nd(rng));
    for (auto& x : hk) x = __float2bfloat16(nd(rng));
    for (auto& x : hv) x = __float2bfloat16(nd(rng));
    __nv_bfloat16 *dq, *dk, *dv, *o1, *o2;
    CK(cudaMalloc(&dq, nq * 2));
    CK(cudaMalloc(&dk, nk * 2));
    CK(cudaMalloc(&dv, nk * 2));
    CK(cudaMalloc(&o1, nq * 2));
    CK(cudaMalloc(&o2, nq * 2));
    CK(cudaMemcpy(dq, hq.data(), nq * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dk, hk.data(), nk * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dv, hv.data(), nk * 2, cudaMemcpyHostToDevice));
    const float scale = 1.f / std::sqrt(static_cast<float>(s.head_dim));
    const double flops = 4.0 * s.batch * s.q_heads * s.q_seq * s.kv_seq * s.head_dim / 2;
    char name[80];
    std::snprintf(name, sizeof name, "B=%ld T=%ld Hq=%ld Hkv=%ld D=%ld", (long)s.batch,
                  (long)s.q_seq, (long)s.q_heads, (long)s.kv_heads, (long)s.head_dim);
    // CPU reference (double) for batch 0, heads 0 and Hq-1, at the small size only.
    const bool cpu_ref = s.q_seq <= 512;
    auto cpu_err = [&](const std::vector<__nv_bfloat16>& got) {
      double num = 0, den = 0;
      const int64_t d = s.head_dim, group = s.q_heads / s.kv_heads;
      for (int64_t h : {int64_t{0}, s.q_heads - 1}) {
        const int64_t g = h / group;
        for (int64_t i = 0; i < s.q_seq; ++i) {
          std::vector<double> p(i + 1);
          double mx = -1e300, sum = 0;
          for (int64_t j = 0; j <= i; ++j) {
            double dot = 0;
            for (int64_t e = 0; e < d; ++e)
              dot += (double)__bfloat162float(hq[(i * s.q_heads + h) * d + e]) *
                     __bfloat162float(hk[(j * s.kv_heads + g) * d + e]);
            mx = std::max(mx, p[j] = dot * scale);
          }
          for (auto& x : p) sum += (x = std::exp(x - mx));
          for (int64_t e = 0; e < d; ++e) {
            double r = 0;
            for (int64_t j = 0; j <= i; ++j)
              r += p[j] / sum * __bfloat162float(hv[(j * s.kv_heads + g) * d + e]);
            const double x = __bfloat162float(got[(i * s.q_heads + h) * d + e]);
            num += (x - r) * (x - r);
            den += r * r;
          }
        }
      }
      return std::sqrt(num / den);
    };
    std::vector<__nv_bfloat16> g1(nq), g2(nq);
    for (int v = 1; v <= 9; ++v) {
      __nv_bfloat16* o = v == 1 ? o1 : o2;
      if (v >= 4 && s.head_dim != 64 && s.head_dim != 128) continue;
      auto call = [&] {
        if (v == 1) {
          attention_forward_split(tune::DType::bf16, o, dq, dk, dv, nullptr, s, scale, 0);
        } else if (v == 2) {
          attention_forward(tune::DType::bf16, o, dq, dk, dv, nullptr, s, scale, 0);
        } else {
          flash_variant(v, o, dq, dk, dv, s, scale);
        }
      };
      CK(cudaMemset(o, 0xff, nq * 2));
      call();
      CK(cudaDeviceSynchronize());
      std::vector<__nv_bfloat16>& got = v == 1 ? g1 : g2;
      CK(cudaMemcpy(got.data(), o, nq * 2, cudaMemcpyDeviceToHost));
      double rel = 0;
      if (cpu_ref) {
        rel = cpu_err(got);
      } else if (v >= 2) {  // against variant 1 on the GPU
        double num = 0, den = 0;
        for (int64_t i = 0; i < nq; ++i) {
          const double a = __bfloat162float(g1[i]), b = __bfloat162float(g2[i]);
          num += (a - b) * (a - b);
          den += a * a;
        }
        rel = std::sqrt(num / den);
      }
      cudaEvent_t a, b;
      CK(cudaEventCreate(&a));
      CK(cudaEventCreate(&b));
      std::vector<float> ms;
      const int reps = v == 1 && s.q_seq * s.batch > 4096 ? 3 : 20;
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
      const double med = ms[ms.size() / 2];
      std::printf("%-36s %8d %10.3f %10.1f %10.2e%s\n", name, v, med, flops / (med * 1e-3) / 1e12,
                  rel, rel < 2e-2 ? "" : "  FAIL");
    }
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(o1), cudaFree(o2);
  }
  return 0;
}
