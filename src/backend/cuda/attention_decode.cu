// Attention for few queries against many keys, flash-decoding style; measured in
// dev/kernels/attention_decode.cu. Serves ops::attention_decode (paged keys) and
// ops::attention_forward when queries are few or f32 (dense keys). Design notes:
// - A query "unit" is one sequence (paged) or one (batch, query row) (dense). Grid: x = unit,
//   y = (kv head, chunk of HPB <= 4 of its query heads), z = split of the unit's visible keys.
//   Each block reads each key and value row once for all HPB query heads of its kv head (GQA
//   without repeating K/V; MQA's 32 heads become 8 chunks that re-read K/V mostly from L2).
// - Inside a block (4 warps), a group of LANES lanes owns one key at a time: lane `sub` holds
//   elements [8 sub, 8 sub + 8) of the head dim (16-byte loads for bf16), the dot product is a
//   shuffle reduction inside the group, and each group keeps its own online softmax (running
//   max m, sum l, accumulator acc[HPB][8], in log2 units) over the keys it visits. Groups, then
//   warps (shared memory), merge at the end.
// - Splits: the visible keys [lo, hi) of a unit are cut into `splits` equal ranges (computed on
//   the device from the actual length, so short sequences are not unbalanced by the longest).
//   With one split the block writes out; otherwise it writes its normalized partial output and
//   log-sum-exp to the workspace, and a second kernel merges the splits. `splits` is chosen on
//   the host from shapes only (graph capture replays it).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cuda/attention_kernels.h"
#include "backend/cuda/embedding_common.cuh"

namespace tune::cuda {

namespace {

constexpr int kWarps = 4;
// Keys each lane group loads per trip, and query heads per block (at most 4): the fastest
// settings in dev/kernels/attention_decode.cu on the H100 (one key per trip for plain multi-head
// attention, two with GQA; 8 heads per block or 4 keys per trip ran slower).
template <int HPB>
constexpr int kKeysPerTrip = HPB == 1 ? 1 : 2;
constexpr float kLog2e = 1.4426950408889634f;

// Where the keys of a unit are and which of them it sees.
struct PagedKeys {
  const int32_t* block_table;
  const int32_t* seq_lens;
  int64_t page_size, max_pages, kv_heads, window;
  __device__ void range(int64_t u, int64_t* lo, int64_t* hi) const {
    const int64_t len = min64(static_cast<int64_t>(seq_lens[u]), max_pages * page_size);
    *hi = len;
    *lo = window > 0 ? max64(0, len - window) : 0;
  }
  // Row index (in units of head_dim elements) of key j, kv head g.
  __device__ int64_t row(int64_t u, int64_t j, int64_t g) const {
    const int64_t page = block_table[u * max_pages + j / page_size];
    return (page * page_size + j % page_size) * kv_heads + g;
  }
};

struct DenseKeys {
  const int64_t* key_start;
  int64_t q_seq, kv_seq, kv_heads, window;
  __device__ void range(int64_t u, int64_t* lo, int64_t* hi) const {
    const int64_t i = u % q_seq, a = kv_seq - q_seq + i;
    int64_t l = window > 0 ? max64(0, a - window + 1) : 0;
    if (key_start) l = max64(l, key_start[u]);
    *lo = l;
    *hi = a + 1;
  }
  __device__ int64_t row(int64_t u, int64_t j, int64_t g) const {
    return ((u / q_seq) * kv_seq + j) * kv_heads + g;
  }
};

// 8 elements from a 16-byte aligned address (two 16-byte loads for f32), as f32.
template <typename T>
__device__ __forceinline__ void load8(const T* p, float (&x)[8]) {
  if constexpr (sizeof(T) == 4) {
    const float4 a = reinterpret_cast<const float4*>(p)[0];
    const float4 b = reinterpret_cast<const float4*>(p)[1];
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
  } else {
    const Pack<T, 8> v = *reinterpret_cast<const Pack<T, 8>*>(p);
#pragma unroll
    for (int e = 0; e < 8; ++e) x[e] = to_f(v.v[e]);
  }
}

// The factor 2^(m - m_new) that rescales a running sum kept against max m to max m_new; 0 when
// nothing was summed yet (m = -inf), also when m_new is -inf too (where m - m_new is NaN).
__device__ __forceinline__ float rescale(float m, float m_new) {
  return m == -INFINITY ? 0.f : exp2f(m - m_new);
}

// out [units, Hq, D]; partial o [units, Hq, splits, D] and lse [units, Hq, splits] (log2 units)
// when splits > 1.
template <typename T, int LANES, int HPB, int KPT, typename Keys>
__global__ void __launch_bounds__(kWarps * 32)
    attention_split_keys(T* out, float* part_o, float* part_lse, const T* q, const T* k, const T* v,
                         Keys keys, int q_heads, int kv_heads, int d, float scale_log2,
                         int splits) {
  constexpr int kGroups = 32 / LANES;  // keys in flight per warp
  const int64_t u = blockIdx.x;
  const int chunks = q_heads / kv_heads / HPB;
  const int g = blockIdx.y / chunks, h0 = g * (q_heads / kv_heads) + (blockIdx.y % chunks) * HPB;
  const int split = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int grp = lane / LANES, sub = lane % LANES;
  const bool active = sub * 8 < d;

  int64_t lo, hi;
  keys.range(u, &lo, &hi);
  const int64_t per = (hi - lo + splits - 1) / splits;
  const int64_t k0 = lo + split * per, k1 = min64(hi, k0 + per);

  float qv[HPB][8], acc[HPB][8], m[HPB], l[HPB];
#pragma unroll
  for (int h = 0; h < HPB; ++h) {
    if (active) {
      load8(q + (u * q_heads + h0 + h) * d + sub * 8, qv[h]);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) qv[h][e] = 0.f;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      qv[h][e] *= scale_log2;
      acc[h][e] = 0.f;
    }
    m[h] = -INFINITY;
    l[h] = 0.f;
  }

  // Every lane of a warp takes the same trips (the shuffles below need the whole warp); a lane
  // whose key is past the range loads nothing and adds nothing. Each trip loads KPT keys before
  // using any (memory parallelism) and rescales the running sums once for all of them.
  const int64_t stride = kWarps * kGroups;
  for (int64_t jw = k0 + warp * kGroups; jw < k1; jw += KPT * stride) {
    bool valid[KPT];
    float kx[KPT][8], vx[KPT][8];
#pragma unroll
    for (int t = 0; t < KPT; ++t) {
      const int64_t j = jw + grp + t * stride;
      valid[t] = j < k1;
      if (active && valid[t]) {
        const int64_t r = keys.row(u, j, g);
        load8(k + r * d + sub * 8, kx[t]);
        load8(v + r * d + sub * 8, vx[t]);
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) kx[t][e] = vx[t][e] = 0.f;
      }
    }
#pragma unroll
    for (int h = 0; h < HPB; ++h) {
      float s[KPT];
      float mn = m[h];
#pragma unroll
      for (int t = 0; t < KPT; ++t) {
        s[t] = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) s[t] = fmaf(qv[h][e], kx[t][e], s[t]);
#pragma unroll
        for (int o = LANES / 2; o > 0; o /= 2) s[t] += __shfl_xor_sync(0xffffffffu, s[t], o);
        if (!valid[t]) s[t] = -INFINITY;
        mn = fmaxf(mn, s[t]);
      }
      if (mn == -INFINITY) continue;  // no key yet for this group
      const float corr = rescale(m[h], mn);
      m[h] = mn;
      float psum = 0.f;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[h][e] *= corr;
#pragma unroll
      for (int t = 0; t < KPT; ++t) {
        const float p = exp2f(s[t] - mn);  // 0 for an invalid key
        psum += p;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[h][e] = fmaf(p, vx[t][e], acc[h][e]);
      }
      l[h] = l[h] * corr + psum;
    }
  }

  // Merge the groups of the warp (lanes with the same `sub`).
#pragma unroll
  for (int o = LANES; o < 32; o *= 2) {
#pragma unroll
    for (int h = 0; h < HPB; ++h) {
      const float mo = __shfl_xor_sync(0xffffffffu, m[h], o);
      const float lo2 = __shfl_xor_sync(0xffffffffu, l[h], o);
      const float mn = fmaxf(m[h], mo);
      const float a = rescale(m[h], mn), b = rescale(mo, mn);
      l[h] = l[h] * a + lo2 * b;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float ao = __shfl_xor_sync(0xffffffffu, acc[h][e], o);
        acc[h][e] = acc[h][e] * a + ao * b;
      }
      m[h] = mn;
    }
  }

  // Merge the warps through shared memory: sm_acc [kWarps][HPB][d], sm_m/sm_l [kWarps][HPB].
  extern __shared__ float smem[];
  float* sm_acc = smem;
  float* sm_m = smem + kWarps * HPB * d;
  float* sm_l = sm_m + kWarps * HPB;
  if (grp == 0) {
#pragma unroll
    for (int h = 0; h < HPB; ++h) {
      if (active) {
#pragma unroll
        for (int e = 0; e < 8; ++e) sm_acc[(warp * HPB + h) * d + sub * 8 + e] = acc[h][e];
      }
      if (sub == 0) {
        sm_m[warp * HPB + h] = m[h];
        sm_l[warp * HPB + h] = l[h];
      }
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < HPB * d; idx += blockDim.x) {
    const int h = idx / d, e = idx % d;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_m[w * HPB + h]);
    float sum_l = 0.f, sum_a = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = rescale(sm_m[w * HPB + h], mx);
      sum_l += sm_l[w * HPB + h] * f;
      sum_a += sm_acc[(w * HPB + h) * d + e] * f;
    }
    const float o = sum_l > 0.f ? sum_a / sum_l : 0.f;
    const int64_t qh = u * q_heads + h0 + h;
    if (splits == 1) {
      out[qh * d + e] = from_f<T>(o);
    } else {
      part_o[(qh * splits + split) * d + e] = o;
      if (e == 0) part_lse[qh * splits + split] = sum_l > 0.f ? mx + log2f(sum_l) : -INFINITY;
    }
  }
}

// out[qh] = sum over splits of o_s * 2^(lse_s - lse), lse = log2 sum 2^lse_s. One block per
// (unit, query head).
template <typename T>
__global__ void merge_splits(T* out, const float* part_o, const float* part_lse, int d,
                             int splits) {
  const int64_t qh = blockIdx.x;
  const float* lse = part_lse + qh * splits;
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, lse[s]);
  float total = 0.f;
  for (int s = 0; s < splits; ++s) total += rescale(lse[s], mx);
  for (int e = threadIdx.x; e < d; e += blockDim.x) {
    float o = 0.f;
    for (int s = 0; s < splits; ++s) {
      o += rescale(lse[s], mx) * part_o[(qh * splits + s) * d + e];
    }
    out[qh * d + e] = from_f<T>(total > 0.f ? o / total : 0.f);
  }
}

int sm_count() {
  static const int n = [] {
    int dev = 0, c = 0;
    TUNE_CUDA_CHECK(cudaGetDevice(&dev));
    TUNE_CUDA_CHECK(cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, dev));
    return c;
  }();
  return n;
}

int heads_per_block(int64_t group) {
  for (int h : {4, 2}) {
    if (group % h == 0) return h;
  }
  return 1;
}

// Splits so that the grid covers the GPU about four times over, with at least 256 keys each.
int choose_splits(int64_t units, int64_t q_heads, int64_t kv_heads, int64_t max_keys) {
  const int64_t blocks = units * q_heads / heads_per_block(q_heads / kv_heads);
  const int64_t want = (4 * static_cast<int64_t>(sm_count()) + blocks - 1) / blocks;
  const int64_t cap = std::max<int64_t>(1, (max_keys + 255) / 256);
  return static_cast<int>(std::clamp<int64_t>(want, 1, std::min<int64_t>(cap, 64)));
}

template <typename Keys>
void launch_split(DType dtype, void* out, const void* q, const void* k, const void* v,
                  const Keys& keys, int64_t units, int64_t q_heads, int64_t kv_heads, int64_t d,
                  float scale, int splits, float* workspace) {
  const int hpb = heads_per_block(q_heads / kv_heads);
  const int lanes = d <= 64 ? 8 : (d <= 128 ? 16 : 32);
  float* ws = workspace;
  const size_t ws_bytes = static_cast<size_t>(units * q_heads * splits * (d + 1)) * sizeof(float);
  if (splits > 1 && !ws) {
    TUNE_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ws), ws_bytes, cudaStreamPerThread));
  }
  float* part_o = ws;
  float* part_lse = splits > 1 ? ws + units * q_heads * splits * d : nullptr;
  const dim3 grid(static_cast<unsigned>(units), static_cast<unsigned>(q_heads / hpb),
                  static_cast<unsigned>(splits));
  const size_t smem = static_cast<size_t>(kWarps * hpb * (d + 2)) * sizeof(float);
  const float scale_log2 = scale * kLog2e;
  dispatch_storage(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto run = [&](auto lanes_c, auto hpb_c) {
      constexpr int L = decltype(lanes_c)::value, H = decltype(hpb_c)::value;
      auto kernel = attention_split_keys<T, L, H, kKeysPerTrip<H>, Keys>;
      if (smem > 48 * 1024) {
        TUNE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(smem)));
      }
      kernel<<<grid, kWarps * 32, smem, cudaStreamPerThread>>>(
          static_cast<T*>(out), part_o, part_lse, static_cast<const T*>(q),
          static_cast<const T*>(k), static_cast<const T*>(v), keys, static_cast<int>(q_heads),
          static_cast<int>(kv_heads), static_cast<int>(d), scale_log2, splits);
    };
    auto by_hpb = [&](auto lanes_c) {
      switch (hpb) {
        case 4:
          run(lanes_c, std::integral_constant<int, 4>{});
          break;
        case 2:
          run(lanes_c, std::integral_constant<int, 2>{});
          break;
        default:
          run(lanes_c, std::integral_constant<int, 1>{});
          break;
      }
    };
    if (lanes == 8) {
      by_hpb(std::integral_constant<int, 8>{});
    } else if (lanes == 16) {
      by_hpb(std::integral_constant<int, 16>{});
    } else {
      by_hpb(std::integral_constant<int, 32>{});
    }
    TUNE_CUDA_CHECK(cudaGetLastError());
    if (splits > 1) {
      const int threads = static_cast<int>(std::min<int64_t>(256, (d + 31) / 32 * 32));
      merge_splits<T><<<static_cast<unsigned>(units * q_heads), threads, 0, cudaStreamPerThread>>>(
          static_cast<T*>(out), part_o, part_lse, static_cast<int>(d), splits);
      TUNE_CUDA_CHECK(cudaGetLastError());
    }
  });
  if (splits > 1 && !workspace) TUNE_CUDA_CHECK(cudaFreeAsync(ws, cudaStreamPerThread));
}

int64_t paged_max_keys(const PagedShape& s, int64_t window) {
  const int64_t cap = s.max_pages * s.page_size;
  return window > 0 ? std::min(cap, window) : cap;
}

}  // namespace

int64_t attention_decode_workspace_size(const PagedShape& s, int64_t window) {
  const int splits = choose_splits(s.seqs, s.q_heads, s.kv_heads, paged_max_keys(s, window));
  return splits > 1 ? s.seqs * s.q_heads * splits * (s.head_dim + 1) : 0;
}

void attention_decode(DType dtype, void* out, const void* q, const void* k_pages,
                      const void* v_pages, const int32_t* block_table, const int32_t* seq_lens,
                      const PagedShape& s, float scale, int64_t window, float* workspace) {
  if (s.seqs == 0) return;
  const int splits = choose_splits(s.seqs, s.q_heads, s.kv_heads, paged_max_keys(s, window));
  const PagedKeys keys{block_table, seq_lens, s.page_size, s.max_pages, s.kv_heads, window};
  launch_split(dtype, out, q, k_pages, v_pages, keys, s.seqs, s.q_heads, s.kv_heads, s.head_dim,
               scale, splits, workspace);
}

void attention_forward_split(DType dtype, void* out, const void* q, const void* k, const void* v,
                             const int64_t* key_start, const DenseShape& s, float scale,
                             int64_t window) {
  const int64_t units = s.batch * s.q_seq;
  if (units == 0) return;
  const int64_t max_keys = window > 0 ? std::min(window, s.kv_seq) : s.kv_seq;
  const int splits = choose_splits(units, s.q_heads, s.kv_heads, max_keys);
  const DenseKeys keys{key_start, s.q_seq, s.kv_seq, s.kv_heads, window};
  launch_split(dtype, out, q, k, v, keys, units, s.q_heads, s.kv_heads, s.head_dim, scale, splits,
               nullptr);
}

}  // namespace tune::cuda
