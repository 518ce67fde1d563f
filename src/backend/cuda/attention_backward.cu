// The flash-attention backward (ops::attention_backward_lse) and the f32 forward that saves lse;
// measured in dev/kernels/attention_backward.cu (H100, bf16, causal, T 4096, D 128: 286 TFLOP/s
// on Hopper's wgmma, 192 on mma.sync, counted as FA does: 2.5 x the forward's flops). Notes:
// - Training shapes only: Tq == Tk, so query i sits at key position i. Key j is visible to query
//   i when lo(i) <= j <= i, lo(i) = max(i - window + 1, key_start[b, i]) (window > 0).
// - The probabilities are recomputed, never stored: P = exp2(scale_log2 q.k - lse_i log2 e), and
//   dS = P * (dP - D_i) with dP = dO V^T and D_i = rowsum(dO * O) (a pre-kernel writes D_i and
//   lse_i log2 e to f32 scratch from the stream-ordered pool; the dK/dV blocks copy each query
//   tile's share with cp.async beside its Q and dO, a tile ahead).
// - Deterministic, no atomics: every output element has one owner that sums in a fixed order.
//   dK/dV: a block owns BN = 64 keys of one (batch, kv head) and a range of output columns; it
//   walks the group's query heads and, for each, the 64-query tiles that see its keys. Warp w owns
//   keys [16 w, 16 w + 16): it computes S^T = K Q^T and dP^T = V dO^T for its keys against the
//   tile's queries, so P^T and dS^T are born in its accumulators and feed dV += P^T dO and
//   dK += dS^T Q straight from registers (no shared-memory round trip for P or dS).
//   The next query tile's Q and dO load (cp.async, two buffers) while this one is computed.
//   dQ: a block owns 64 queries of one (batch, query head) and walks the key tiles they see,
//   recomputing S and dP (7 GEMMs in all instead of FA2's 5: the price of no atomics).
//   Both kinds of block run in one launch, dK/dV first: dQ blocks fill the SMs while the long
//   dK/dV blocks finish (+32% for GQA, where each dK/dV block walks its group's query heads).
// - dK/dV accumulators cost 2 x 16 x columns f32 per warp; D 256 would spill, so there the block
//   owns half of the columns (two blocks per key tile, each recomputing S and dP).
// - bf16/f16 on the tensor cores, written once over a tile policy: Wgmma (Hopper, D 64 / 128:
//   wgmma from swizzled tiles) or MmaSync (mma.sync m16n8k16, attention_mma.cuh), f32
//   accumulators either way; f32 on simple warp-per-row kernels (correctness for parity checks,
//   not speed). Head dims are padded to 64/80/96/128/256 with zeros in shared memory, as in the
//   forward (the wgmma policy takes only D 64 and 128, unpadded).
#include <algorithm>
#include <climits>
#include <cstdint>

#include "backend/cuda/attention_kernels.h"
#include "backend/cuda/attention_mma.cuh"
#include "backend/cuda/attention_wgmma.cuh"
#include "backend/cuda/embedding_common.cuh"

namespace tune::cuda {

namespace {

using namespace attention_mma;
namespace wg = attention_wgmma;

constexpr int kTile = 64;  // queries per dQ block and per dK/dV query tile; keys per dK/dV block
constexpr int kThreads = 128;
constexpr float kLog2eBwd = 1.4426950408889634f;
// Query/dO tile buffers of the dK/dV kernel: 2 loads the next tile while this one is computed.
constexpr int kQStages = 2;

struct BackwardArgs {
  const int64_t* key_start;  // [B, T] or null
  const float* lse;          // [B, Hq, T]
  const float* delta;        // [B, Hq, T] D_i = rowsum(dO * O)  (attention_row_terms)
  const float* lse2;         // [B, Hq, T] lse_i log2 e          (attention_row_terms)
  int seq, q_heads, kv_heads, d;
  float scale, scale_log2;
  int64_t window;
};

// First visible key of query i (Tq == Tk).
__device__ __forceinline__ int first_key_of(const BackwardArgs& p, int64_t b, int i) {
  int lo = p.window > 0 ? max(0, static_cast<int>(i - p.window + 1)) : 0;
  if (p.key_start) lo = max(lo, static_cast<int>(p.key_start[b * p.seq + i]));
  return lo;
}

// What every tile of a query row needs, in f32: D_i = dO_i . O_i and lse_i in log2 units (so that
// the tiles load them with cp.async, ahead of use, as they are). One warp per (b, i, h) row of
// the [B, T, Hq, D] tensors.
template <typename T>
__global__ void attention_row_terms(float* delta, float* lse2, const float* lse, const T* dout,
                                    const T* out, int64_t rows, int seq, int q_heads, int d) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T* a = dout + row * d;
  const T* o = out + row * d;
  float sum = 0.f;
  for (int c = lane; c < d; c += 32) sum += to_f(a[c]) * to_f(o[c]);
#pragma unroll
  for (int s = 16; s > 0; s /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, s);
  if (lane == 0) {
    const int64_t h = row % q_heads, bi = row / q_heads, i = bi % seq, b = bi / seq;
    const int64_t at = (b * q_heads + h) * seq + i;
    delta[at] = sum;
    lse2[at] = lse[at] * kLog2eBwd;
  }
}

// acc[n] (16 rows x BN cols of the warp) = A[16 rows of sa] . B[BN rows of sb]^T over DP.
template <typename T, int DP, int BN>
__device__ __forceinline__ void mma_abt(float (&acc)[BN / 8][4], const T* sa, const T* sb,
                                        int lane) {
  constexpr int kLd = DP + 8;
#pragma unroll
  for (int n = 0; n < BN / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < DP; kk += 16) {
    uint32_t a[4];
    ldmatrix_x4(a, sa + (lane % 16) * kLd + kk + (lane / 16) * 8);
#pragma unroll
    for (int n = 0; n < BN / 8; n += 2) {
      uint32_t bf[4];
      ldmatrix_x4(bf, sb + (n * 8 + lane % 8 + (lane / 16) * 8) * kLd + kk + ((lane / 8) % 2) * 8);
      mma16816<T>(acc[n], a, bf[0], bf[1]);
      mma16816<T>(acc[n + 1], a, bf[2], bf[3]);
    }
  }
}

// acc[NO / 8] (16 rows x NO cols from column c0) += X (16 x K, in accumulator layout) . sb[K
// rows][c0 ..], X rounded to T as mma A fragments.
template <typename T, int DP, int K, int NO>
__device__ __forceinline__ void mma_xb(float (&acc)[NO / 8][4], const float (&x)[K / 8][4],
                                       const T* sb, int c0, int lane) {
  constexpr int kLd = DP + 8;
#pragma unroll
  for (int kt = 0; kt < K / 16; ++kt) {
    uint32_t a[4];
    a_fragment<T>(a, x, kt);
#pragma unroll
    for (int n = 0; n < NO / 8; n += 2) {
      uint32_t bf[4];
      ldmatrix_x4_trans(bf, sb + (kt * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kLd + c0 + n * 8 +
                                (lane / 16) * 8);
      mma16816<T>(acc[n], a, bf[0], bf[1]);
      mma16816<T>(acc[n + 1], a, bf[2], bf[3]);
    }
  }
}

// How a block stores and multiplies its tiles (the kernels below are written once for both):
// - MmaSync: rows padded to DP + 8 elements (no bank conflicts for ldmatrix); warp w multiplies
//   its own 16 rows with mma.sync. Any head dim up to 256, any GPU.
// - Wgmma: 128-byte-swizzled tiles (attention_wgmma.cuh), DP == d of 64 or 128; the warpgroup
//   (the block's 4 warps) multiplies all 64 rows at once. Hopper (sm_90a) only.
// abt2: acc (the warp's 16 rows of A B^T, A and B tiles of 64 and BN rows over DP columns), two
// independent products (wgmma: both in flight before the wait); xb: acc (16 rows x NO columns
// from c0) += X (the 16 x K rows held in accumulator layout, rounded to T) . B (a tile of K
// rows); xb2: two of those.
template <typename T, int DP>
struct MmaSync {
  static constexpr int tile_elems(int rows) { return rows * (DP + 8); }
  static constexpr size_t kSlack = 0;  // bytes of alignment slack the launch adds
  __device__ static unsigned char* base(unsigned char* smem) { return smem; }
  template <int ROWS>
  __device__ static void load(T* sm, const T* g, int64_t stride, int r0, int limit, int d) {
    load_padded_rows<T, DP, kThreads>(sm, g, stride, r0, ROWS, limit, d);
  }
  __device__ static void published() {}  // after the cp.async wait, before the barrier
  template <int BN>
  __device__ static void abt2(float (&acc1)[BN / 8][4], const T* sa1, const T* sb1,
                              float (&acc2)[BN / 8][4], const T* sa2, const T* sb2, int warp,
                              int lane) {
    mma_abt<T, DP, BN>(acc1, sa1 + warp * 16 * (DP + 8), sb1, lane);
    mma_abt<T, DP, BN>(acc2, sa2 + warp * 16 * (DP + 8), sb2, lane);
  }
  template <int K, int NO>
  __device__ static void xb(float (&acc)[NO / 8][4], const float (&x)[K / 8][4], const T* sb,
                            int c0, int lane) {
    mma_xb<T, DP, K, NO>(acc, x, sb, c0, lane);
  }
  template <int K, int NO>
  __device__ static void xb2(float (&acc1)[NO / 8][4], const float (&x1)[K / 8][4], const T* sb1,
                             float (&acc2)[NO / 8][4], const float (&x2)[K / 8][4], const T* sb2,
                             int c0, int lane) {
    mma_xb<T, DP, K, NO>(acc1, x1, sb1, c0, lane);
    mma_xb<T, DP, K, NO>(acc2, x2, sb2, c0, lane);
  }
};

template <typename T, int DP>
struct Wgmma {
  static_assert(DP == 64 || DP == 128);
  static constexpr int tile_elems(int rows) { return rows * DP; }
  static constexpr size_t kSlack = 1024;
  __device__ static unsigned char* base(unsigned char* smem) { return wg::swizzle_aligned(smem); }
  template <int ROWS>
  __device__ static void load(T* sm, const T* g, int64_t stride, int r0, int limit, int) {
    wg::load_swizzled<T, DP, ROWS, kThreads>(sm, g, stride, r0, limit);
  }
  __device__ static void published() { wg::fence_async_shared(); }
  template <int BN>
  __device__ static void abt2(float (&acc1)[BN / 8][4], const T* sa1, const T* sb1,
                              float (&acc2)[BN / 8][4], const T* sa2, const T* sb2, int, int) {
    // Descriptors built once and stepped (wg::advance).
    const uint64_t a1 = wg::k_major<kTile>(sa1, 0, 0), b1 = wg::k_major<BN>(sb1, 0, 0),
                   a2 = wg::k_major<kTile>(sa2, 0, 0), b2 = wg::k_major<BN>(sb2, 0, 0);
    wg::fence();
#pragma unroll
    for (int kk = 0; kk < DP; kk += 16) {
      wg::mma_ss<BN, T>(acc1, wg::advance(a1, wg::k_major_step<kTile>(kk)),
                        wg::advance(b1, wg::k_major_step<BN>(kk)), kk > 0);
    }
#pragma unroll
    for (int kk = 0; kk < DP; kk += 16) {
      wg::mma_ss<BN, T>(acc2, wg::advance(a2, wg::k_major_step<kTile>(kk)),
                        wg::advance(b2, wg::k_major_step<BN>(kk)), kk > 0);
    }
    wg::commit();
    wg::wait<0>();
    wg::fence_registers(acc1);
    wg::fence_registers(acc2);
  }
  template <int K, int NO>
  __device__ static void xb(float (&acc)[NO / 8][4], const float (&x)[K / 8][4], const T* sb, int,
                            int) {
    static_assert(NO == DP, "a wgmma block owns every column");
    uint32_t a[K / 16][4];
#pragma unroll
    for (int kt = 0; kt < K / 16; ++kt) a_fragment<T>(a[kt], x, kt);
    const uint64_t b = wg::mn_major<K>(sb, 0);
    wg::fence();
#pragma unroll
    for (int kt = 0; kt < K / 16; ++kt)
      wg::mma_rs<DP, T>(acc, a[kt], wg::advance(b, wg::mn_major_step(kt * 16)));
    wg::commit();
    wg::wait<0>();
    wg::fence_registers(acc);
    wg::fence_registers(a);
  }
  template <int K, int NO>
  __device__ static void xb2(float (&acc1)[NO / 8][4], const float (&x1)[K / 8][4], const T* sb1,
                             float (&acc2)[NO / 8][4], const float (&x2)[K / 8][4], const T* sb2,
                             int, int) {
    static_assert(NO == DP, "a wgmma block owns every column");
    uint32_t a1[K / 16][4], a2[K / 16][4];
#pragma unroll
    for (int kt = 0; kt < K / 16; ++kt) {
      a_fragment<T>(a1[kt], x1, kt);
      a_fragment<T>(a2[kt], x2, kt);
    }
    const uint64_t b1 = wg::mn_major<K>(sb1, 0), b2 = wg::mn_major<K>(sb2, 0);
    wg::fence();
#pragma unroll
    for (int kt = 0; kt < K / 16; ++kt)
      wg::mma_rs<DP, T>(acc1, a1[kt], wg::advance(b1, wg::mn_major_step(kt * 16)));
#pragma unroll
    for (int kt = 0; kt < K / 16; ++kt)
      wg::mma_rs<DP, T>(acc2, a2[kt], wg::advance(b2, wg::mn_major_step(kt * 16)));
    wg::commit();
    wg::wait<0>();
    wg::fence_registers(acc1);
    wg::fence_registers(acc2);
    wg::fence_registers(a1);
    wg::fence_registers(a2);
  }
};

// dK, dV for keys [j0, j0 + 64), j0 = 64 bx, of (b, g = by), columns [c0, c0 + NO) with
// b = bz / chunks, c0 = NO * (bz % chunks).
template <typename T, int DP, int NO, int QSTAGES, typename Mma>
__device__ __forceinline__ void dkdv_tile(T* dk, T* dv, const T* q, const T* k, const T* v,
                                          const T* dout, const BackwardArgs& p,
                                          unsigned char* smem_raw, int bx, int by, int bz) {
  constexpr int kChunks = DP / NO, kT = Mma::tile_elems(kTile);
  T* sK = reinterpret_cast<T*>(Mma::base(smem_raw));  // 64 keys
  T* sV = sK + kT;                                    // 64 keys
  T* sQ0 = sV + kT;                                   // [QSTAGES] query tiles
  T* sdO0 = sQ0 + QSTAGES * kT;                       // [QSTAGES]
  __shared__ float s_lse2[QSTAGES][kTile];            // lse in log2 units, by query tile buffer
  __shared__ float s_delta[QSTAGES][kTile];           // D_i
  __shared__ int s_lo[kTile];                         // first visible key; INT_MAX past T

  const int64_t b = bz / kChunks;
  const int c0 = NO * (bz % kChunks);
  const int g = by, group = p.q_heads / p.kv_heads;
  const int j0 = bx * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gid = lane / 4, tig = lane % 4;
  const int64_t q_stride = static_cast<int64_t>(p.q_heads) * p.d;
  const int64_t kv_stride = static_cast<int64_t>(p.kv_heads) * p.d;
  const int64_t kv_off = b * p.seq * kv_stride + static_cast<int64_t>(g) * p.d;

  Mma::template load<kTile>(sK, k + kv_off, kv_stride, j0, p.seq, p.d);
  Mma::template load<kTile>(sV, v + kv_off, kv_stride, j0, p.seq, p.d);
  cp_async_commit();

  // This thread's keys: rows gid and gid + 8 of the warp's 16.
  const int key_a = j0 + warp * 16 + gid, key_b = key_a + 8;
  float dk_acc[NO / 8][4], dv_acc[NO / 8][4];
#pragma unroll
  for (int n = 0; n < NO / 8; ++n) {
    dk_acc[n][0] = dk_acc[n][1] = dk_acc[n][2] = dk_acc[n][3] = 0.f;
    dv_acc[n][0] = dv_acc[n][1] = dv_acc[n][2] = dv_acc[n][3] = 0.f;
  }
  // Queries that can see a key of the tile: i >= j0, and within the window of the last key.
  const int i_begin = (j0 / kTile) * kTile;
  int i_end = p.seq;
  if (p.window > 0) i_end = static_cast<int>(min64(p.seq, j0 + kTile - 1 + p.window));
  // Trips t over (query head h, query tile i0), heads outer: h = g group + t / tiles.
  const int tiles = (i_end - i_begin + kTile - 1) / kTile, trips = group * tiles;
  auto q_tile_offset = [&](int t) {
    return b * p.seq * q_stride + static_cast<int64_t>(g * group + t / tiles) * p.d;
  };
  // The tile's queries, their dO and their row terms (zero past T).
  auto load_q_tile = [&](int t, int stage) {
    const int i0 = i_begin + (t % tiles) * kTile;
    const int64_t q_off = q_tile_offset(t);
    Mma::template load<kTile>(sQ0 + stage * kT, q + q_off, q_stride, i0, p.seq, p.d);
    Mma::template load<kTile>(sdO0 + stage * kT, dout + q_off, q_stride, i0, p.seq, p.d);
    if (threadIdx.x < kTile) {
      const int i = i0 + threadIdx.x;
      const bool in = i < p.seq;
      const int64_t at = (b * p.q_heads + g * group + t / tiles) * p.seq + (in ? i : 0);
      cp_async4(&s_lse2[stage][threadIdx.x], p.lse2 + at, in);
      cp_async4(&s_delta[stage][threadIdx.x], p.delta + at, in);
    }
  };
  if constexpr (QSTAGES == 2) {
    if (trips > 0) load_q_tile(0, 0);
    cp_async_commit();
  }

  for (int t = 0; t < trips; ++t) {
    const int stage = QSTAGES == 2 ? t & 1 : 0;
    const int i0 = i_begin + (t % tiles) * kTile;
    T* sQ = sQ0 + stage * kT;
    T* sdO = sdO0 + stage * kT;
    // The previous trip ended in a barrier: its buffers and s_lo are free.
    if constexpr (QSTAGES == 2) {
      if (t + 1 < trips) load_q_tile(t + 1, stage ^ 1);  // lands while this tile is computed
    } else {
      load_q_tile(t, 0);
    }
    cp_async_commit();
    bool any = false, whole = true;
    if (threadIdx.x < kTile) {
      const int i = i0 + threadIdx.x;
      const bool in = i < p.seq;
      const int lo = in ? first_key_of(p, b, i) : INT_MAX;
      s_lo[threadIdx.x] = lo;
      any = in && i >= j0 && lo <= min(i, j0 + kTile - 1);
      whole = in && lo <= j0 && i >= j0 + kTile - 1;
    }
    if constexpr (QSTAGES == 2) {
      cp_async_wait_all_but_one();
    } else {
      cp_async_wait_all();
    }
    Mma::published();
    whole = __syncthreads_and(whole);
    if (__syncthreads_or(any)) {  // uniform; false when no key of the tile is seen
      float s[kTile / 8][4], dp[kTile / 8][4];
      Mma::template abt2<kTile>(s, sK, sQ, dp, sV, sdO, warp, lane);
      // P^T and dS^T in place: s[n][e] is (key_a, query n*8 + 2 tig + e), s[n][2 + e] key_b's.
#pragma unroll
      for (int n = 0; n < kTile / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = n * 8 + 2 * tig + e, i = i0 + c;
          const float l2 = s_lse2[stage][c], dl = s_delta[stage][c];
          float pa = exp2f(s[n][e] * p.scale_log2 - l2);
          float pb = exp2f(s[n][2 + e] * p.scale_log2 - l2);
          if (!whole) {
            const int lo = s_lo[c];
            if (!(key_a <= i && key_a >= lo)) pa = 0.f;
            if (!(key_b <= i && key_b >= lo)) pb = 0.f;
          }
          s[n][e] = pa;
          s[n][2 + e] = pb;
          dp[n][e] = pa * (dp[n][e] - dl);
          dp[n][2 + e] = pb * (dp[n][2 + e] - dl);
        }
      }
      Mma::template xb2<kTile, NO>(dv_acc, s, sdO, dk_acc, dp, sQ, c0, lane);
    }
    __syncthreads();  // every warp is done with this trip's buffers
  }

  T* dka = dk + kv_off + static_cast<int64_t>(key_a) * kv_stride;
  T* dva = dv + kv_off + static_cast<int64_t>(key_a) * kv_stride;
  const int64_t to_b = 8 * kv_stride;
#pragma unroll
  for (int n = 0; n < NO / 8; ++n) {
    const int col = c0 + n * 8 + 2 * tig;
    if (col >= p.d) continue;
    if (key_a < p.seq) {
      *reinterpret_cast<uint32_t*>(dka + col) =
          pack2<T>(dk_acc[n][0] * p.scale, dk_acc[n][1] * p.scale);
      *reinterpret_cast<uint32_t*>(dva + col) = pack2<T>(dv_acc[n][0], dv_acc[n][1]);
    }
    if (key_b < p.seq) {
      *reinterpret_cast<uint32_t*>(dka + to_b + col) =
          pack2<T>(dk_acc[n][2] * p.scale, dk_acc[n][3] * p.scale);
      *reinterpret_cast<uint32_t*>(dva + to_b + col) = pack2<T>(dv_acc[n][2], dv_acc[n][3]);
    }
  }
}

// dQ for queries [i0, i0 + 64), i0 = 64 bx, of (b = bz, h = by), key tiles of BN, K and V in
// two buffers (the next tile loads while this one is computed).
template <typename T, int DP, int BN, typename Mma>
__device__ __forceinline__ void dq_tile(T* dq, const T* q, const T* k, const T* v, const T* dout,
                                        const BackwardArgs& p, unsigned char* smem_raw, int bx,
                                        int by, int bz) {
  constexpr int kT = Mma::tile_elems(kTile), kB = Mma::tile_elems(BN);
  T* sQ = reinterpret_cast<T*>(Mma::base(smem_raw));  // 64 queries
  T* sdO = sQ + kT;                                   // 64 queries
  T* sK0 = sdO + kT;                                  // [2] BN keys
  T* sV0 = sK0 + 2 * kB;                              // [2] BN keys
  __shared__ int tile_lo;

  const int64_t b = bz;
  const int h = by, g = h / (p.q_heads / p.kv_heads);
  const int i0 = bx * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gid = lane / 4, tig = lane % 4;
  const int last_row = min(p.seq, i0 + kTile) - 1;
  const int64_t q_stride = static_cast<int64_t>(p.q_heads) * p.d;
  const int64_t kv_stride = static_cast<int64_t>(p.kv_heads) * p.d;
  const int64_t q_off = b * p.seq * q_stride + static_cast<int64_t>(h) * p.d;
  const int64_t kv_off = b * p.seq * kv_stride + static_cast<int64_t>(g) * p.d;
  const int64_t row_off = (b * p.q_heads + h) * p.seq;

  if (threadIdx.x == 0) {
    int lo = first_key_of(p, b, i0);
    for (int i = i0 + 1; i <= last_row && p.key_start; ++i) lo = min(lo, first_key_of(p, b, i));
    tile_lo = lo;
  }
  Mma::template load<kTile>(sQ, q + q_off, q_stride, i0, p.seq, p.d);
  Mma::template load<kTile>(sdO, dout + q_off, q_stride, i0, p.seq, p.d);
  __syncthreads();
  const int j_begin = tile_lo, j_end = last_row + 1;
  Mma::template load<BN>(sK0, k + kv_off, kv_stride, j_begin, j_end, p.d);
  Mma::template load<BN>(sV0, v + kv_off, kv_stride, j_begin, j_end, p.d);
  cp_async_commit();

  const int row_a = i0 + warp * 16 + gid, row_b = row_a + 8;
  const bool in_a = row_a < p.seq, in_b = row_b < p.seq;
  const int lo_a = in_a ? first_key_of(p, b, row_a) : INT_MAX;
  const int lo_b = in_b ? first_key_of(p, b, row_b) : INT_MAX;
  const float l2_a = in_a ? p.lse2[row_off + row_a] : 0.f;
  const float l2_b = in_b ? p.lse2[row_off + row_b] : 0.f;
  const float d_a = in_a ? p.delta[row_off + row_a] : 0.f;
  const float d_b = in_b ? p.delta[row_off + row_b] : 0.f;

  float dq_acc[DP / 8][4];
#pragma unroll
  for (int n = 0; n < DP / 8; ++n) dq_acc[n][0] = dq_acc[n][1] = dq_acc[n][2] = dq_acc[n][3] = 0.f;

  int stage = 0;
  for (int j0 = j_begin; j0 < j_end; j0 += BN, stage ^= 1) {
    T* sK = sK0 + stage * kB;
    T* sV = sV0 + stage * kB;
    // The buffers of the next tile were last read in the previous trip, which ended in a barrier.
    if (j0 + BN < j_end) {
      Mma::template load<BN>(sK0 + (stage ^ 1) * kB, k + kv_off, kv_stride, j0 + BN, j_end, p.d);
      Mma::template load<BN>(sV0 + (stage ^ 1) * kB, v + kv_off, kv_stride, j0 + BN, j_end, p.d);
    }
    cp_async_commit();
    cp_async_wait_all_but_one();
    Mma::published();
    __syncthreads();

    float s[BN / 8][4], dp[BN / 8][4];
    Mma::template abt2<BN>(s, sQ, sK, dp, sdO, sV, warp, lane);
    const bool whole = __all_sync(
        0xffffffffu, in_a && in_b && j0 >= max(lo_a, lo_b) && j0 + BN - 1 <= min(row_a, row_b));
#pragma unroll
    for (int n = 0; n < BN / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float pa = exp2f(s[n][e] * p.scale_log2 - l2_a);
        float pb = exp2f(s[n][2 + e] * p.scale_log2 - l2_b);
        if (!whole) {
          const int j = j0 + n * 8 + 2 * tig + e;
          if (!(j <= row_a && j >= lo_a)) pa = 0.f;
          if (!(j <= row_b && j >= lo_b)) pb = 0.f;
        }
        s[n][e] = pa * (dp[n][e] - d_a);
        s[n][2 + e] = pb * (dp[n][2 + e] - d_b);
      }
    }
    Mma::template xb<BN, DP>(dq_acc, s, sK, 0, lane);
    __syncthreads();  // every warp is done with this tile's buffers
  }

  T* qa = dq + q_off + static_cast<int64_t>(row_a) * q_stride;
  T* qb = qa + 8 * q_stride;
#pragma unroll
  for (int n = 0; n < DP / 8; ++n) {
    const int col = n * 8 + 2 * tig;
    if (col >= p.d) continue;
    if (in_a)
      *reinterpret_cast<uint32_t*>(qa + col) =
          pack2<T>(dq_acc[n][0] * p.scale, dq_acc[n][1] * p.scale);
    if (in_b)
      *reinterpret_cast<uint32_t*>(qb + col) =
          pack2<T>(dq_acc[n][2] * p.scale, dq_acc[n][3] * p.scale);
  }
}

template <typename T, int DP, int NO, int QSTAGES>
__global__ void __launch_bounds__(kThreads)
    flash_backward_dkdv(T* dk, T* dv, const T* q, const T* k, const T* v, const T* dout,
                        BackwardArgs p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  dkdv_tile<T, DP, NO, QSTAGES, MmaSync<T, DP>>(dk, dv, q, k, v, dout, p, smem_raw, blockIdx.x,
                                                blockIdx.y, blockIdx.z);
}

template <typename T, int DP, int BN>
__global__ void __launch_bounds__(kThreads)
    flash_backward_dq(T* dq, const T* q, const T* k, const T* v, const T* dout, BackwardArgs p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  dq_tile<T, DP, BN, MmaSync<T, DP>>(dq, q, k, v, dout, p, smem_raw, blockIdx.x, blockIdx.y,
                                     blockIdx.z);
}

// Both in one launch: blocks [0, dkdv_blocks) are dK/dV tiles (x fastest over key tiles), the
// rest dQ tiles. The dQ blocks fill the SMs while the long dK/dV blocks of the first key tiles
// finish, instead of waiting for a second launch behind the first one's tail.
template <typename T, int DP, int NO, int BN, int QSTAGES, typename Mma>
__global__ void __launch_bounds__(kThreads, DP == 64 ? 3 : 1)
    flash_backward_fused(T* dq, T* dk, T* dv, const T* q, const T* k, const T* v, const T* dout,
                         BackwardArgs p, int dkdv_blocks) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int tiles = (p.seq + kTile - 1) / kTile;
  const int id = blockIdx.x;
  if (id < dkdv_blocks) {
    dkdv_tile<T, DP, NO, QSTAGES, Mma>(dk, dv, q, k, v, dout, p, smem_raw, id % tiles,
                                       (id / tiles) % p.kv_heads, id / (tiles * p.kv_heads));
  } else {
    const int e = id - dkdv_blocks;
    dq_tile<T, DP, BN, Mma>(dq, q, k, v, dout, p, smem_raw, e % tiles, (e / tiles) % p.q_heads,
                            e / (tiles * p.q_heads));
  }
}

// ---- the simple kernels: one warp per row, lanes across the head dim (f32, and the lab's
// reference for the tensor-core kernels) ----
constexpr int kMaxPerLane = 256 / 32;

// A [D] row into registers: lane holds elements lane, lane + 32, ...
template <typename T>
__device__ __forceinline__ void load_row(float (&r)[kMaxPerLane], const T* g, int d, int lane) {
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) {
    const int c = lane + 32 * t;
    r[t] = c < d ? to_f(g[c]) : 0.f;
  }
}

template <typename T>
__device__ __forceinline__ float dot_row(const float (&r)[kMaxPerLane], const T* g, int d,
                                         int lane) {
  float sum = 0.f;
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) {
    const int c = lane + 32 * t;
    if (c < d) sum += r[t] * to_f(g[c]);
  }
#pragma unroll
  for (int s = 16; s > 0; s /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, s);
  return sum;
}

// Forward with lse, warp per (b, h, i); any Tq <= Tk (query i at key position Tk - Tq + i).
template <typename T>
__global__ void attention_forward_lse_rows(T* out, float* lse, const T* q, const T* k, const T* v,
                                           const int64_t* key_start, DenseShape s, float scale,
                                           int64_t window) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= s.batch * s.q_heads * s.q_seq) return;
  const int64_t i = row % s.q_seq, bh = row / s.q_seq, h = bh % s.q_heads, b = bh / s.q_heads;
  const int64_t g = h / (s.q_heads / s.kv_heads), d = s.head_dim;
  const int64_t a = s.kv_seq - s.q_seq + i;
  int64_t lo = window > 0 ? max64(0, a - window + 1) : 0;
  if (key_start) lo = max64(lo, key_start[b * s.q_seq + i]);
  const int64_t q_row = ((b * s.q_seq + i) * s.q_heads + h) * d;
  float qr[kMaxPerLane], acc[kMaxPerLane] = {};
  load_row(qr, q + q_row, static_cast<int>(d), lane);
  float m = -INFINITY, l = 0.f;
  for (int64_t j = lo; j <= a; ++j) {
    const int64_t kv_row = ((b * s.kv_seq + j) * s.kv_heads + g) * d;
    const float x = dot_row(qr, k + kv_row, static_cast<int>(d), lane) * scale;
    const float mn = fmaxf(m, x), corr = expf(m - mn), e = expf(x - mn);
    l = l * corr + e;
#pragma unroll
    for (int t = 0; t < kMaxPerLane; ++t) {
      const int c = lane + 32 * t;
      acc[t] = acc[t] * corr + (c < d ? e * to_f(v[kv_row + c]) : 0.f);
    }
    m = mn;
  }
  const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) {
    const int c = lane + 32 * t;
    if (c < d) out[q_row + c] = from_f<T>(acc[t] * inv);
  }
  if (lane == 0) lse[row] = l > 0.f ? m + logf(l) : -INFINITY;
}

// dQ, warp per (b, h, i), Tq == Tk.
template <typename T>
__global__ void attention_backward_dq_rows(T* dq, const T* q, const T* k, const T* v, const T* dout,
                                           BackwardArgs p, int64_t batch) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= batch * p.q_heads * p.seq) return;
  const int i = static_cast<int>(row % p.seq);
  const int64_t bh = row / p.seq, h = bh % p.q_heads, b = bh / p.q_heads;
  const int64_t g = h / (p.q_heads / p.kv_heads);
  const int d = p.d;
  const int64_t q_row = ((b * p.seq + i) * p.q_heads + h) * d;
  const float lse = p.lse[row], delta = p.delta[row];
  float qr[kMaxPerLane], dor[kMaxPerLane], acc[kMaxPerLane] = {};
  load_row(qr, q + q_row, d, lane);
  load_row(dor, dout + q_row, d, lane);
  for (int j = first_key_of(p, b, i); j <= i; ++j) {
    const int64_t kv_row = ((b * p.seq + j) * p.kv_heads + g) * d;
    const float pr = expf(dot_row(qr, k + kv_row, d, lane) * p.scale - lse);
    const float ds = pr * (dot_row(dor, v + kv_row, d, lane) - delta);
#pragma unroll
    for (int t = 0; t < kMaxPerLane; ++t) {
      const int c = lane + 32 * t;
      if (c < d) acc[t] += ds * to_f(k[kv_row + c]);
    }
  }
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) {
    const int c = lane + 32 * t;
    if (c < d) dq[q_row + c] = from_f<T>(acc[t] * p.scale);
  }
}

// dK, dV, warp per (b, g, j): over the group's query heads, then the queries that see key j.
template <typename T>
__global__ void attention_backward_dkdv_rows(T* dk, T* dv, const T* q, const T* k, const T* v,
                                             const T* dout, BackwardArgs p, int64_t batch) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= batch * p.kv_heads * p.seq) return;
  const int j = static_cast<int>(row % p.seq);
  const int64_t bg = row / p.seq, g = bg % p.kv_heads, b = bg / p.kv_heads;
  const int group = p.q_heads / p.kv_heads, d = p.d;
  const int64_t kv_row = ((b * p.seq + j) * p.kv_heads + g) * d;
  float kr[kMaxPerLane], vr[kMaxPerLane], dk_acc[kMaxPerLane] = {}, dv_acc[kMaxPerLane] = {};
  load_row(kr, k + kv_row, d, lane);
  load_row(vr, v + kv_row, d, lane);
  const int i_end = p.window > 0 ? static_cast<int>(min64(p.seq, j + p.window)) : p.seq;
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    const int64_t row_off = (b * p.q_heads + h) * p.seq;
    for (int i = j; i < i_end; ++i) {
      if (first_key_of(p, b, i) > j) continue;
      const int64_t q_row = ((b * p.seq + i) * p.q_heads + h) * d;
      const float pr = expf(dot_row(kr, q + q_row, d, lane) * p.scale - p.lse[row_off + i]);
      const float ds = pr * (dot_row(vr, dout + q_row, d, lane) - p.delta[row_off + i]);
#pragma unroll
      for (int t = 0; t < kMaxPerLane; ++t) {
        const int c = lane + 32 * t;
        if (c < d) {
          dv_acc[t] += pr * to_f(dout[q_row + c]);
          dk_acc[t] += ds * to_f(q[q_row + c]);
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) {
    const int c = lane + 32 * t;
    if (c < d) {
      dk[kv_row + c] = from_f<T>(dk_acc[t] * p.scale);
      dv[kv_row + c] = from_f<T>(dv_acc[t]);
    }
  }
}

unsigned rows_grid(int64_t rows) {
  return static_cast<unsigned>((rows * 32 + kThreads - 1) / kThreads);
}

template <typename T, int DP, int NO, int QSTAGES = kQStages>
void launch_dkdv(T* dk, T* dv, const T* q, const T* k, const T* v, const T* dout,
                 const DenseShape& s, const BackwardArgs& p) {
  const size_t smem = static_cast<size_t>((2 + 2 * QSTAGES) * kTile * (DP + 8)) * sizeof(T);
  auto kernel = flash_backward_dkdv<T, DP, NO, QSTAGES>;
  TUNE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>((s.kv_seq + kTile - 1) / kTile),
                  static_cast<unsigned>(s.kv_heads), static_cast<unsigned>(s.batch * (DP / NO)));
  kernel<<<grid, kThreads, smem, cudaStreamPerThread>>>(dk, dv, q, k, v, dout, p);
  TUNE_CUDA_CHECK(cudaGetLastError());
}

template <typename T, int DP, int BN>
void launch_dq(T* dq, const T* q, const T* k, const T* v, const T* dout, const DenseShape& s,
               const BackwardArgs& p) {
  const size_t smem = static_cast<size_t>((2 * kTile + 4 * BN) * (DP + 8)) * sizeof(T);
  auto kernel = flash_backward_dq<T, DP, BN>;
  TUNE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>((s.q_seq + kTile - 1) / kTile),
                  static_cast<unsigned>(s.q_heads), static_cast<unsigned>(s.batch));
  kernel<<<grid, kThreads, smem, cudaStreamPerThread>>>(dq, q, k, v, dout, p);
  TUNE_CUDA_CHECK(cudaGetLastError());
}

// Two launches (dK/dV, then dQ): the lab's comparison for the fused launch.
template <typename T, int DP, int NO, int BN, int QSTAGES = kQStages>
void flash_backward_two_launches(T* dq, T* dk, T* dv, const T* q, const T* k, const T* v,
                                 const T* dout, const DenseShape& s, const BackwardArgs& p) {
  launch_dkdv<T, DP, NO, QSTAGES>(dk, dv, q, k, v, dout, s, p);
  launch_dq<T, DP, BN>(dq, q, k, v, dout, s, p);
}

template <typename T, int DP, int NO, int BN, int QSTAGES = kQStages, typename Mma = MmaSync<T, DP>>
void flash_backward_at(T* dq, T* dk, T* dv, const T* q, const T* k, const T* v, const T* dout,
                       const DenseShape& s, const BackwardArgs& p) {
  const size_t dkdv_smem = static_cast<size_t>(Mma::tile_elems((2 + 2 * QSTAGES) * kTile));
  const size_t dq_smem = static_cast<size_t>(Mma::tile_elems(2 * kTile + 4 * BN));
  const size_t smem = std::max(dkdv_smem, dq_smem) * sizeof(T) + Mma::kSlack;
  auto kernel = flash_backward_fused<T, DP, NO, BN, QSTAGES, Mma>;
  TUNE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  const int64_t tiles = (s.q_seq + kTile - 1) / kTile;
  const int64_t dkdv_blocks = tiles * s.kv_heads * s.batch * (DP / NO);
  const int64_t blocks = dkdv_blocks + tiles * s.q_heads * s.batch;
  kernel<<<static_cast<unsigned>(blocks), kThreads, smem, cudaStreamPerThread>>>(
      dq, dk, dv, q, k, v, dout, p, static_cast<int>(dkdv_blocks));
  TUNE_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void flash_backward(T* dq, T* dk, T* dv, const T* q, const T* k, const T* v, const T* dout,
                    const DenseShape& s, const BackwardArgs& p) {
  const int64_t d = s.head_dim;
  if ((d == 64 || d == 128) && wg::wgmma_device()) {
    if (d == 64) {
      flash_backward_at<T, 64, 64, 64, kQStages, Wgmma<T, 64>>(dq, dk, dv, q, k, v, dout, s, p);
    } else {
      flash_backward_at<T, 128, 128, 64, kQStages, Wgmma<T, 128>>(dq, dk, dv, q, k, v, dout, s, p);
    }
  } else if (d <= 64) {
    flash_backward_at<T, 64, 64, 64>(dq, dk, dv, q, k, v, dout, s, p);
  } else if (d <= 80) {
    flash_backward_at<T, 80, 80, 64>(dq, dk, dv, q, k, v, dout, s, p);
  } else if (d <= 96) {
    flash_backward_at<T, 96, 96, 64>(dq, dk, dv, q, k, v, dout, s, p);
  } else if (d <= 128) {
    flash_backward_at<T, 128, 128, 64>(dq, dk, dv, q, k, v, dout, s, p);
  } else {
    flash_backward_at<T, 256, 128, 32>(dq, dk, dv, q, k, v, dout, s, p);
  }
}

// The simple kernels for any storage type (f32 in the engine; bf16 in the lab as a reference).
template <typename T>
void rows_backward(T* dq, T* dk, T* dv, const T* q, const T* k, const T* v, const T* dout,
                   const DenseShape& s, const BackwardArgs& p) {
  attention_backward_dq_rows<T>
      <<<rows_grid(s.batch * s.q_heads * s.q_seq), kThreads, 0, cudaStreamPerThread>>>(
          dq, q, k, v, dout, p, s.batch);
  TUNE_CUDA_CHECK(cudaGetLastError());
  attention_backward_dkdv_rows<T>
      <<<rows_grid(s.batch * s.kv_heads * s.kv_seq), kThreads, 0, cudaStreamPerThread>>>(
          dk, dv, q, k, v, dout, p, s.batch);
  TUNE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void attention_forward_lse_f32(void* out, float* lse, const void* q, const void* k, const void* v,
                               const int64_t* key_start, const DenseShape& s, float scale,
                               int64_t window) {
  attention_forward_lse_rows<float>
      <<<rows_grid(s.batch * s.q_heads * s.q_seq), kThreads, 0, cudaStreamPerThread>>>(
          static_cast<float*>(out), lse, static_cast<const float*>(q), static_cast<const float*>(k),
          static_cast<const float*>(v), key_start, s, scale, window);
  TUNE_CUDA_CHECK(cudaGetLastError());
}

void attention_backward_lse(DType dtype, void* dq, void* dk, void* dv, const void* dout,
                            const void* q, const void* k, const void* v, const void* out,
                            const float* lse, const int64_t* key_start, const DenseShape& s,
                            float scale, int64_t window) {
  if (s.batch == 0 || s.q_seq == 0) return;
  const int64_t rows = s.batch * s.q_seq * s.q_heads;
  float* delta = nullptr;  // and lse2 after it
  TUNE_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&delta), 2 * rows * sizeof(float),
                                  cudaStreamPerThread));
  const BackwardArgs p{key_start,
                       lse,
                       delta,
                       delta + rows,
                       static_cast<int>(s.q_seq),
                       static_cast<int>(s.q_heads),
                       static_cast<int>(s.kv_heads),
                       static_cast<int>(s.head_dim),
                       scale,
                       scale * kLog2eBwd,
                       window};
  dispatch_storage(dtype, [&](auto tag) {
    using T = decltype(tag);
    attention_row_terms<T><<<rows_grid(rows), kThreads, 0, cudaStreamPerThread>>>(
        delta, delta + rows, lse, static_cast<const T*>(dout), static_cast<const T*>(out), rows,
        static_cast<int>(s.q_seq), static_cast<int>(s.q_heads), static_cast<int>(s.head_dim));
    TUNE_CUDA_CHECK(cudaGetLastError());
    T* dq_t = static_cast<T*>(dq);
    T* dk_t = static_cast<T*>(dk);
    T* dv_t = static_cast<T*>(dv);
    const T* q_t = static_cast<const T*>(q);
    const T* k_t = static_cast<const T*>(k);
    const T* v_t = static_cast<const T*>(v);
    const T* do_t = static_cast<const T*>(dout);
    if constexpr (std::is_same_v<T, float>) {
      rows_backward<T>(dq_t, dk_t, dv_t, q_t, k_t, v_t, do_t, s, p);
    } else {
      flash_backward<T>(dq_t, dk_t, dv_t, q_t, k_t, v_t, do_t, s, p);
    }
  });
  TUNE_CUDA_CHECK(cudaFreeAsync(delta, cudaStreamPerThread));
}

}  // namespace tune::cuda
