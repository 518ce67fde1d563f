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
// The pipelined kernel's descriptors built once and stepped by an add (wg::advance) rather than
// converted from a pointer for every product: 291 (T 4096), 301 (B 4 H 16), 317 (T 8192), +2-4%.
// The tile loads' address math hoisted (each thread keeps one 16-byte column chunk, so a row step
// is a pointer add, not a division and a 64-bit multiply per chunk; ncu had the integer pipe the
// busiest): 357 (T 4096), 362 (B 4 H 16), 408 (T 8192); D 64 (64, 2): 279. The shared-memory
// offset stepped too (the swizzle repeats every 8 rows): 355.5, 355.2, D 64 285.
// Variant 10 (this file only, 2026-11-23): warp specialization — a loading warpgroup (cp.async,
// mbarriers, registers 24) and 2 computing warpgroups (240) — 276 vs 284 for 7 at T 4096; with
// the computing warpgroups taking turns at issuing their products (named barriers, FA3's
// ping-pong) 275.6 vs 283.7 (T 8192: 303 vs 310): no gain, so the engine keeps 7. ncu on 10
// (T 4096): issue slots 46% busy, the ALU pipe (integer, address math) the busiest at 39%, MUFU
// 16%, 35% of stalls on L1TEX scoreboards. Next: TMA loads (no per-chunk address math in any
// warp), descriptors and masks hoisted out of the loop, then the ping-pong again.
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

// ---- variant 10, a lab-only experiment: the pipelined kernel with warp specialization ----
namespace tune::cuda {
namespace attention_wgmma {
// Shared-memory barriers (mbarrier) for warp-specialized kernels, where one warpgroup loads tiles
// and the others compute. A phase completes when `count` arrivals have happened; waiters name the
// phase by its parity (0 for the first, 1 for the second, ...).
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t count) {
#if TUNE_WGMMA
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(attention_mma::smem_addr(bar)),
               "r"(count)
               : "memory");
#endif
}
__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
#if TUNE_WGMMA
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(attention_mma::smem_addr(bar))
               : "memory");
#endif
}
// One arrival once every cp.async this thread has issued so far has landed (counted in `count`).
__device__ __forceinline__ void mbarrier_arrive_cp_async(uint64_t* bar) {
#if TUNE_WGMMA
  asm volatile(
      "cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(attention_mma::smem_addr(bar))
      : "memory");
#endif
}
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
#if TUNE_WGMMA
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n"
      "}\n" ::"r"(attention_mma::smem_addr(bar)),
      "r"(parity)
      : "memory");
#endif
}
// Named barriers (ids 1..15; 0 is __syncthreads): `count` threads in all, some waiting (sync),
// some only signalling (arrive).
__device__ __forceinline__ void named_sync(int id, int count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
// The registers of this warpgroup's threads: the loading warpgroup gives some up, the computing
// ones take them (every thread of the warpgroup executes it).
template <int N>
__device__ __forceinline__ void release_registers() {
#if TUNE_WGMMA
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N>
__device__ __forceinline__ void claim_registers() {
#if TUNE_WGMMA
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

}  // namespace attention_wgmma
namespace {
// flash_forward_wgmma_pipelined with warp specialization (FlashAttention-3's producer and
// consumers): warpgroup 0 only loads — Q, then K/V tiles into three buffers as soon as both
// computing warpgroups have released one (mbarriers, no block-wide barrier in the loop) — and
// gives its registers to warpgroups 1 and 2, which compute as the pipelined kernel does (24 + 2 x
// 240 per thread: the 168 x 3 the launch has, as setmaxnreg needs, or the claim waits forever).
template <typename T, int DP, int BN>
__global__ void __launch_bounds__(384, 1)
    flash_forward_wgmma_specialized(T* out, const T* q, const T* k, const T* v, FlashArgs p) {
  constexpr int BM = 128, kStages = 3, kLoaders = 128, kComputers = 256;
  extern __shared__ __align__(1024) unsigned char smem_dyn[];
  T* sQ = reinterpret_cast<T*>(wg::swizzle_aligned(smem_dyn));  // [BM][DP] swizzled
  T* sK0 = sQ + BM * DP;                                        // [3][BN][DP]
  T* sV0 = sK0 + kStages * BN * DP;                             // [3][BN][DP]
  __shared__ uint64_t q_full, full[kStages], empty[kStages];
  __shared__ int64_t tile_lo;

  const int h = blockIdx.x;
  const int64_t b = blockIdx.y;
  const int64_t i0 = static_cast<int64_t>(gridDim.z - 1 - blockIdx.z) * BM;
  const QueryTile<T> tile = query_tile(p, q, k, v, h, b, i0, BM);
  if (threadIdx.x == 0) {
    tile_lo = first_key_of_tile(p, tile);
    wg::mbarrier_init(&q_full, kLoaders);
    for (int st = 0; st < kStages; ++st) {
      wg::mbarrier_init(&full[st], kLoaders);
      wg::mbarrier_init(&empty[st], kComputers);
    }
  }
  __syncthreads();
  const int64_t j_begin = tile_lo, j_end = p.kv_seq - p.q_seq + tile.last_row + 1;
  const int tiles = static_cast<int>((j_end - j_begin + BN - 1) / BN);

  if (threadIdx.x < kLoaders) {  // warpgroup 0: loads
    wg::release_registers<24>();
    wg::load_swizzled<T, DP, BM, kLoaders>(sQ, tile.qh, tile.q_stride, i0, p.q_seq);
    wg::mbarrier_arrive_cp_async(&q_full);
    for (int t = 0; t < tiles; ++t) {
      const int st = t % kStages;
      if (t >= kStages) wg::mbarrier_wait(&empty[st], (t / kStages - 1) & 1);
      const int64_t j0 = j_begin + static_cast<int64_t>(t) * BN;
      wg::load_swizzled<T, DP, BN, kLoaders>(sK0 + st * BN * DP, tile.kh, tile.kv_stride, j0,
                                             j_end);
      wg::load_swizzled<T, DP, BN, kLoaders>(sV0 + st * BN * DP, tile.vh, tile.kv_stride, j0,
                                             j_end);
      wg::mbarrier_arrive_cp_async(&full[st]);
    }
    cp_async_wait_all();
    return;
  }

  wg::claim_registers<240>();
  const int warp = threadIdx.x / 32 - 4, lane = threadIdx.x % 32;
  // The two computing warpgroups take turns issuing their products (barrier 1 + c is
  // warpgroup c's turn): one's softmax runs while the other's products are on the tensor cores.
  const int me = warp / 4;
  const int issues = tiles + 1;  // S of tile 0, a trip per later tile, the last P V
  int issued = 0;
  auto my_turn = [&] { wg::named_sync(1 + me, 256); };
  auto their_turn = [&] {
    // Warpgroup 1 does not hand over after its last issue: nobody waits for that turn.
    if (!(me == 1 && issued + 1 == issues)) wg::named_arrive(2 - me, 256);
    ++issued;
  };
  if (me == 1) wg::named_arrive(1, 256);  // warpgroup 0 goes first
  const int gid = lane / 4, tig = lane % 4, group_row = (warp / 4) * 64;
  Rows r = thread_rows(p, b, i0 + warp * 16 + gid);
  float o[DP / 8][4];
#pragma unroll
  for (int n = 0; n < DP / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float s[BN / 8][4];
  uint32_t pa[BN / 16][4];

  // Tile 0's S and softmax (O is zero: nothing to rescale). The cp.async writes that the barrier
  // publishes are read next by wgmma (the async proxy): a proxy fence after each wait.
  wg::mbarrier_wait(&q_full, 0);
  wg::mbarrier_wait(&full[0], 0);
  wg::fence_async_shared();
  my_turn();
  wg::fence();
#pragma unroll
  for (int kk = 0; kk < DP; kk += 16) {
    wg::mma_ss<BN, T>(s, wg::k_major<BM>(sQ, group_row, kk), wg::k_major<BN>(sK0, 0, kk), kk > 0);
  }
  wg::commit();
  their_turn();
  wg::wait<0>();
  wg::fence_registers(s);
  softmax_tile<BN>(s, r, j_begin, j_end, p.scale_log2, tig);
#pragma unroll
  for (int kt = 0; kt < BN / 16; ++kt) a_fragment<T>(pa[kt], s, kt);

  // Trips t < tiles - 1: S_{t+1} and P_t V_t in flight together; tile t's buffers go back to the
  // loaders once P_t V_t is done.
  for (int t = 0; t + 1 < tiles; ++t) {
    wg::mbarrier_wait(&full[(t + 1) % kStages], ((t + 1) / kStages) & 1);
    wg::fence_async_shared();
    const T* sK = sK0 + ((t + 1) % kStages) * BN * DP;
    const T* sV = sV0 + (t % kStages) * BN * DP;
    my_turn();
    wg::fence();
#pragma unroll
    for (int kk = 0; kk < DP; kk += 16) {
      wg::mma_ss<BN, T>(s, wg::k_major<BM>(sQ, group_row, kk), wg::k_major<BN>(sK, 0, kk), kk > 0);
    }
    wg::commit();
#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt)
      wg::mma_rs<DP, T>(o, pa[kt], wg::mn_major<BN>(sV, kt * 16));
    wg::commit();
    their_turn();
    wg::wait<1>();  // S_{t+1} is done; P_t V_t may still run
    wg::fence_registers(s);
    const float2 corr = softmax_tile<BN>(s, r, j_begin + static_cast<int64_t>(t + 1) * BN, j_end,
                                         p.scale_log2, tig);
    wg::wait<0>();
    wg::fence_registers(o);
    wg::fence_registers(pa);
    wg::mbarrier_arrive(&empty[t % kStages]);
    rescale<DP>(o, corr);
#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt) a_fragment<T>(pa[kt], s, kt);
  }
  const T* sV = sV0 + ((tiles - 1) % kStages) * BN * DP;
  my_turn();
  wg::fence();
#pragma unroll
  for (int kt = 0; kt < BN / 16; ++kt) wg::mma_rs<DP, T>(o, pa[kt], wg::mn_major<BN>(sV, kt * 16));
  wg::commit();
  their_turn();
  wg::wait<0>();
  wg::fence_registers(o);
  wg::fence_registers(pa);
  write_rows<T, DP>(out, p, r, o, b, h, tig);
}

template <typename T, int DP, int BN>
void launch_flash_specialized(void* out, const void* q, const void* k, const void* v,
                              const DenseShape& s, const FlashArgs& p) {
  constexpr int BM = 128, kStages = 3;
  const size_t smem = static_cast<size_t>((BM + 2 * kStages * BN) * DP) * sizeof(T) + 1024;
  auto kernel = flash_forward_wgmma_specialized<T, DP, BN>;
  TUNE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>(s.q_heads), static_cast<unsigned>(s.batch),
                  static_cast<unsigned>((s.q_seq + BM - 1) / BM));
  kernel<<<grid, 384, smem, cudaStreamPerThread>>>(static_cast<T*>(out), static_cast<const T*>(q),
                                                   static_cast<const T*>(k),
                                                   static_cast<const T*>(v), p);
  TUNE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace
}  // namespace tune::cuda

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
    case 10:  // warp-specialized: a loading warpgroup, 2 computing ones
      if (s.head_dim == 128) {
        launch_flash_specialized<T, 128, 128>(out, q, k, vv, s, p);
      } else if (s.head_dim == 64) {
        launch_flash_specialized<T, 64, 128>(out, q, k, vv, s, p);
      } else {
        return false;
      }
      return true;
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
    for (int v = 1; v <= 10; ++v) {
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
