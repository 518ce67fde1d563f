// RMSNorm and LayerNorm on the GPU; the variants were measured in dev/kernels/rms_norm.cu and
// dev/kernels/layer_norm.cu. Math in f32 for
// every storage dtype (f32, bf16, f16); loads and stores are 128 bits wide when c and every
// pointer allow it, scalar otherwise (views into larger buffers need not be 16-byte aligned).
// Forward: one warp per row for short rows, one block per row otherwise. The block's residual add
// rides along (add_rms_norm_forward): h = x + a is formed, rounded and written in the sum of
// squares pass and read back for y, one pass over [n, c] instead of two (add, then norm); the
// residual gradient likewise joins dx in the backward's last pass.
// Backward: a grid of row-striding blocks; thread t owns the same columns in every row, so its dw
// partial sums (shared memory, or global scratch for very wide rows) are its alone: no races and
// no atomics. Each block writes its partial row; a second kernel adds the partials to dw in block
// order, so dw is bitwise reproducible run to run.
// LayerNorm follows the same plan, fused forms included: mean and rstd (saved, f32) from two
// passes over the row, and a backward whose blocks keep dw and db partials side by side (in shared
// memory laid out so that a warp's lanes hit consecutive words), with the row's two sums in one
// block reduction; its grid has ~1536 threads per SM (GPT-2's rows make small blocks) and the
// column pass runs 8 lanes per column, each summing every 8th block's partial in order, then the
// lanes in order.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <type_traits>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_math.cuh"
#include "backend/cuda/norm_kernels.h"

namespace tune::cuda {

namespace {

template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}

template <typename T, int V>
__device__ __forceinline__ void store(T* p, const Pack<T, V>& v) {
  *reinterpret_cast<Pack<T, V>*>(p) = v;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block, returned to every thread; scratch holds 32 floats. Safe to call repeatedly.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch is free from the previous call
  if (lane == 0) scratch[wid] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : 0.f;
  return warp_sum(v);
}

// lanes threads (a warp, or the block) own one row; sum is warp_sum or a block sum. With Add (the
// block's residual add fused in), the row is h = x + a, rounded to T exactly as cuda::add rounds
// it and written to hr, and the norm reads those rounded values: the sum of squares sees the same
// floats in the same order as rms_norm_forward on h would. The second pass reads h back (this
// thread wrote those very elements) rather than x and a again.
template <typename T, int V, bool Add, typename Sum>
__device__ __forceinline__ void rms_norm_row(T* yr, float* rstd, T* hr, const T* xr, const T* ar,
                                             const T* w, int c, float eps, int lane, int lanes,
                                             Sum sum) {
  float ss = 0;
  for (int j = lane * V; j < c; j += lanes * V) {
    Pack<T, V> p = load<T, V>(xr + j);
    if constexpr (Add) {
      const Pack<T, V> pa = load<T, V>(ar + j);
#pragma unroll
      for (int k = 0; k < V; ++k) p.v[k] = from_f<T>(to_f(p.v[k]) + to_f(pa.v[k]));
      store<T, V>(hr + j, p);
    }
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float v = to_f(p.v[k]);
      ss += v * v;
    }
  }
  const float rs = rsqrtf(sum(ss) / c + eps);
  if (lane == 0) *rstd = rs;
  const T* src = Add ? hr : xr;
  for (int j = lane * V; j < c; j += lanes * V) {
    const Pack<T, V> px = load<T, V>(src + j), pw = load<T, V>(w + j);
    Pack<T, V> py;
#pragma unroll
    for (int k = 0; k < V; ++k) py.v[k] = from_f<T>(to_f(px.v[k]) * rs * to_f(pw.v[k]));
    store<T, V>(yr + j, py);
  }
}

// One warp per row (short rows). h and a are used only with Add.
template <typename T, int V, bool Add>
__global__ void rms_forward_warp(T* y, float* rstd, T* h, const T* x, const T* a, const T* w, int n,
                                 int c, float eps) {
  const int r =
      static_cast<int>((blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32);
  if (r >= n) return;
  const int64_t off = static_cast<int64_t>(r) * c;
  rms_norm_row<T, V, Add>(y + off, rstd + r, Add ? h + off : nullptr, x + off,
                          Add ? a + off : nullptr, w, c, eps, threadIdx.x % 32, 32,
                          [](float v) { return warp_sum(v); });
}

// One block per row.
template <typename T, int V, bool Add>
__global__ void rms_forward_block(T* y, float* rstd, T* h, const T* x, const T* a, const T* w,
                                  int c, float eps) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x, off = r * c;
  rms_norm_row<T, V, Add>(y + off, rstd + r, Add ? h + off : nullptr, x + off,
                          Add ? a + off : nullptr, w, c, eps, threadIdx.x, blockDim.x,
                          [&](float v) { return block_sum(v, scratch); });
}

// Blocks stride over rows. partial [gridDim.x, c] (null: no dw) receives each block's dw sums,
// accumulated in shared memory when smem_acc, else in place in the block's row of partial.
// residual (null: none) is added to dx as add_inplace would after a separate pass: dx rounded to
// T, then one f32 add (__fadd_rn, so that it never contracts into the product before it; for
// f32 that rounding is the identity and the product's rounding is what is kept).
template <typename T, int V>
__global__ void rms_backward_rows(T* dx, float* partial, const T* dy, const T* x, const T* w,
                                  const float* rstd, const T* residual, int n, int c,
                                  bool smem_acc) {
  extern __shared__ float dyn[];
  __shared__ float scratch[32];
  float* acc =
      partial ? (smem_acc ? dyn : partial + static_cast<int64_t>(blockIdx.x) * c) : nullptr;
  if (acc) {
    for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
#pragma unroll
      for (int k = 0; k < V; ++k) acc[j + k] = 0.f;
    }
  }
  for (int r = blockIdx.x; r < n; r += gridDim.x) {
    const T* dyr = dy + static_cast<int64_t>(r) * c;
    const T* xr = x + static_cast<int64_t>(r) * c;
    T* dxr = dx + static_cast<int64_t>(r) * c;
    const T* resr = residual ? residual + static_cast<int64_t>(r) * c : nullptr;
    const float rs = rstd[r];
    float dot = 0;
    for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
      const Pack<T, V> pdy = load<T, V>(dyr + j), px = load<T, V>(xr + j), pw = load<T, V>(w + j);
#pragma unroll
      for (int k = 0; k < V; ++k) dot += to_f(pw.v[k]) * to_f(pdy.v[k]) * to_f(px.v[k]);
    }
    // block_sum's barriers also order every read of this dy row before any write of dx.
    const float mean_dot = block_sum(dot, scratch) * rs / c;
    for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
      const Pack<T, V> pdy = load<T, V>(dyr + j), px = load<T, V>(xr + j), pw = load<T, V>(w + j);
      Pack<T, V> pdx;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float g = to_f(pdy.v[k]), xv = to_f(px.v[k]);
        if (acc) acc[j + k] += g * xv * rs;
        pdx.v[k] = from_f<T>(rs * (to_f(pw.v[k]) * g - xv * rs * mean_dot));
      }
      if (resr) {
        const Pack<T, V> pres = load<T, V>(resr + j);
#pragma unroll
        for (int k = 0; k < V; ++k)
          pdx.v[k] = from_f<T>(__fadd_rn(to_f(pdx.v[k]), to_f(pres.v[k])));
      }
      store<T, V>(dxr + j, pdx);
    }
  }
  if (acc && smem_acc) {
    float* out = partial + static_cast<int64_t>(blockIdx.x) * c;
    for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
#pragma unroll
      for (int k = 0; k < V; ++k) out[j + k] = acc[j + k];
    }
  }
}

// dw[j] += the sum over blocks b, in order, of partial[b, j].
template <typename T>
__global__ void rms_dw_reduce(T* dw, const float* partial, int blocks, int c) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  float s = 0;
  for (int b = 0; b < blocks; ++b) s += partial[static_cast<int64_t>(b) * c + j];
  dw[j] = from_f<T>(to_f(dw[j]) + s);
}

// ---- LayerNorm ----
// Mean and variance of the row in two passes over x (the second from L1/L2): the variance as
// mean((x - mean)^2), never mean(x^2) - mean^2, which cancels catastrophically for rows with a
// large mean.

// V elements from p: 128 bits at once when wide, else one at a time. The fused forms read x and a
// (or the residual) this way so that the pack layout, and with it the reduction order, is the
// one the unfused kernel chooses from the other pointers, whatever the alignment of these.
template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load_any(const T* p, bool wide) {
  if (wide) return load<T, V>(p);
  Pack<T, V> v;
#pragma unroll
  for (int k = 0; k < V; ++k) v.v[k] = p[k];
  return v;
}

// lanes threads (a warp, or the block) own one row; sum is warp_sum or a block sum. With Add, as
// rms_norm_row: h = x + a rounded to T is written to hr in the mean pass and the later passes
// read it back (this thread's own writes), so the norm sees exactly what it would read after a
// separate add. x and a are loaded 128 bits wide only when xa_wide.
template <typename T, int V, bool Add, typename Sum>
__device__ __forceinline__ void layer_norm_row(T* yr, float* mean, float* rstd, T* hr, const T* xr,
                                               const T* ar, const T* w, const T* b, int c,
                                               float eps, int lane, int lanes, bool xa_wide,
                                               Sum sum) {
  float s = 0;
  for (int j = lane * V; j < c; j += lanes * V) {
    Pack<T, V> p;
    if constexpr (Add) {
      p = load_any<T, V>(xr + j, xa_wide);
      const Pack<T, V> pa = load_any<T, V>(ar + j, xa_wide);
#pragma unroll
      for (int k = 0; k < V; ++k) p.v[k] = from_f<T>(to_f(p.v[k]) + to_f(pa.v[k]));
      store<T, V>(hr + j, p);
    } else {
      p = load<T, V>(xr + j);
    }
#pragma unroll
    for (int k = 0; k < V; ++k) s += to_f(p.v[k]);
  }
  const float mu = sum(s) / c;
  const T* src = Add ? hr : xr;
  float ss = 0;
  for (int j = lane * V; j < c; j += lanes * V) {
    const Pack<T, V> p = load<T, V>(src + j);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float d = to_f(p.v[k]) - mu;
      ss += d * d;
    }
  }
  const float rs = rsqrtf(sum(ss) / c + eps);
  if (lane == 0) {
    *mean = mu;
    *rstd = rs;
  }
  for (int j = lane * V; j < c; j += lanes * V) {
    const Pack<T, V> px = load<T, V>(src + j), pw = load<T, V>(w + j), pb = load<T, V>(b + j);
    Pack<T, V> py;
#pragma unroll
    for (int k = 0; k < V; ++k)
      py.v[k] = from_f<T>((to_f(px.v[k]) - mu) * rs * to_f(pw.v[k]) + to_f(pb.v[k]));
    store<T, V>(yr + j, py);
  }
}

// One warp per row (short rows). h and a are used only with Add.
template <typename T, int V, bool Add>
__global__ void layer_forward_warp(T* y, float* mean, float* rstd, T* h, const T* x, const T* a,
                                   const T* w, const T* b, int n, int c, float eps, bool xa_wide) {
  const int r =
      static_cast<int>((blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32);
  if (r >= n) return;
  const int64_t off = static_cast<int64_t>(r) * c;
  layer_norm_row<T, V, Add>(y + off, mean + r, rstd + r, Add ? h + off : nullptr, x + off,
                            Add ? a + off : nullptr, w, b, c, eps, threadIdx.x % 32, 32, xa_wide,
                            [](float v) { return warp_sum(v); });
}

// One block per row.
template <typename T, int V, bool Add>
__global__ void layer_forward_block(T* y, float* mean, float* rstd, T* h, const T* x, const T* a,
                                    const T* w, const T* b, int c, float eps, bool xa_wide) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x, off = r * c;
  layer_norm_row<T, V, Add>(y + off, mean + r, rstd + r, Add ? h + off : nullptr, x + off,
                            Add ? a + off : nullptr, w, b, c, eps, threadIdx.x, blockDim.x, xa_wide,
                            [&](float v) { return block_sum(v, scratch); });
}

// Two block sums in one exchange: two barriers where two block_sum calls take four. Each total
// is bitwise block_sum's (the same warp sums, the same lane order).
__device__ __forceinline__ float2 block_sum2(float a, float b, float2* scratch) {
  const int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
  a = warp_sum(a);
  b = warp_sum(b);
  __syncthreads();  // scratch is free from the previous call
  if (lane == 0) scratch[wid] = make_float2(a, b);
  __syncthreads();
  const float2 v = lane < nw ? scratch[lane] : make_float2(0.f, 0.f);
  return make_float2(warp_sum(v.x), warp_sum(v.y));
}

// As rms_backward_rows, with xhat = (x - mean) * rstd and g = w * dy:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dw += dy * xhat,  db += dy.
// partial [gridDim.x, 2c] (null: neither dw nor db) receives each block's dw sums in its first c
// columns and db sums in the next c. In shared memory (smem_acc) the block's sums are laid out
// [V][c / V] per half, element k of the pack at column j at k * (c / V) + j / V: a warp's lanes
// then touch consecutive words (laid out by column, lanes V floats apart, the read-modify-writes
// were 8-way bank conflicts in bf16: the kernel's bottleneck). In global memory (very wide rows)
// they stay by column. residual (null: none) joins dx as in rms_backward_rows, loaded 128 bits
// wide only when res_wide.
template <typename T, int V>
__global__ void layer_backward_rows(T* dx, float* partial, const T* dy, const T* x, const T* w,
                                    const float* mean, const float* rstd, const T* residual, int n,
                                    int c, bool smem_acc, bool res_wide) {
  extern __shared__ float dyn[];
  __shared__ float2 scratch[32];
  float* acc =
      partial ? (smem_acc ? dyn : partial + static_cast<int64_t>(blockIdx.x) * 2 * c) : nullptr;
  // acc[at(j) + k * k_stride]: column j's pack, element k.
  const int k_stride = smem_acc ? c / V : 1;
  auto at = [&](int j) { return smem_acc ? j / V : j; };
  if (acc) {
    for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
#pragma unroll
      for (int k = 0; k < V; ++k) acc[at(j) + k * k_stride] = acc[c + at(j) + k * k_stride] = 0.f;
    }
  }
  for (int r = blockIdx.x; r < n; r += gridDim.x) {
    const T* dyr = dy + static_cast<int64_t>(r) * c;
    const T* xr = x + static_cast<int64_t>(r) * c;
    T* dxr = dx + static_cast<int64_t>(r) * c;
    const T* resr = residual ? residual + static_cast<int64_t>(r) * c : nullptr;
    const float mu = mean[r], rs = rstd[r];
    float sg = 0, sgx = 0;
    for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
      const Pack<T, V> pdy = load<T, V>(dyr + j), px = load<T, V>(xr + j), pw = load<T, V>(w + j);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        // Not contracted into the FMAs below or in dx, so that dx's w * dy - mean(g) cancels
        // exactly where it should (c = 1, or a constant row).
        const float g = __fmul_rn(to_f(pw.v[k]), to_f(pdy.v[k]));
        sg += g;
        sgx += g * (to_f(px.v[k]) - mu);
      }
    }
    // The barriers also order every read of this dy row before any write of dx (dx may alias
    // dy; after them each thread reads only the dy elements it then overwrites).
    const float2 sums = block_sum2(sg, sgx, scratch);
    const float mean_g = sums.x / c;
    const float mean_gx = sums.y * rs / c;
    for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
      const Pack<T, V> pdy = load<T, V>(dyr + j), px = load<T, V>(xr + j), pw = load<T, V>(w + j);
      Pack<T, V> pdx;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float d = to_f(pdy.v[k]), xhat = (to_f(px.v[k]) - mu) * rs;
        if (acc) {
          acc[at(j) + k * k_stride] += d * xhat;
          acc[c + at(j) + k * k_stride] += d;
        }
        pdx.v[k] = from_f<T>(rs * (__fmul_rn(to_f(pw.v[k]), d) - mean_g - xhat * mean_gx));
      }
      if (resr) {
        const Pack<T, V> pres = load_any<T, V>(resr + j, res_wide);
#pragma unroll
        for (int k = 0; k < V; ++k)
          pdx.v[k] = from_f<T>(__fadd_rn(to_f(pdx.v[k]), to_f(pres.v[k])));
      }
      store<T, V>(dxr + j, pdx);
    }
  }
  if (acc && smem_acc) {  // each thread copies out the sums it alone wrote
    float* out = partial + static_cast<int64_t>(blockIdx.x) * 2 * c;
    for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
#pragma unroll
      for (int k = 0; k < V; ++k) {
        out[j + k] = acc[at(j) + k * k_stride];
        out[c + j + k] = acc[c + at(j) + k * k_stride];
      }
    }
  }
}

// dw[j] += the sum over blocks of partial[b, j]; db[j] likewise of partial[b, c + j]. Either may
// be null. Block (32 columns, 8 lanes): lane l sums blocks l, l + 8, ... in order, then lane 0
// adds the 8 lane sums in lane order — a fixed order, with 8 loads in flight per column.
template <typename T>
__global__ void layer_dwdb_reduce(T* dw, T* db, const float* partial, int blocks, int c) {
  __shared__ float lane_w[8][32], lane_b[8][32];
  const int tx = threadIdx.x, ty = threadIdx.y, j = blockIdx.x * 32 + tx;
  float sw = 0, sb = 0;
  if (j < c) {
    for (int b = ty; b < blocks; b += 8) {
      sw += partial[static_cast<int64_t>(b) * 2 * c + j];
      sb += partial[static_cast<int64_t>(b) * 2 * c + c + j];
    }
  }
  lane_w[ty][tx] = sw;
  lane_b[ty][tx] = sb;
  __syncthreads();
  if (ty != 0 || j >= c) return;
  float w = 0, bsum = 0;
#pragma unroll
  for (int l = 0; l < 8; ++l) {
    w += lane_w[l][tx];
    bsum += lane_b[l][tx];
  }
  if (dw) dw[j] = from_f<T>(to_f(dw[j]) + w);
  if (db) db[j] = from_f<T>(to_f(db[j]) + bsum);
}

constexpr int kThreads = 256;
constexpr int kBlocksPerSm = 4;  // backward grid: enough resident blocks to cover latency
constexpr size_t kSmemLimit = 48 * 1024;

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

int threads_for(int units) {  // a multiple of 32, at most kThreads
  return std::min(kThreads, std::max(32, (units + 31) / 32 * 32));
}

int sm_count() {
  thread_local int sms = [] {
    int dev = 0, n = 0;
    TUNE_CUDA_CHECK(cudaGetDevice(&dev));
    TUNE_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }();
  return sms;
}

// Per-thread scratch for the dw partials, grown on demand (cudaFree waits for queued work).
float* partial_scratch(size_t bytes) {
  struct Scratch {
    void* p = nullptr;
    size_t bytes = 0;
    ~Scratch() {
      if (p) cudaFree(p);
    }
  };
  thread_local Scratch s;
  if (s.bytes < bytes) {
    if (s.p) TUNE_CUDA_CHECK(cudaFree(s.p));
    s.p = nullptr;
    s.bytes = 0;
    TUNE_CUDA_CHECK(cudaMalloc(&s.p, bytes));
    s.bytes = bytes;
  }
  return static_cast<float*>(s.p);
}

// The fused form (Add) launches exactly as the plain one, so a row is reduced in the same order.
template <typename T, int V, bool Add>
void forward_v(T* y, float* rstd, T* h, const T* x, const T* a, const T* w, int n, int c,
               float eps) {
  const cudaStream_t stream = cudaStreamPerThread;
  const int units = (c + V - 1) / V;
  if (units <= 32 * 4) {  // short rows: a warp each, 8 rows per block
    const int64_t threads = static_cast<int64_t>(n) * 32;
    rms_forward_warp<T, V, Add>
        <<<static_cast<unsigned>((threads + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
            y, rstd, h, x, a, w, n, c, eps);
  } else {
    rms_forward_block<T, V, Add><<<n, threads_for(units), 0, stream>>>(y, rstd, h, x, a, w, c, eps);
  }
  TUNE_CUDA_CHECK(cudaGetLastError());
}

// h and a are null for the plain norm.
template <typename T>
void forward_t(void* y, float* rstd, void* h, const void* x, const void* a, const void* w, int n,
               int c, float eps) {
  constexpr int V = 16 / sizeof(T);
  auto* yt = static_cast<T*>(y);
  auto* ht = static_cast<T*>(h);
  auto* xt = static_cast<const T*>(x);
  auto* at = static_cast<const T*>(a);
  auto* wt = static_cast<const T*>(w);
  const bool add = h != nullptr;
  const bool wide = c % V == 0 && aligned16(y) && aligned16(x) && aligned16(w) &&
                    (!add || (aligned16(h) && aligned16(a)));
  if (add) {
    if (wide) return forward_v<T, V, true>(yt, rstd, ht, xt, at, wt, n, c, eps);
    return forward_v<T, 1, true>(yt, rstd, ht, xt, at, wt, n, c, eps);
  }
  if (wide) return forward_v<T, V, false>(yt, rstd, nullptr, xt, nullptr, wt, n, c, eps);
  forward_v<T, 1, false>(yt, rstd, nullptr, xt, nullptr, wt, n, c, eps);
}

template <typename T, int V>
void backward_v(T* dx, T* dw, const T* dy, const T* x, const T* w, const float* rstd,
                const T* residual, int n, int c) {
  const cudaStream_t stream = cudaStreamPerThread;
  const int grid = std::min(n, sm_count() * kBlocksPerSm);
  float* partial = dw ? partial_scratch(static_cast<size_t>(grid) * c * sizeof(float)) : nullptr;
  const bool smem_acc = dw && static_cast<size_t>(c) * sizeof(float) <= kSmemLimit;
  const size_t smem = smem_acc ? static_cast<size_t>(c) * sizeof(float) : 0;
  rms_backward_rows<T, V><<<grid, threads_for((c + V - 1) / V), smem, stream>>>(
      dx, partial, dy, x, w, rstd, residual, n, c, smem_acc);
  TUNE_CUDA_CHECK(cudaGetLastError());
  if (dw) {
    rms_dw_reduce<T><<<(c + kThreads - 1) / kThreads, kThreads, 0, stream>>>(dw, partial, grid, c);
    TUNE_CUDA_CHECK(cudaGetLastError());
  }
}

template <typename T>
void backward_t(void* dx, void* dw, const void* dy, const void* x, const void* w, const float* rstd,
                const void* residual, int n, int c) {
  constexpr int V = 16 / sizeof(T);
  auto* dxt = static_cast<T*>(dx);
  auto* dwt = static_cast<T*>(dw);
  auto* dyt = static_cast<const T*>(dy);
  auto* xt = static_cast<const T*>(x);
  auto* wt = static_cast<const T*>(w);
  auto* rt = static_cast<const T*>(residual);
  if (c % V == 0 && aligned16(dx) && aligned16(dy) && aligned16(x) && aligned16(w) &&
      (!residual || aligned16(residual))) {
    backward_v<T, V>(dxt, dwt, dyt, xt, wt, rstd, rt, n, c);
  } else {
    backward_v<T, 1>(dxt, dwt, dyt, xt, wt, rstd, rt, n, c);
  }
}

// The fused form (Add) launches exactly as the plain one on h would, so a row is reduced in the
// same order.
template <typename T, int V, bool Add>
void layer_forward_v(T* y, float* mean, float* rstd, T* h, const T* x, const T* a, const T* w,
                     const T* b, int n, int c, float eps, bool xa_wide) {
  const cudaStream_t stream = cudaStreamPerThread;
  const int units = (c + V - 1) / V;
  if (units <= 32 * 4) {
    const int64_t threads = static_cast<int64_t>(n) * 32;
    layer_forward_warp<T, V, Add>
        <<<static_cast<unsigned>((threads + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
            y, mean, rstd, h, x, a, w, b, n, c, eps, xa_wide);
  } else {
    layer_forward_block<T, V, Add>
        <<<n, threads_for(units), 0, stream>>>(y, mean, rstd, h, x, a, w, b, c, eps, xa_wide);
  }
  TUNE_CUDA_CHECK(cudaGetLastError());
}

// h and a are null for the plain norm. The pack width is chosen from the pointers the plain norm
// on h checks (y, h, w, b); x and a only decide how the fused kernel loads them.
template <typename T>
void layer_forward_t(void* y, float* mean, float* rstd, void* h, const void* x, const void* a,
                     const void* w, const void* b, int n, int c, float eps) {
  constexpr int V = 16 / sizeof(T);
  auto* yt = static_cast<T*>(y);
  auto* ht = static_cast<T*>(h);
  auto* xt = static_cast<const T*>(x);
  auto* at = static_cast<const T*>(a);
  auto* wt = static_cast<const T*>(w);
  auto* bt = static_cast<const T*>(b);
  const bool add = h != nullptr;
  const bool wide =
      c % V == 0 && aligned16(y) && aligned16(add ? h : x) && aligned16(w) && aligned16(b);
  const bool xa_wide = aligned16(x) && (!add || aligned16(a));
  if (add) {
    if (wide)
      return layer_forward_v<T, V, true>(yt, mean, rstd, ht, xt, at, wt, bt, n, c, eps, xa_wide);
    return layer_forward_v<T, 1, true>(yt, mean, rstd, ht, xt, at, wt, bt, n, c, eps, false);
  }
  if (wide) {
    return layer_forward_v<T, V, false>(yt, mean, rstd, nullptr, xt, nullptr, wt, bt, n, c, eps,
                                        true);
  }
  layer_forward_v<T, 1, false>(yt, mean, rstd, nullptr, xt, nullptr, wt, bt, n, c, eps, false);
}

template <typename T, int V>
void layer_backward_v(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const float* mean,
                      const float* rstd, const T* residual, bool res_wide, int n, int c) {
  const cudaStream_t stream = cudaStreamPerThread;
  // GPT-2's rows make small blocks (96 threads at c = 768 in bf16): enough of them for ~1536
  // threads per SM (dev/kernels/layer_norm.cu, backward 3).
  const int threads = threads_for((c + V - 1) / V);
  const int per_sm = std::clamp(1536 / threads, kBlocksPerSm, 16);
  const int grid = std::min(n, sm_count() * per_sm);
  const bool sums = dw || db;
  float* partial =
      sums ? partial_scratch(static_cast<size_t>(grid) * 2 * c * sizeof(float)) : nullptr;
  const bool smem_acc = sums && static_cast<size_t>(2 * c) * sizeof(float) <= kSmemLimit;
  const size_t smem = smem_acc ? static_cast<size_t>(2 * c) * sizeof(float) : 0;
  layer_backward_rows<T, V><<<grid, threads, smem, stream>>>(dx, partial, dy, x, w, mean, rstd,
                                                             residual, n, c, smem_acc, res_wide);
  TUNE_CUDA_CHECK(cudaGetLastError());
  if (sums) {
    layer_dwdb_reduce<T><<<(c + 31) / 32, dim3(32, 8), 0, stream>>>(dw, db, partial, grid, c);
    TUNE_CUDA_CHECK(cudaGetLastError());
  }
}

// The pack width is chosen without the residual (as the plain backward chooses it), so the
// fused form reduces each row in the same order whatever the residual's alignment.
template <typename T>
void layer_backward_t(void* dx, void* dw, void* db, const void* dy, const void* x, const void* w,
                      const float* mean, const float* rstd, const void* residual, int n, int c) {
  constexpr int V = 16 / sizeof(T);
  auto* dxt = static_cast<T*>(dx);
  auto* dwt = static_cast<T*>(dw);
  auto* dbt = static_cast<T*>(db);
  auto* dyt = static_cast<const T*>(dy);
  auto* xt = static_cast<const T*>(x);
  auto* wt = static_cast<const T*>(w);
  auto* rt = static_cast<const T*>(residual);
  if (c % V == 0 && aligned16(dx) && aligned16(dy) && aligned16(x) && aligned16(w)) {
    layer_backward_v<T, V>(dxt, dwt, dbt, dyt, xt, wt, mean, rstd, rt, aligned16(residual), n, c);
  } else {
    layer_backward_v<T, 1>(dxt, dwt, dbt, dyt, xt, wt, mean, rstd, rt, false, n, c);
  }
}

void check_sizes(const char* what, int64_t n, int64_t c) {
  if (n > INT_MAX || c > INT_MAX / 2) {
    throw Error(str(what, ": ", n, " rows of ", c, " exceed the kernel's int indexing"));
  }
}

[[noreturn]] void bad_dtype(const char* what, DType t) {
  throw Error(str(what, ": ", dtype_name(t), " is not supported (f32, bf16, f16)"));
}

// The plain and the residual-add forms of each norm's forward (h and a null: no residual), with
// `what` naming the entry point in errors.
void rms_forward(const char* what, DType dtype, void* y, float* rstd, void* h, const void* x,
                 const void* a, const void* w, int64_t n, int64_t c, float eps) {
  check_sizes(what, n, c);
  if (n == 0) return;
  const int ni = static_cast<int>(n), ci = static_cast<int>(c);
  switch (dtype) {
    case DType::f32:
      return forward_t<float>(y, rstd, h, x, a, w, ni, ci, eps);
    case DType::bf16:
      return forward_t<__nv_bfloat16>(y, rstd, h, x, a, w, ni, ci, eps);
    case DType::f16:
      return forward_t<__half>(y, rstd, h, x, a, w, ni, ci, eps);
    default:
      bad_dtype(what, dtype);
  }
}

void layer_forward(const char* what, DType dtype, void* y, float* mean, float* rstd, void* h,
                   const void* x, const void* a, const void* w, const void* b, int64_t n, int64_t c,
                   float eps) {
  check_sizes(what, n, c);
  if (n == 0) return;
  const int ni = static_cast<int>(n), ci = static_cast<int>(c);
  switch (dtype) {
    case DType::f32:
      return layer_forward_t<float>(y, mean, rstd, h, x, a, w, b, ni, ci, eps);
    case DType::bf16:
      return layer_forward_t<__nv_bfloat16>(y, mean, rstd, h, x, a, w, b, ni, ci, eps);
    case DType::f16:
      return layer_forward_t<__half>(y, mean, rstd, h, x, a, w, b, ni, ci, eps);
    default:
      bad_dtype(what, dtype);
  }
}

}  // namespace

void rms_norm_forward(DType dtype, void* y, float* rstd, const void* x, const void* w, int64_t n,
                      int64_t c, float eps) {
  rms_forward("cuda::rms_norm_forward", dtype, y, rstd, nullptr, x, nullptr, w, n, c, eps);
}

void add_rms_norm_forward(DType dtype, void* h, void* y, float* rstd, const void* x, const void* a,
                          const void* w, int64_t n, int64_t c, float eps) {
  rms_forward("cuda::add_rms_norm_forward", dtype, y, rstd, h, x, a, w, n, c, eps);
}

void rms_norm_backward(DType dtype, void* dx, void* dw, const void* dy, const void* x,
                       const void* w, const float* rstd, const void* residual, int64_t n,
                       int64_t c) {
  check_sizes("cuda::rms_norm_backward", n, c);
  if (n == 0 || c == 0) return;
  const int ni = static_cast<int>(n), ci = static_cast<int>(c);
  switch (dtype) {
    case DType::f32:
      return backward_t<float>(dx, dw, dy, x, w, rstd, residual, ni, ci);
    case DType::bf16:
      return backward_t<__nv_bfloat16>(dx, dw, dy, x, w, rstd, residual, ni, ci);
    case DType::f16:
      return backward_t<__half>(dx, dw, dy, x, w, rstd, residual, ni, ci);
    default:
      bad_dtype("cuda::rms_norm_backward", dtype);
  }
}

void layer_norm_forward(DType dtype, void* y, float* mean, float* rstd, const void* x,
                        const void* w, const void* b, int64_t n, int64_t c, float eps) {
  layer_forward("cuda::layer_norm_forward", dtype, y, mean, rstd, nullptr, x, nullptr, w, b, n, c,
                eps);
}

void add_layer_norm_forward(DType dtype, void* h, void* y, float* mean, float* rstd, const void* x,
                            const void* a, const void* w, const void* b, int64_t n, int64_t c,
                            float eps) {
  layer_forward("cuda::add_layer_norm_forward", dtype, y, mean, rstd, h, x, a, w, b, n, c, eps);
}

void layer_norm_backward(DType dtype, void* dx, void* dw, void* db, const void* dy, const void* x,
                         const void* w, const float* mean, const float* rstd, const void* residual,
                         int64_t n, int64_t c) {
  check_sizes("cuda::layer_norm_backward", n, c);
  if (n == 0 || c == 0) return;
  const int ni = static_cast<int>(n), ci = static_cast<int>(c);
  switch (dtype) {
    case DType::f32:
      return layer_backward_t<float>(dx, dw, db, dy, x, w, mean, rstd, residual, ni, ci);
    case DType::bf16:
      return layer_backward_t<__nv_bfloat16>(dx, dw, db, dy, x, w, mean, rstd, residual, ni, ci);
    case DType::f16:
      return layer_backward_t<__half>(dx, dw, db, dy, x, w, mean, rstd, residual, ni, ci);
    default:
      bad_dtype("cuda::layer_norm_backward", dtype);
  }
}

}  // namespace tune::cuda
