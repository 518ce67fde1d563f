// ops::attention_forward (no saved probabilities: inference and prefill) and
// ops::attention_forward_lse (training) on the GPU; measured in
// dev/kernels/attention.cu. Design notes:
// - bf16/f16 with more than a few queries: flash-attention 2. A block owns BM = 64 query rows of
//   one (batch, query head) — warp w rows [16 w, 16 w + 16) — and walks the key tiles of BN keys
//   that any of its rows can see (causal bottom-right, window and key_start bound the range).
//   S = Q K^T and O += P V run on the tensor cores (mma.sync m16n8k16, f32 accumulators), with
//   fragments loaded by ldmatrix from shared memory rows padded by 16 bytes (no bank conflicts).
//   Softmax is online in f32 and log2 units; the S accumulators become P's A fragments in
//   registers. K and V tiles arrive by cp.async into two buffers each: the next tile loads while
//   this one is computed.
// - On Hopper at head dims 64 and 128 the same algorithm runs on warpgroup MMA
//   (flash_forward_wgmma, attention_wgmma.cuh): 2 warpgroups of 64 rows share each K/V tile in
//   128-byte-swizzled shared memory; at D 128 the pipelined form overlaps one tile's softmax
//   with the previous tile's P V (FlashAttention-3's intra-warpgroup pipelining).
// - The head dim is padded to a compiled size DP (64, 80, 96, 128 or 256) with zeros in shared
//   memory, so any multiple of 8 up to 256 works; rows past Tq and keys past the range are
//   zero-filled and masked.
// - attention_forward_lse (training) runs the same kernel and writes each row's logsumexp from
//   the online-softmax statistics it already holds (one branch after the loop: no slowdown when
//   lse is not asked for).
// - GQA/MQA: query head h reads kv head h / (Hq / Hkv) directly; nothing is repeated.
// - f32, and few queries (decoding against a contiguous cache), go to attention_decode.cu's
//   split-key kernel instead.
#include <algorithm>
#include <cstdint>

#include "backend/cuda/attention_kernels.h"
#include "backend/cuda/attention_mma.cuh"
#include "backend/cuda/attention_wgmma.cuh"
#include "backend/cuda/embedding_common.cuh"

namespace tune::cuda {

namespace {

using namespace attention_mma;

constexpr int kBM = 64, kWarpsTc = 4, kThreadsTc = kWarpsTc * 32;
// K/V buffers per block (flash_forward's STAGES); 1 and 2 measured the same in
// dev/kernels/attention.cu (the second buffer costs a block per SM at D 128).
constexpr int kFlashStages = 2;
constexpr float kLog2eTc = 1.4426950408889634f;
// flash_forward_wgmma's tiles: keys per K/V tile at head dims 64 and 128, warpgroups per block.
// D 128 runs the pipelined kernel (281 vs 260 TFLOP/s in the lab); at D 64 it lost (220 vs 254).
constexpr int kWgmmaBN64 = 64, kWgmmaBN128 = 128, kWgmmaGroups = 2;

struct FlashArgs {
  const int64_t* key_start;  // [B, Tq] or null
  int64_t q_seq, kv_seq;
  int q_heads, kv_heads, d;
  float scale_log2;
  int64_t window;
  float* lse;  // [B, Hq, Tq] natural-log row logsumexp (attention_forward_lse), or null
};

// First visible key of query row i (absolute position a = Tk - Tq + i).
__device__ __forceinline__ int64_t first_key(const FlashArgs& p, int64_t b, int64_t i) {
  const int64_t a = p.kv_seq - p.q_seq + i;
  int64_t lo = p.window > 0 ? max64(0, a - p.window + 1) : 0;
  if (p.key_start) lo = max64(lo, p.key_start[b * p.q_seq + i]);
  return lo;
}

// One block's query tile: rows [i0, last_row] of (batch b, query head h), and the rows of its
// heads in q, k and v (strides in elements between consecutive positions).
template <typename T>
struct QueryTile {
  int64_t b, i0, last_row, q_stride, kv_stride;
  int h;
  const T *qh, *kh, *vh;
};

template <typename T>
__device__ __forceinline__ QueryTile<T> query_tile(const FlashArgs& p, const T* q, const T* k,
                                                   const T* v, int h, int64_t b, int64_t i0,
                                                   int rows) {
  const int g = h / (p.q_heads / p.kv_heads);
  const int64_t q_stride = static_cast<int64_t>(p.q_heads) * p.d;
  const int64_t kv_stride = static_cast<int64_t>(p.kv_heads) * p.d;
  return QueryTile<T>{b,
                      i0,
                      min64(p.q_seq, i0 + rows) - 1,
                      q_stride,
                      kv_stride,
                      h,
                      q + b * p.q_seq * q_stride + static_cast<int64_t>(h) * p.d,
                      k + b * p.kv_seq * kv_stride + static_cast<int64_t>(g) * p.d,
                      v + b * p.kv_seq * kv_stride + static_cast<int64_t>(g) * p.d};
}

// The first key any row of the tile sees (packed documents make it the minimum over the rows).
template <typename T>
__device__ __forceinline__ int64_t first_key_of_tile(const FlashArgs& p, const QueryTile<T>& t) {
  int64_t lo = first_key(p, t.b, t.i0);
  for (int64_t i = t.i0 + 1; i <= t.last_row && p.key_start; ++i)
    lo = min64(lo, first_key(p, t.b, i));
  return lo;
}

// The two query rows a thread holds (gid and gid + 8 of its warp's 16), their visible key range
// and online-softmax statistics (row max m in log2 units of the scaled scores, sum l).
struct Rows {
  int64_t row_a, row_b, abs_a, abs_b, lo_a, lo_b;
  float m_a, m_b, l_a, l_b;
};

__device__ __forceinline__ Rows thread_rows(const FlashArgs& p, int64_t b, int64_t row_a) {
  const int64_t offset = p.kv_seq - p.q_seq, row_b = row_a + 8;
  return Rows{row_a,
              row_b,
              offset + row_a,
              offset + row_b,
              row_a < p.q_seq ? first_key(p, b, row_a) : 0,
              row_b < p.q_seq ? first_key(p, b, row_b) : 0,
              -INFINITY,
              -INFINITY,
              0.f,
              0.f};
}

// S (the rows' scores against keys [j0, j0 + BN)) -> P = exp2(S scale_log2 - m_new), masked;
// the rows' statistics move to the new max. Returns exp2(m_old - m_new) for rows a and b, the
// factor O must be rescaled by (rescale) before P V is added.
template <int BN>
__device__ __forceinline__ float2 softmax_tile(float (&s)[BN / 8][4], Rows& r, int64_t j0,
                                               int64_t j_end, float scale_log2, int tig) {
  // The 4 threads of a quad share a row. Tiles that every row of the warp sees whole (most of
  // them) skip the per-element mask.
  float mx_a = -INFINITY, mx_b = -INFINITY;
  const bool whole =
      __all_sync(0xffffffffu, j0 >= max64(r.lo_a, r.lo_b) &&
                                  j0 + BN - 1 <= min64(r.abs_a, r.abs_b) && j0 + BN <= j_end);
  if (whole) {
#pragma unroll
    for (int n = 0; n < BN / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        s[n][e] *= scale_log2;
        s[n][2 + e] *= scale_log2;
        mx_a = fmaxf(mx_a, s[n][e]);
        mx_b = fmaxf(mx_b, s[n][2 + e]);
      }
    }
  } else {
#pragma unroll
    for (int n = 0; n < BN / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int64_t j = j0 + n * 8 + 2 * tig + e;
        const bool vis_a = j <= r.abs_a && j >= r.lo_a && j < j_end;
        const bool vis_b = j <= r.abs_b && j >= r.lo_b && j < j_end;
        s[n][e] = vis_a ? s[n][e] * scale_log2 : -INFINITY;
        s[n][2 + e] = vis_b ? s[n][2 + e] * scale_log2 : -INFINITY;
        mx_a = fmaxf(mx_a, s[n][e]);
        mx_b = fmaxf(mx_b, s[n][2 + e]);
      }
    }
  }
#pragma unroll
  for (int o2 = 1; o2 < 4; o2 *= 2) {
    mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, o2));
    mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, o2));
  }
  const float mn_a = fmaxf(r.m_a, mx_a), mn_b = fmaxf(r.m_b, mx_b);
  const float ref_a = mn_a == -INFINITY ? 0.f : mn_a, ref_b = mn_b == -INFINITY ? 0.f : mn_b;
  const float corr_a = exp2f(r.m_a - ref_a), corr_b = exp2f(r.m_b - ref_b);
  r.m_a = mn_a;
  r.m_b = mn_b;
  float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
  for (int n = 0; n < BN / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      s[n][e] = exp2f(s[n][e] - ref_a);
      s[n][2 + e] = exp2f(s[n][2 + e] - ref_b);
      sum_a += s[n][e];
      sum_b += s[n][2 + e];
    }
  }
  r.l_a = r.l_a * corr_a + sum_a;
  r.l_b = r.l_b * corr_b + sum_b;
  return float2{corr_a, corr_b};
}

// O's rows a and b times softmax_tile's corrections.
template <int DP>
__device__ __forceinline__ void rescale(float (&o)[DP / 8][4], float2 corr) {
#pragma unroll
  for (int n = 0; n < DP / 8; ++n) {
    o[n][0] *= corr.x;
    o[n][1] *= corr.x;
    o[n][2] *= corr.y;
    o[n][3] *= corr.y;
  }
}

// The rows' lse (when asked for) and O / l into out.
template <typename T, int DP>
__device__ __forceinline__ void write_rows(T* out, const FlashArgs& p, Rows& r,
                                           const float (&o)[DP / 8][4], int64_t b, int h, int tig) {
#pragma unroll
  for (int o2 = 1; o2 < 4; o2 *= 2) {
    r.l_a += __shfl_xor_sync(0xffffffffu, r.l_a, o2);
    r.l_b += __shfl_xor_sync(0xffffffffu, r.l_b, o2);
  }
  const float inv_a = r.l_a > 0.f ? 1.f / r.l_a : 0.f, inv_b = r.l_b > 0.f ? 1.f / r.l_b : 0.f;
  if (p.lse && tig == 0) {
    // m is the row max in log2 units of the scaled scores; a row that saw no key has l == 0.
    constexpr float kLn2 = 0.6931471805599453f;
    float* lse_h = p.lse + (b * p.q_heads + h) * p.q_seq;
    if (r.row_a < p.q_seq) lse_h[r.row_a] = r.l_a > 0.f ? (r.m_a + log2f(r.l_a)) * kLn2 : -INFINITY;
    if (r.row_b < p.q_seq) lse_h[r.row_b] = r.l_b > 0.f ? (r.m_b + log2f(r.l_b)) * kLn2 : -INFINITY;
  }
  const int64_t q_stride = static_cast<int64_t>(p.q_heads) * p.d;
  T* oa = out + (b * p.q_seq + r.row_a) * q_stride + static_cast<int64_t>(h) * p.d;
  T* ob = oa + 8 * q_stride;
#pragma unroll
  for (int n = 0; n < DP / 8; ++n) {
    const int col = n * 8 + 2 * tig;
    if (col >= p.d) continue;
    if (r.row_a < p.q_seq) {
      *reinterpret_cast<uint32_t*>(oa + col) = pack2<T>(o[n][0] * inv_a, o[n][1] * inv_a);
    }
    if (r.row_b < p.q_seq) {
      *reinterpret_cast<uint32_t*>(ob + col) = pack2<T>(o[n][2] * inv_b, o[n][3] * inv_b);
    }
  }
}

// STAGES 1: one K and one V buffer, the next K tile loading during softmax and P V. STAGES 2: two
// of each, the whole next tile loading while this one is computed.
template <typename T, int DP, int BN, int STAGES>
__global__ void __launch_bounds__(kThreadsTc)
    flash_forward(T* out, const T* q, const T* k, const T* v, FlashArgs p) {
  constexpr int kLd = DP + 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [BM][kLd]
  T* sK0 = sQ + kBM * kLd;                 // [STAGES][BN][kLd]
  T* sV0 = sK0 + STAGES * BN * kLd;        // [STAGES][BN][kLd]
  __shared__ int64_t tile_lo;

  const int64_t b = blockIdx.z;
  const int h = blockIdx.y;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gid = lane / 4, tig = lane % 4;
  const int64_t offset = p.kv_seq - p.q_seq;
  const QueryTile<T> tile = query_tile(p, q, k, v, h, b, i0, kBM);
  if (threadIdx.x == 0) tile_lo = first_key_of_tile(p, tile);
  load_padded_rows<T, DP, kThreadsTc>(sQ, tile.qh, tile.q_stride, i0, kBM, p.q_seq, p.d);
  __syncthreads();
  const int64_t j_begin = tile_lo, j_end = offset + tile.last_row + 1;  // keys [j_begin, j_end)
  load_padded_rows<T, DP, kThreadsTc>(sK0, tile.kh, tile.kv_stride, j_begin, BN, j_end, p.d);
  load_padded_rows<T, DP, kThreadsTc>(sV0, tile.vh, tile.kv_stride, j_begin, BN, j_end, p.d);
  cp_async_commit();

  // This thread's two rows of the warp's 16: gid and gid + 8.
  Rows r = thread_rows(p, b, i0 + warp * 16 + gid);
  float o[DP / 8][4];
#pragma unroll
  for (int n = 0; n < DP / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;

  int stage = 0;
  for (int64_t j0 = j_begin; j0 < j_end; j0 += BN, stage ^= (STAGES - 1)) {
    T* sK = sK0 + stage * BN * kLd;
    T* sV = sV0 + stage * BN * kLd;
    const bool more = j0 + BN < j_end;
    if constexpr (STAGES == 2) {
      // The buffers of the next tile were last read in the previous trip, which ended in a barrier.
      if (more) {
        load_padded_rows<T, DP, kThreadsTc>(sK0 + (stage ^ 1) * BN * kLd, tile.kh, tile.kv_stride,
                                            j0 + BN, BN, j_end, p.d);
        load_padded_rows<T, DP, kThreadsTc>(sV0 + (stage ^ 1) * BN * kLd, tile.vh, tile.kv_stride,
                                            j0 + BN, BN, j_end, p.d);
      }
      cp_async_commit();
      cp_async_wait_all_but_one();
    } else {
      cp_async_wait_all();
    }
    __syncthreads();
    // S = Q K^T for the warp's 16 rows and BN keys.
    float s[BN / 8][4];
#pragma unroll
    for (int n = 0; n < BN / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < DP; kk += 16) {
      uint32_t a[4];
      ldmatrix_x4(a, sQ + (warp * 16 + lane % 16) * kLd + kk + (lane / 16) * 8);
#pragma unroll
      for (int n = 0; n < BN / 8; n += 2) {
        uint32_t bf[4];
        ldmatrix_x4(bf,
                    sK + (n * 8 + lane % 8 + (lane / 16) * 8) * kLd + kk + ((lane / 8) % 2) * 8);
        mma16816<T>(s[n], a, bf[0], bf[1]);
        mma16816<T>(s[n + 1], a, bf[2], bf[3]);
      }
    }
    if constexpr (STAGES == 1) {
      __syncthreads();  // every warp is done with sK
      if (more)
        load_padded_rows<T, DP, kThreadsTc>(sK, tile.kh, tile.kv_stride, j0 + BN, BN, j_end, p.d);
      cp_async_commit();
    }

    rescale<DP>(o, softmax_tile<BN>(s, r, j0, j_end, p.scale_log2, tig));

    // O += P V: P's A fragments straight from the S accumulators.
#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt) {
      uint32_t a[4];
      a_fragment<T>(a, s, kt);
#pragma unroll
      for (int n = 0; n < DP / 8; n += 2) {
        uint32_t bf[4];
        ldmatrix_x4_trans(
            bf, sV + (kt * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kLd + n * 8 + (lane / 16) * 8);
        mma16816<T>(o[n], a, bf[0], bf[1]);
        mma16816<T>(o[n + 1], a, bf[2], bf[3]);
      }
    }
    __syncthreads();  // every warp is done with sV (and, STAGES 2, with sK)
    if constexpr (STAGES == 1) {
      if (more)
        load_padded_rows<T, DP, kThreadsTc>(sV, tile.vh, tile.kv_stride, j0 + BN, BN, j_end, p.d);
      cp_async_commit();
    }
  }

  write_rows<T, DP>(out, p, r, o, b, h, tig);
}

template <typename T, int DP, int BN, int STAGES = kFlashStages>
void launch_flash(void* out, const void* q, const void* k, const void* v, const DenseShape& s,
                  const FlashArgs& p) {
  const size_t smem = static_cast<size_t>((kBM + 2 * STAGES * BN) * (DP + 8)) * sizeof(T);
  auto kernel = flash_forward<T, DP, BN, STAGES>;
  TUNE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>((s.q_seq + kBM - 1) / kBM),
                  static_cast<unsigned>(s.q_heads), static_cast<unsigned>(s.batch));
  kernel<<<grid, kThreadsTc, smem, cudaStreamPerThread>>>(
      static_cast<T*>(out), static_cast<const T*>(q), static_cast<const T*>(k),
      static_cast<const T*>(v), p);
  TUNE_CUDA_CHECK(cudaGetLastError());
}

// ---- Hopper: the same algorithm on warpgroup MMA (attention_wgmma.cuh), head dims 64 and 128 ----
// WGS warpgroups of 64 query rows share each K/V tile of BN keys. S = Q K^T is wgmma with Q and K
// from swizzled shared memory; O += P V is wgmma with P's A fragments in registers and V read
// N-major from shared memory; masking, online softmax and the output are flash_forward's
// (the accumulator layout is the same). Tiles are numbered in reverse along grid z, the slowest
// dimension, so the longest causal rows start first and the short ones fill the tail.
namespace wg = attention_wgmma;

template <typename T, int DP, int BN, int WGS>
__global__ void __launch_bounds__(WGS * 128, 1)
    flash_forward_wgmma(T* out, const T* q, const T* k, const T* v, FlashArgs p) {
  constexpr int BM = 64 * WGS, kThreadsW = WGS * 128;
  extern __shared__ __align__(1024) unsigned char smem_dyn[];
  T* sQ = reinterpret_cast<T*>(wg::swizzle_aligned(smem_dyn));  // [BM][DP] swizzled
  T* sK0 = sQ + BM * DP;                                        // [2][BN][DP]
  T* sV0 = sK0 + 2 * BN * DP;                                   // [2][BN][DP]
  __shared__ int64_t tile_lo;

  const int h = blockIdx.x;
  const int64_t b = blockIdx.y;
  const int64_t i0 = static_cast<int64_t>(gridDim.z - 1 - blockIdx.z) * BM;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gid = lane / 4, tig = lane % 4, group_row = (warp / 4) * 64;
  const QueryTile<T> tile = query_tile(p, q, k, v, h, b, i0, BM);
  if (threadIdx.x == 0) tile_lo = first_key_of_tile(p, tile);
  wg::load_swizzled<T, DP, BM, kThreadsW>(sQ, tile.qh, tile.q_stride, i0, p.q_seq);
  __syncthreads();
  const int64_t j_begin = tile_lo, j_end = p.kv_seq - p.q_seq + tile.last_row + 1;
  wg::load_swizzled<T, DP, BN, kThreadsW>(sK0, tile.kh, tile.kv_stride, j_begin, j_end);
  wg::load_swizzled<T, DP, BN, kThreadsW>(sV0, tile.vh, tile.kv_stride, j_begin, j_end);
  cp_async_commit();

  Rows r = thread_rows(p, b, i0 + warp * 16 + gid);
  float o[DP / 8][4];
#pragma unroll
  for (int n = 0; n < DP / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;

  int stage = 0;
  for (int64_t j0 = j_begin; j0 < j_end; j0 += BN, stage ^= 1) {
    T* sK = sK0 + stage * BN * DP;
    T* sV = sV0 + stage * BN * DP;
    // The next tile's buffers were last read in the previous trip, which ended in a barrier.
    if (j0 + BN < j_end) {
      wg::load_swizzled<T, DP, BN, kThreadsW>(sK0 + (stage ^ 1) * BN * DP, tile.kh, tile.kv_stride,
                                              j0 + BN, j_end);
      wg::load_swizzled<T, DP, BN, kThreadsW>(sV0 + (stage ^ 1) * BN * DP, tile.vh, tile.kv_stride,
                                              j0 + BN, j_end);
    }
    cp_async_commit();
    cp_async_wait_all_but_one();
    wg::fence_async_shared();
    __syncthreads();

    float s[BN / 8][4];
    wg::fence();
#pragma unroll
    for (int kk = 0; kk < DP; kk += 16) {
      wg::mma_ss<BN, T>(s, wg::k_major<BM>(sQ, group_row, kk), wg::k_major<BN>(sK, 0, kk), kk > 0);
    }
    wg::commit();
    wg::wait<0>();
    wg::fence_registers(s);

    rescale<DP>(o, softmax_tile<BN>(s, r, j0, j_end, p.scale_log2, tig));

    uint32_t pa[BN / 16][4];
#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt) a_fragment<T>(pa[kt], s, kt);
    wg::fence();
#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt)
      wg::mma_rs<DP, T>(o, pa[kt], wg::mn_major<BN>(sV, kt * 16));
    wg::commit();
    wg::wait<0>();
    wg::fence_registers(o);
    wg::fence_registers(pa);
    __syncthreads();  // every warpgroup is done with sK and sV
  }
  write_rows<T, DP>(out, p, r, o, b, h, tig);
}

// flash_forward_wgmma with the softmax of one tile overlapping the P V product of the one before
// (FlashAttention-3's intra-warpgroup pipelining): per trip, S_{t+1} = Q K_{t+1}^T and
// O += P_t V_t are issued together; the softmax of S_{t+1} runs while P_t V_t is still on the
// tensor cores, and O is rescaled once that product is done. K/V tiles in three buffers: tile
// t + 2 loads while t + 1's S and t's P V are computed.
template <typename T, int DP, int BN, int WGS>
__global__ void __launch_bounds__(WGS * 128, 1)
    flash_forward_wgmma_pipelined(T* out, const T* q, const T* k, const T* v, FlashArgs p) {
  constexpr int BM = 64 * WGS, kThreadsW = WGS * 128, kStages = 3;
  extern __shared__ __align__(1024) unsigned char smem_dyn[];
  T* sQ = reinterpret_cast<T*>(wg::swizzle_aligned(smem_dyn));  // [BM][DP] swizzled
  T* sK0 = sQ + BM * DP;                                        // [3][BN][DP]
  T* sV0 = sK0 + kStages * BN * DP;                             // [3][BN][DP]
  __shared__ int64_t tile_lo;

  const int h = blockIdx.x;
  const int64_t b = blockIdx.y;
  const int64_t i0 = static_cast<int64_t>(gridDim.z - 1 - blockIdx.z) * BM;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gid = lane / 4, tig = lane % 4, group_row = (warp / 4) * 64;
  const QueryTile<T> tile = query_tile(p, q, k, v, h, b, i0, BM);
  if (threadIdx.x == 0) tile_lo = first_key_of_tile(p, tile);
  wg::load_swizzled<T, DP, BM, kThreadsW>(sQ, tile.qh, tile.q_stride, i0, p.q_seq);
  __syncthreads();
  const int64_t j_begin = tile_lo, j_end = p.kv_seq - p.q_seq + tile.last_row + 1;
  const int tiles = static_cast<int>((j_end - j_begin + BN - 1) / BN);
  auto load_kv = [&](int t) {
    if (t < tiles) {
      const int64_t j0 = j_begin + static_cast<int64_t>(t) * BN;
      const int st = t % kStages;
      wg::load_swizzled<T, DP, BN, kThreadsW>(sK0 + st * BN * DP, tile.kh, tile.kv_stride, j0,
                                              j_end);
      wg::load_swizzled<T, DP, BN, kThreadsW>(sV0 + st * BN * DP, tile.vh, tile.kv_stride, j0,
                                              j_end);
    }
    cp_async_commit();
  };
  load_kv(0);
  load_kv(1);
  cp_async_wait_all_but_one();  // Q and tile 0
  wg::fence_async_shared();
  __syncthreads();

  Rows r = thread_rows(p, b, i0 + warp * 16 + gid);
  float o[DP / 8][4];
#pragma unroll
  for (int n = 0; n < DP / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float s[BN / 8][4];
  uint32_t pa[BN / 16][4];
  // The tiles' descriptors, built once (stage st of K or V is st * kStageBytes further on).
  constexpr uint32_t kStageBytes = BN * DP * sizeof(T);
  const uint64_t q_desc = wg::k_major<BM>(sQ, group_row, 0), k_desc = wg::k_major<BN>(sK0, 0, 0),
                 v_desc = wg::mn_major<BN>(sV0, 0);

  // Tile 0's S and softmax (O is zero: nothing to rescale).
  wg::fence();
#pragma unroll
  for (int kk = 0; kk < DP; kk += 16) {
    wg::mma_ss<BN, T>(s, wg::advance(q_desc, wg::k_major_step<BM>(kk)),
                      wg::advance(k_desc, wg::k_major_step<BN>(kk)), kk > 0);
  }
  wg::commit();
  wg::wait<0>();
  wg::fence_registers(s);
  softmax_tile<BN>(s, r, j_begin, j_end, p.scale_log2, tig);
#pragma unroll
  for (int kt = 0; kt < BN / 16; ++kt) a_fragment<T>(pa[kt], s, kt);

  // Trips t < tiles - 1: S_{t+1} and P_t V_t in flight together.
  for (int t = 0; t + 1 < tiles; ++t) {
    // Tile t + 1 has landed, and every warpgroup is past trip t - 1: its buffers take t + 2.
    cp_async_wait_all();
    wg::fence_async_shared();
    __syncthreads();
    load_kv(t + 2);
    const uint64_t k_t = wg::advance(k_desc, ((t + 1) % kStages) * kStageBytes);
    const uint64_t v_t = wg::advance(v_desc, (t % kStages) * kStageBytes);
    wg::fence();
#pragma unroll
    for (int kk = 0; kk < DP; kk += 16) {
      wg::mma_ss<BN, T>(s, wg::advance(q_desc, wg::k_major_step<BM>(kk)),
                        wg::advance(k_t, wg::k_major_step<BN>(kk)), kk > 0);
    }
    wg::commit();
#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt)
      wg::mma_rs<DP, T>(o, pa[kt], wg::advance(v_t, wg::mn_major_step(kt * 16)));
    wg::commit();
    wg::wait<1>();  // S_{t+1} is done; P_t V_t may still run
    wg::fence_registers(s);
    const float2 corr = softmax_tile<BN>(s, r, j_begin + static_cast<int64_t>(t + 1) * BN, j_end,
                                         p.scale_log2, tig);
    wg::wait<0>();
    wg::fence_registers(o);
    wg::fence_registers(pa);
    rescale<DP>(o, corr);
#pragma unroll
    for (int kt = 0; kt < BN / 16; ++kt) a_fragment<T>(pa[kt], s, kt);
  }
  // The last tile's P V (its K/V landed before the last trip's barrier, or in the prologue).
  const uint64_t v_last = wg::advance(v_desc, ((tiles - 1) % kStages) * kStageBytes);
  wg::fence();
#pragma unroll
  for (int kt = 0; kt < BN / 16; ++kt)
    wg::mma_rs<DP, T>(o, pa[kt], wg::advance(v_last, wg::mn_major_step(kt * 16)));
  wg::commit();
  wg::wait<0>();
  wg::fence_registers(o);
  wg::fence_registers(pa);
  write_rows<T, DP>(out, p, r, o, b, h, tig);
}

template <typename T, int DP, int BN, int WGS, bool PIPELINED = false>
void launch_flash_wgmma(void* out, const void* q, const void* k, const void* v, const DenseShape& s,
                        const FlashArgs& p) {
  constexpr int BM = 64 * WGS, kStages = PIPELINED ? 3 : 2;
  const size_t smem = static_cast<size_t>((BM + 2 * kStages * BN) * DP) * sizeof(T) + 1024;
  auto kernel = PIPELINED ? flash_forward_wgmma_pipelined<T, DP, BN, WGS>
                          : flash_forward_wgmma<T, DP, BN, WGS>;
  TUNE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>(s.q_heads), static_cast<unsigned>(s.batch),
                  static_cast<unsigned>((s.q_seq + BM - 1) / BM));
  kernel<<<grid, WGS * 128, smem, cudaStreamPerThread>>>(
      static_cast<T*>(out), static_cast<const T*>(q), static_cast<const T*>(k),
      static_cast<const T*>(v), p);
  TUNE_CUDA_CHECK(cudaGetLastError());
}

// The wgmma kernel's shapes: the device is Hopper and the head dim is 64 or 128.
bool wgmma_shape(const DenseShape& s) {
  return (s.head_dim == 64 || s.head_dim == 128) && wg::wgmma_device();
}

template <typename T>
void flash_by_dim(void* out, const void* q, const void* k, const void* v, const DenseShape& s,
                  const FlashArgs& p) {
  const int64_t d = s.head_dim;
  if (wgmma_shape(s)) {
    if (d == 64) {
      launch_flash_wgmma<T, 64, kWgmmaBN64, kWgmmaGroups>(out, q, k, v, s, p);
    } else {
      launch_flash_wgmma<T, 128, kWgmmaBN128, kWgmmaGroups, true>(out, q, k, v, s, p);
    }
  } else if (d <= 64) {
    launch_flash<T, 64, 64>(out, q, k, v, s, p);
  } else if (d <= 80) {
    launch_flash<T, 80, 64>(out, q, k, v, s, p);
  } else if (d <= 96) {
    launch_flash<T, 96, 64>(out, q, k, v, s, p);
  } else if (d <= 128) {
    launch_flash<T, 128, 64>(out, q, k, v, s, p);
  } else {
    launch_flash<T, 256, 32>(out, q, k, v, s, p);
  }
}

}  // namespace

namespace {

void flash(DType dtype, void* out, float* lse, const void* q, const void* k, const void* v,
           const int64_t* key_start, const DenseShape& s, float scale, int64_t window) {
  const FlashArgs p{key_start,
                    s.q_seq,
                    s.kv_seq,
                    static_cast<int>(s.q_heads),
                    static_cast<int>(s.kv_heads),
                    static_cast<int>(s.head_dim),
                    scale * kLog2eTc,
                    window,
                    lse};
  if (dtype == DType::bf16) {
    flash_by_dim<__nv_bfloat16>(out, q, k, v, s, p);
  } else {
    flash_by_dim<__half>(out, q, k, v, s, p);
  }
}

}  // namespace

void attention_forward(DType dtype, void* out, const void* q, const void* k, const void* v,
                       const int64_t* key_start, const DenseShape& s, float scale, int64_t window) {
  if (s.batch == 0 || s.q_seq == 0) return;
  // Few queries per (batch, head): a 64-row tile would be mostly empty; split the keys instead.
  if (dtype == DType::f32 || s.q_seq <= 4) {
    attention_forward_split(dtype, out, q, k, v, key_start, s, scale, window);
    return;
  }
  flash(dtype, out, nullptr, q, k, v, key_start, s, scale, window);
}

void attention_forward_lse(DType dtype, void* out, float* lse, const void* q, const void* k,
                           const void* v, const int64_t* key_start, const DenseShape& s,
                           float scale, int64_t window) {
  if (s.batch == 0 || s.q_seq == 0) return;
  if (dtype == DType::f32) {
    attention_forward_lse_f32(out, lse, q, k, v, key_start, s, scale, window);
    return;
  }
  // Training runs Tq == Tk, so the flash kernel serves every size here (a 1-4 query call only
  // wastes most of one tile).
  flash(dtype, out, lse, q, k, v, key_start, s, scale, window);
}

}  // namespace tune::cuda
