// RMSNorm forward and backward, the kernel lab (llm.c dev/cuda style). Standalone:
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 --expt-relaxed-constexpr \
//        -I include -I src dev/kernels/rms_norm.cu -o rms_norm_lab
//   ./rms_norm_lab [rows cols]      (timing shape; default 16384 x 4096, and 2048 x 4096)
// y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) per row (saved, f32).
// Backward with xhat = x * rstd, g = w * dy:
//   dx = rstd * (g - xhat * mean(g * xhat)),   dw += sum over rows of dy * xhat.
// Every variant computes in f32; T is float or bf16 (bf16 in and out). dw is deterministic: no
// float atomics; per-block partial sums in a fixed order, then a second pass over the partials.
// Variants:
//   forward  1: one thread per row          2: one warp per row, shuffles (scalar loads)
//            3: one block per row, 128-bit loads    4: one warp per row, 128-bit loads
//   backward 1: dx one thread per row, dw one thread per column walking rows
//            2: a grid of row-striding blocks, scalar loads; each thread owns fixed columns and
//               keeps its dw partials in shared memory, then a column pass sums the partials
//            3: as 2 with 128-bit loads
// The decoder block's residual forms (h = x + a, then the norm of h; dx = norm backward + the
// residual's gradient), against the separate passes they replace. h is rounded to T before the
// norm reads it, as the separate add stores it. The engine (src/backend/cuda/norm.cu) is compiled
// in, and its entry points are variants here:
//   add forward  1: add, then the engine's rms_norm_forward (two kernels: today's path)
//                2: the engine's add_rms_norm_forward: h written in the sum-of-squares pass and
//                   read back (by the thread that wrote it) for y
//                3: as 2, but the y pass adds x + a again instead of reading h
//                4: one block per row holding its packs in registers (x and a read once, h and y
//                   written once), up to 4 packs a thread
//   residual backward 1: the engine's rms_norm_backward, then add_inplace (two kernels)
//                     2: the engine's rms_norm_backward with the residual, added in its dx pass
// Timed in GB/s of the fused form's minimum traffic (forward: x, a read, h, y written; backward:
// dy, x, residual read, dx written), so the two-kernel variants show what they cost over it.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../../src/backend/cuda/norm.cu"

// The one libtune function norm.cu names (in its unsupported-dtype message); the lab has no
// libtune to link.
const char* tune::dtype_name(tune::DType) {
  return "dtype";
}

#define CHECK(stmt)                                                        \
  do {                                                                     \
    cudaError_t e_ = (stmt);                                               \
    if (e_ != cudaSuccess) {                                               \
      std::fprintf(stderr, "%s at %s:%d: %s\n", #stmt, __FILE__, __LINE__, \
                   cudaGetErrorString(e_));                                \
      std::exit(1);                                                        \
    }                                                                      \
  } while (0)

// The lab's own helpers, apart from the engine's (tune::cuda): the bf16 type lives in the global
// namespace, so helpers there would be found by argument-dependent lookup from inside norm.cu.
namespace lab {

using bf16 = __nv_bfloat16;

template <typename T>
__device__ __forceinline__ float to_f(T v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    return __bfloat162float(v);
  }
}
template <typename T>
__device__ __forceinline__ T from_f(float v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    return __float2bfloat16(v);
  }
}

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};
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
// Sum over the block, result in every thread; `scratch` holds 32 floats. Safe to call repeatedly.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch free from a previous call
  if (lane == 0) scratch[wid] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : 0.f;
  return warp_sum(v);
}

// ---------------- forward ----------------
template <typename T>
__global__ void fwd1(T* y, float* rstd, const T* x, const T* w, int n, int c, float eps) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const T* xr = x + (int64_t)r * c;
  T* yr = y + (int64_t)r * c;
  float ss = 0;
  for (int j = 0; j < c; ++j) {
    const float v = to_f(xr[j]);
    ss += v * v;
  }
  const float rs = rsqrtf(ss / c + eps);
  rstd[r] = rs;
  for (int j = 0; j < c; ++j) yr[j] = from_f<T>(to_f(xr[j]) * rs * to_f(w[j]));
}

template <typename T, int V>
__global__ void fwd_warp(T* y, float* rstd, const T* x, const T* w, int n, int c, float eps) {
  const int r = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (r >= n) return;
  const T* xr = x + (int64_t)r * c;
  T* yr = y + (int64_t)r * c;
  float ss = 0;
  for (int j = lane * V; j < c; j += 32 * V) {
    const Pack<T, V> p = load<T, V>(xr + j);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float v = to_f(p.v[k]);
      ss += v * v;
    }
  }
  const float rs = rsqrtf(warp_sum(ss) / c + eps);
  if (lane == 0) rstd[r] = rs;
  for (int j = lane * V; j < c; j += 32 * V) {
    const Pack<T, V> px = load<T, V>(xr + j), pw = load<T, V>(w + j);
    Pack<T, V> py;
#pragma unroll
    for (int k = 0; k < V; ++k) py.v[k] = from_f<T>(to_f(px.v[k]) * rs * to_f(pw.v[k]));
    store<T, V>(yr + j, py);
  }
}

template <typename T, int V>
__global__ void fwd_block(T* y, float* rstd, const T* x, const T* w, int n, int c, float eps) {
  __shared__ float scratch[32];
  const int r = blockIdx.x;
  const T* xr = x + (int64_t)r * c;
  T* yr = y + (int64_t)r * c;
  float ss = 0;
  for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
    const Pack<T, V> p = load<T, V>(xr + j);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float v = to_f(p.v[k]);
      ss += v * v;
    }
  }
  const float rs = rsqrtf(block_sum(ss, scratch) / c + eps);
  if (threadIdx.x == 0) rstd[r] = rs;
  for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
    const Pack<T, V> px = load<T, V>(xr + j), pw = load<T, V>(w + j);
    Pack<T, V> py;
#pragma unroll
    for (int k = 0; k < V; ++k) py.v[k] = from_f<T>(to_f(px.v[k]) * rs * to_f(pw.v[k]));
    store<T, V>(yr + j, py);
  }
}

// ---------------- backward ----------------
template <typename T>
__global__ void bwd1_dx(T* dx, const T* dy, const T* x, const T* w, const float* rstd, int n,
                        int c) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const T* dyr = dy + (int64_t)r * c;
  const T* xr = x + (int64_t)r * c;
  T* dxr = dx + (int64_t)r * c;
  const float rs = rstd[r];
  float dot = 0;
  for (int j = 0; j < c; ++j) dot += to_f(w[j]) * to_f(dyr[j]) * to_f(xr[j]);
  const float mean_dot = dot * rs / c;
  for (int j = 0; j < c; ++j)
    dxr[j] = from_f<T>(rs * (to_f(w[j]) * to_f(dyr[j]) - to_f(xr[j]) * rs * mean_dot));
}
template <typename T>
__global__ void bwd1_dw(T* dw, const T* dy, const T* x, const float* rstd, int n, int c) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  float acc = 0;
  for (int r = 0; r < n; ++r)
    acc += to_f(dy[(int64_t)r * c + j]) * to_f(x[(int64_t)r * c + j]) * rstd[r];
  dw[j] = from_f<T>(to_f(dw[j]) + acc);
}

// Blocks stride over rows; thread t owns columns j = (t + k * blockDim) * V in every row, so its dw
// partials (shared memory, or this block's row of `partial` when shared memory is too small) are
// its alone: no races, no atomics. partial [gridDim.x, c] receives each block's sums.
template <typename T, int V>
__global__ void bwd_block(T* dx, float* partial, const T* dy, const T* x, const T* w,
                          const float* rstd, int n, int c, bool smem_acc) {
  extern __shared__ float dyn[];
  __shared__ float scratch[32];
  float* acc = partial ? (smem_acc ? dyn : partial + (int64_t)blockIdx.x * c) : nullptr;
  if (acc)
    for (int j = threadIdx.x * V; j < c; j += blockDim.x * V)
#pragma unroll
      for (int k = 0; k < V; ++k) acc[j + k] = 0.f;
  for (int r = blockIdx.x; r < n; r += gridDim.x) {
    const T* dyr = dy + (int64_t)r * c;
    const T* xr = x + (int64_t)r * c;
    T* dxr = dx + (int64_t)r * c;
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
      store<T, V>(dxr + j, pdx);
    }
  }
  if (acc && smem_acc) {
    float* out = partial + (int64_t)blockIdx.x * c;
    for (int j = threadIdx.x * V; j < c; j += blockDim.x * V)
#pragma unroll
      for (int k = 0; k < V; ++k) out[j + k] = acc[j + k];
  }
}

// dw[j] += sum over blocks b (in order) of partial[b, j].
template <typename T>
__global__ void dw_reduce(T* dw, const float* partial, int blocks, int c) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  float s = 0;
  for (int b = 0; b < blocks; ++b) s += partial[(int64_t)b * c + j];
  dw[j] = from_f<T>(to_f(dw[j]) + s);
}

// ---------------- launchers ----------------
int g_sms = 0;
float* g_partial = nullptr;  // [kMaxBlocks, kMaxC]
constexpr int kMaxC = 8192, kBlocksPerSm = 4;

template <typename T>
constexpr int vec() {
  return 16 / sizeof(T);
}

template <typename T>
bool forward(int variant, T* y, float* rstd, const T* x, const T* w, int n, int c, float eps,
             int block = 256) {
  constexpr int V = vec<T>();
  switch (variant) {
    case 1:
      fwd1<<<(n + 127) / 128, 128>>>(y, rstd, x, w, n, c, eps);
      return true;
    case 2:
      fwd_warp<T, 1><<<(n * 32 + block - 1) / block, block>>>(y, rstd, x, w, n, c, eps);
      return true;
    case 3: {
      if (c % V) return false;
      int threads = std::min(block, ((c / V + 31) / 32) * 32);
      fwd_block<T, V><<<n, threads>>>(y, rstd, x, w, n, c, eps);
      return true;
    }
    case 4:
      if (c % V) return false;
      fwd_warp<T, V><<<(n * 32 + block - 1) / block, block>>>(y, rstd, x, w, n, c, eps);
      return true;
  }
  return false;
}

template <typename T>
bool backward(int variant, T* dx, T* dw, const T* dy, const T* x, const T* w, const float* rstd,
              int n, int c, int block = 256) {
  constexpr int V = vec<T>();
  if (variant == 1) {
    bwd1_dx<<<(n + 127) / 128, 128>>>(dx, dy, x, w, rstd, n, c);
    if (dw) bwd1_dw<<<(c + 127) / 128, 128>>>(dw, dy, x, rstd, n, c);
    return true;
  }
  if (variant != 2 && variant != 3) return false;
  if (variant == 3 && c % V) return false;
  const int grid = std::min(n, g_sms * kBlocksPerSm);
  const size_t smem = dw ? c * sizeof(float) : 0;
  if (variant == 2) {
    int threads = std::min(block, ((c + 31) / 32) * 32);
    bwd_block<T, 1>
        <<<grid, threads, smem>>>(dx, dw ? g_partial : nullptr, dy, x, w, rstd, n, c, true);
  } else {
    int threads = std::min(block, ((c / V + 31) / 32) * 32);
    bwd_block<T, V>
        <<<grid, threads, smem>>>(dx, dw ? g_partial : nullptr, dy, x, w, rstd, n, c, true);
  }
  if (dw) dw_reduce<<<(c + 255) / 256, 256>>>(dw, g_partial, grid, c);
  return true;
}

// ---------------- residual forms ----------------
template <typename T>
constexpr tune::DType dtype_of() {
  return std::is_same_v<T, float> ? tune::DType::f32 : tune::DType::bf16;
}

// out = a + b (n elements, n % V == 0 when V > 1), rounded to T; add_inplace when out == a.
template <typename T, int V>
__global__ void add_kernel(T* out, const T* a, const T* b, int64_t n) {
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (i >= n) return;
  const Pack<T, V> pa = load<T, V>(a + i), pb = load<T, V>(b + i);
  Pack<T, V> po;
#pragma unroll
  for (int k = 0; k < V; ++k) po.v[k] = from_f<T>(to_f(pa.v[k]) + to_f(pb.v[k]));
  store<T, V>(out + i, po);
}

template <typename T>
void add(T* out, const T* a, const T* b, int64_t n) {
  constexpr int V = vec<T>();
  if (n % V == 0) {
    add_kernel<T, V><<<(n / V + 255) / 256, 256>>>(out, a, b, n);
  } else {
    add_kernel<T, 1><<<(n + 255) / 256, 256>>>(out, a, b, n);
  }
}

// Variant 3: both passes read x and a.
template <typename T, int V>
__global__ void add_fwd_reread(T* h, T* y, float* rstd, const T* x, const T* a, const T* w, int c,
                               float eps) {
  __shared__ float scratch[32];
  const int64_t off = static_cast<int64_t>(blockIdx.x) * c;
  float ss = 0;
  for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
    const Pack<T, V> px = load<T, V>(x + off + j), pa = load<T, V>(a + off + j);
    Pack<T, V> ph;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      ph.v[k] = from_f<T>(to_f(px.v[k]) + to_f(pa.v[k]));
      const float v = to_f(ph.v[k]);
      ss += v * v;
    }
    store<T, V>(h + off + j, ph);
  }
  const float rs = rsqrtf(block_sum(ss, scratch) / c + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = rs;
  for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
    const Pack<T, V> px = load<T, V>(x + off + j), pa = load<T, V>(a + off + j),
                     pw = load<T, V>(w + j);
    Pack<T, V> py;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float v = to_f(from_f<T>(to_f(px.v[k]) + to_f(pa.v[k])));
      py.v[k] = from_f<T>(v * rs * to_f(pw.v[k]));
    }
    store<T, V>(y + off + j, py);
  }
}

// Variant 4: thread t holds packs t, t + blockDim, ... (at most P) of its row in registers.
template <typename T, int V, int P>
__global__ void add_fwd_registers(T* h, T* y, float* rstd, const T* x, const T* a, const T* w,
                                  int c, float eps) {
  __shared__ float scratch[32];
  const int64_t off = static_cast<int64_t>(blockIdx.x) * c;
  Pack<T, V> ph[P];
  float ss = 0;
#pragma unroll
  for (int p = 0; p < P; ++p) {
    const int j = (threadIdx.x + p * blockDim.x) * V;
    if (j >= c) break;
    const Pack<T, V> px = load<T, V>(x + off + j), pa = load<T, V>(a + off + j);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      ph[p].v[k] = from_f<T>(to_f(px.v[k]) + to_f(pa.v[k]));
      const float v = to_f(ph[p].v[k]);
      ss += v * v;
    }
    store<T, V>(h + off + j, ph[p]);
  }
  const float rs = rsqrtf(block_sum(ss, scratch) / c + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = rs;
#pragma unroll
  for (int p = 0; p < P; ++p) {
    const int j = (threadIdx.x + p * blockDim.x) * V;
    if (j >= c) break;
    const Pack<T, V> pw = load<T, V>(w + j);
    Pack<T, V> py;
#pragma unroll
    for (int k = 0; k < V; ++k) py.v[k] = from_f<T>(to_f(ph[p].v[k]) * rs * to_f(pw.v[k]));
    store<T, V>(y + off + j, py);
  }
}

template <typename T>
bool add_forward(int variant, T* h, T* y, float* rstd, const T* x, const T* a, const T* w, int n,
                 int c, float eps, int block = 256) {
  constexpr int V = vec<T>(), P = 4;
  const tune::DType dt = dtype_of<T>();
  switch (variant) {
    case 1:
      add(h, x, a, static_cast<int64_t>(n) * c);
      tune::cuda::rms_norm_forward(dt, y, rstd, h, w, n, c, eps);
      return true;
    case 2:
      tune::cuda::add_rms_norm_forward(dt, h, y, rstd, x, a, w, n, c, eps);
      return true;
    case 3: {
      if (c % V) return false;
      const int threads = std::min(block, ((c / V + 31) / 32) * 32);
      add_fwd_reread<T, V><<<n, threads>>>(h, y, rstd, x, a, w, c, eps);
      return true;
    }
    case 4: {
      if (c % V || c / V > P * 1024 || block != 256) return false;
      const int threads = ((c / V + P - 1) / P + 31) / 32 * 32;
      add_fwd_registers<T, V, P><<<n, threads>>>(h, y, rstd, x, a, w, c, eps);
      return true;
    }
  }
  return false;
}

template <typename T>
bool residual_backward(int variant, T* dx, T* dw, const T* dy, const T* x, const T* w,
                       const float* rstd, const T* residual, int n, int c) {
  const tune::DType dt = dtype_of<T>();
  switch (variant) {
    case 1:
      tune::cuda::rms_norm_backward(dt, dx, dw, dy, x, w, rstd, nullptr, n, c);
      add(dx, dx, residual, static_cast<int64_t>(n) * c);
      return true;
    case 2:
      tune::cuda::rms_norm_backward(dt, dx, dw, dy, x, w, rstd, residual, n, c);
      return true;
  }
  return false;
}

// ---------------- host side ----------------
uint16_t f2bf(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
float bf2f(uint16_t h) {
  uint32_t b = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
template <typename T>
T host_from(float f) {
  if constexpr (std::is_same_v<T, float>) {
    return f;
  } else {
    uint16_t h = f2bf(f);
    T t;
    std::memcpy(&t, &h, 2);
    return t;
  }
}
template <typename T>
float host_to(T v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    uint16_t h;
    std::memcpy(&h, &v, 2);
    return bf2f(h);
  }
}

void cpu_forward(std::vector<double>& y, std::vector<double>& rstd, const std::vector<double>& x,
                 const std::vector<double>& w, int n, int c, double eps) {
  for (int r = 0; r < n; ++r) {
    double ss = 0;
    for (int j = 0; j < c; ++j) ss += x[(size_t)r * c + j] * x[(size_t)r * c + j];
    rstd[r] = 1.0 / std::sqrt(ss / c + eps);
    for (int j = 0; j < c; ++j) y[(size_t)r * c + j] = x[(size_t)r * c + j] * rstd[r] * w[j];
  }
}
void cpu_backward(std::vector<double>& dx, std::vector<double>& dw, const std::vector<double>& dy,
                  const std::vector<double>& x, const std::vector<double>& w,
                  const std::vector<double>& rstd, int n, int c) {
  for (int r = 0; r < n; ++r) {
    const double rs = rstd[r];
    double dot = 0;
    for (int j = 0; j < c; ++j) dot += w[j] * dy[(size_t)r * c + j] * x[(size_t)r * c + j] * rs;
    const double md = dot / c;
    for (int j = 0; j < c; ++j) {
      const size_t i = (size_t)r * c + j;
      dx[i] = rs * (w[j] * dy[i] - x[i] * rs * md);
      dw[j] += dy[i] * x[i] * rs;
    }
  }
}

double rel_err(const std::vector<double>& got, const std::vector<double>& ref) {
  double d = 0, s = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    d += (got[i] - ref[i]) * (got[i] - ref[i]);
    s += ref[i] * ref[i];
  }
  return s > 0 ? std::sqrt(d / s) : std::sqrt(d);
}

template <typename T>
std::vector<double> rounded(std::vector<T>& dev_vals, std::mt19937& rng, size_t count, float scale,
                            float offset) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<double> out(count);
  dev_vals.resize(count);
  for (size_t i = 0; i < count; ++i) {
    dev_vals[i] = host_from<T>(offset + scale * nd(rng));
    out[i] = host_to(dev_vals[i]);
  }
  return out;
}

template <typename T>
std::vector<double> fetch(const T* d, size_t count) {
  std::vector<T> h(count);
  CHECK(cudaMemcpy(h.data(), d, count * sizeof(T), cudaMemcpyDeviceToHost));
  std::vector<double> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = host_to(h[i]);
  return out;
}
std::vector<double> fetchf(const float* d, size_t count) {
  std::vector<float> h(count);
  CHECK(cudaMemcpy(h.data(), d, count * 4, cudaMemcpyDeviceToHost));
  return std::vector<double>(h.begin(), h.end());
}

int g_failures = 0;

template <typename T>
void validate(const char* tname, double tol) {
  const int rows[] = {1, 7, 33, 257, 4097}, cols[] = {64, 80, 128, 256, 4096};
  const double eps = 1e-5;
  for (int n : rows)
    for (int c : cols) {
      std::mt19937 rng(n * 131 + c);
      std::vector<T> hx, hw, hdy, hdw0;
      std::vector<double> x = rounded(hx, rng, (size_t)n * c, 1.f, 0.f);
      std::vector<double> w = rounded(hw, rng, c, 0.5f, 1.f);
      std::vector<double> dy = rounded(hdy, rng, (size_t)n * c, 1.f, 0.f);
      std::vector<double> dw0 = rounded(hdw0, rng, c, 1.f, 0.f);
      std::vector<double> y(x.size()), rstd(n), dx(x.size()), dw = dw0;
      cpu_forward(y, rstd, x, w, n, c, eps);
      // backward reference uses the f32-rounded rstd that the GPU sees
      std::vector<float> hr(n);
      for (int r = 0; r < n; ++r) hr[r] = static_cast<float>(rstd[r]);
      std::vector<double> rstd32(hr.begin(), hr.end());
      cpu_backward(dx, dw, dy, x, w, rstd32, n, c);
      T *dxd, *dwd, *dyd, *xd, *wd, *yd, *dxo, *dwo;
      float *rd, *ro;
      const size_t nc = (size_t)n * c;
      CHECK(cudaMalloc(&xd, nc * sizeof(T)));
      CHECK(cudaMalloc(&dyd, nc * sizeof(T)));
      CHECK(cudaMalloc(&yd, nc * sizeof(T)));
      CHECK(cudaMalloc(&dxo, nc * sizeof(T)));
      CHECK(cudaMalloc(&wd, c * sizeof(T)));
      CHECK(cudaMalloc(&dwo, c * sizeof(T)));
      CHECK(cudaMalloc(&rd, n * 4));
      CHECK(cudaMalloc(&ro, n * 4));
      (void)dxd;
      (void)dwd;
      CHECK(cudaMemcpy(xd, hx.data(), nc * sizeof(T), cudaMemcpyHostToDevice));
      CHECK(cudaMemcpy(dyd, hdy.data(), nc * sizeof(T), cudaMemcpyHostToDevice));
      CHECK(cudaMemcpy(wd, hw.data(), c * sizeof(T), cudaMemcpyHostToDevice));
      CHECK(cudaMemcpy(rd, hr.data(), n * 4, cudaMemcpyHostToDevice));
      for (int v = 1; v <= 4; ++v) {
        CHECK(cudaMemset(yd, 0, nc * sizeof(T)));
        if (!forward<T>(v, yd, ro, xd, wd, n, c, (float)eps)) continue;
        CHECK(cudaGetLastError());
        const double ey = rel_err(fetch(yd, nc), y), er = rel_err(fetchf(ro, n), rstd);
        if (!(ey <= tol && er <= tol)) {
          std::printf("FAIL %s forward%d n=%d c=%d: y %.3g rstd %.3g\n", tname, v, n, c, ey, er);
          ++g_failures;
        }
      }
      for (int v = 1; v <= 3; ++v) {
        CHECK(cudaMemcpy(dwo, hdw0.data(), c * sizeof(T), cudaMemcpyHostToDevice));
        CHECK(cudaMemset(dxo, 0, nc * sizeof(T)));
        if (!backward<T>(v, dxo, dwo, dyd, xd, wd, rd, n, c)) continue;
        CHECK(cudaGetLastError());
        const double ex = rel_err(fetch(dxo, nc), dx), ew = rel_err(fetch(dwo, c), dw);
        if (!(ex <= tol && ew <= tol)) {
          std::printf("FAIL %s backward%d n=%d c=%d: dx %.3g dw %.3g\n", tname, v, n, c, ex, ew);
          ++g_failures;
        }
      }
      cudaFree(xd), cudaFree(dyd), cudaFree(yd), cudaFree(dxo), cudaFree(wd), cudaFree(dwo);
      cudaFree(rd), cudaFree(ro);
    }
  std::printf("validated %s: %s\n", tname, g_failures ? "FAILURES" : "all variants ok");
}

template <typename T>
T* upload(const std::vector<T>& h) {
  T* d;
  CHECK(cudaMalloc(&d, h.size() * sizeof(T)));
  CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

size_t mismatches(const std::vector<double>& a, const std::vector<double>& b) {
  size_t m = 0;
  for (size_t i = 0; i < a.size(); ++i) m += !(a[i] == b[i]);
  return m;
}

// The residual forms: every variant against the CPU reference (h exactly, y, rstd, dx, dw to
// tol), and each variant's bits against variant 1's, the separate passes the engine ran before.
template <typename T>
void validate_residual(const char* tname, double tol) {
  const int rows[] = {1, 7, 33, 257, 4097}, cols[] = {64, 80, 128, 256, 1000, 4096, 4099};
  const double eps = 1e-5;
  for (int n : rows)
    for (int c : cols) {
      std::mt19937 rng(n * 137 + c);
      const size_t nc = (size_t)n * c;
      std::vector<T> hx, ha, hw, hdy, hres, hdw0;
      std::vector<double> x = rounded(hx, rng, nc, 1.f, 0.f), a = rounded(ha, rng, nc, 1.f, 0.f);
      std::vector<double> w = rounded(hw, rng, c, 0.5f, 1.f);
      std::vector<double> dy = rounded(hdy, rng, nc, 1.f, 0.f);
      std::vector<double> res = rounded(hres, rng, nc, 1.f, 0.f);
      std::vector<double> dw0 = rounded(hdw0, rng, c, 1.f, 0.f);
      std::vector<double> h(nc), y(nc), rstd(n), dx(nc), dw = dw0;
      for (size_t i = 0; i < nc; ++i)  // the f32 sum rounded to T, as the device stores h
        h[i] = host_to(host_from<T>(static_cast<float>(x[i]) + static_cast<float>(a[i])));
      cpu_forward(y, rstd, h, w, n, c, eps);
      std::vector<float> hr(n);
      for (int r = 0; r < n; ++r) hr[r] = static_cast<float>(rstd[r]);
      cpu_backward(dx, dw, dy, h, w, std::vector<double>(hr.begin(), hr.end()), n, c);
      for (size_t i = 0; i < nc; ++i) dx[i] += res[i];
      std::vector<T> hh(nc);
      for (size_t i = 0; i < nc; ++i) hh[i] = host_from<T>(static_cast<float>(h[i]));
      T *xd = upload(hx), *ad = upload(ha), *wd = upload(hw), *dyd = upload(hdy),
        *resd = upload(hres), *hd = upload(hh), *ho, *yo, *dxo, *dwo;
      float *rd = upload(hr), *ro;
      CHECK(cudaMalloc(&ho, nc * sizeof(T)));
      CHECK(cudaMalloc(&yo, nc * sizeof(T)));
      CHECK(cudaMalloc(&dxo, nc * sizeof(T)));
      CHECK(cudaMalloc(&dwo, c * sizeof(T)));
      CHECK(cudaMalloc(&ro, n * 4));
      std::vector<double> y1, r1, dx1, dw1;
      for (int v = 1; v <= 4; ++v) {
        CHECK(cudaMemset(ho, 0xff, nc * sizeof(T)));  // NaN in f32 and bf16
        CHECK(cudaMemset(yo, 0xff, nc * sizeof(T)));
        if (!add_forward<T>(v, ho, yo, ro, xd, ad, wd, n, c, (float)eps)) continue;
        CHECK(cudaGetLastError());
        const std::vector<double> gh = fetch(ho, nc), gy = fetch(yo, nc), gr = fetchf(ro, n);
        const size_t mh = mismatches(gh, h);
        const double ey = rel_err(gy, y), er = rel_err(gr, rstd);
        if (v == 1) y1 = gy, r1 = gr;
        const size_t bits = mismatches(gy, y1) + mismatches(gr, r1);
        if (!(mh == 0 && ey <= tol && er <= tol) || (v == 2 && bits)) {
          std::printf(
              "FAIL %s add forward%d n=%d c=%d: h %zu wrong, y %.3g rstd %.3g, %zu not as "
              "variant 1\n",
              tname, v, n, c, mh, ey, er, bits);
          ++g_failures;
        }
      }
      for (int v = 1; v <= 2; ++v) {
        CHECK(cudaMemcpy(dwo, hdw0.data(), c * sizeof(T), cudaMemcpyHostToDevice));
        CHECK(cudaMemset(dxo, 0xff, nc * sizeof(T)));
        if (!residual_backward<T>(v, dxo, dwo, dyd, hd, wd, rd, resd, n, c)) continue;
        CHECK(cudaGetLastError());
        const std::vector<double> gdx = fetch(dxo, nc), gdw = fetch(dwo, c);
        const double ex = rel_err(gdx, dx), ew = rel_err(gdw, dw);
        if (v == 1) dx1 = gdx, dw1 = gdw;
        const size_t bits = mismatches(gdx, dx1) + mismatches(gdw, dw1);
        if (!(ex <= tol && ew <= tol) || bits) {
          std::printf(
              "FAIL %s residual backward%d n=%d c=%d: dx %.3g dw %.3g, %zu not as "
              "variant 1\n",
              tname, v, n, c, ex, ew, bits);
          ++g_failures;
        }
      }
      for (void* p : {(void*)xd, (void*)ad, (void*)wd, (void*)dyd, (void*)resd, (void*)hd,
                      (void*)ho, (void*)yo, (void*)dxo, (void*)dwo, (void*)rd, (void*)ro})
        cudaFree(p);
    }
  std::printf("validated %s residual forms: %s\n", tname, g_failures ? "FAILURES" : "all ok");
}

template <typename F>
float time_ms(F&& f, int reps = 20) {
  for (int i = 0; i < 3; ++i) f();
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  CHECK(cudaEventRecord(a));
  for (int i = 0; i < reps; ++i) f();
  CHECK(cudaEventRecord(b));
  CHECK(cudaEventSynchronize(b));
  float ms;
  CHECK(cudaEventElapsedTime(&ms, a, b));
  CHECK(cudaGetLastError());
  return ms / reps;
}

template <typename T>
void bench(const char* tname, int n, int c) {
  const size_t nc = (size_t)n * c;
  T *x, *y, *dy, *dx, *w, *dw;
  float* rstd;
  CHECK(cudaMalloc(&x, nc * sizeof(T)));
  CHECK(cudaMalloc(&y, nc * sizeof(T)));
  CHECK(cudaMalloc(&dy, nc * sizeof(T)));
  CHECK(cudaMalloc(&dx, nc * sizeof(T)));
  CHECK(cudaMalloc(&w, c * sizeof(T)));
  CHECK(cudaMalloc(&dw, c * sizeof(T)));
  CHECK(cudaMalloc(&rstd, n * 4));
  CHECK(cudaMemset(x, 0, nc * sizeof(T)));  // zeros of float and bf16 alike; timing only
  CHECK(cudaMemset(dy, 0, nc * sizeof(T)));
  CHECK(cudaMemset(w, 0, c * sizeof(T)));
  CHECK(cudaMemset(dw, 0, c * sizeof(T)));
  CHECK(cudaMemset(rstd, 0, n * 4));
  const double fwd_bytes = 2.0 * nc * sizeof(T), bwd_bytes = 3.0 * nc * sizeof(T);
  for (int v = 1; v <= 4; ++v)
    for (int block : {128, 256, 512, 1024}) {
      if (v == 1 && block != 128) continue;
      if (v == 1 && n * (size_t)c * sizeof(T) > (size_t)1 << 30) continue;
      bool ok = true;
      const float ms =
          time_ms([&] { ok = forward<T>(v, y, rstd, x, w, n, c, 1e-5f, block); }, v == 1 ? 3 : 20);
      if (!ok) continue;
      std::printf("%s forward%d  block %4d  %dx%d: %8.4f ms  %7.1f GB/s\n", tname, v, block, n, c,
                  ms, fwd_bytes / ms / 1e6);
    }
  for (int v = 1; v <= 3; ++v)
    for (int block : {128, 256, 512, 1024}) {
      if (v == 1 && block != 128) continue;
      bool ok = true;
      const float ms = time_ms([&] { ok = backward<T>(v, dx, dw, dy, x, w, rstd, n, c, block); },
                               v == 1 ? 3 : 20);
      if (!ok) continue;
      std::printf("%s backward%d block %4d  %dx%d: %8.4f ms  %7.1f GB/s\n", tname, v, block, n, c,
                  ms, bwd_bytes / ms / 1e6);
    }
  cudaFree(x), cudaFree(y), cudaFree(dy), cudaFree(dx), cudaFree(w), cudaFree(dw), cudaFree(rstd);
}

template <typename T>
void bench_residual(const char* tname, int n, int c) {
  const size_t nc = (size_t)n * c;
  T *x, *a, *h, *y, *w, *dx, *dw;
  float* rstd;
  for (T** p : {&x, &a, &h, &y, &dx}) {
    CHECK(cudaMalloc(p, nc * sizeof(T)));
    CHECK(cudaMemset(*p, 0, nc * sizeof(T)));  // zeros of float and bf16 alike; timing only
  }
  CHECK(cudaMalloc(&w, c * sizeof(T)));
  CHECK(cudaMalloc(&dw, c * sizeof(T)));
  CHECK(cudaMalloc(&rstd, n * 4));
  CHECK(cudaMemset(w, 0, c * sizeof(T)));
  CHECK(cudaMemset(dw, 0, c * sizeof(T)));
  CHECK(cudaMemset(rstd, 0, n * 4));
  const double fwd_bytes = 4.0 * nc * sizeof(T), bwd_bytes = 4.0 * nc * sizeof(T);
  for (int v = 1; v <= 4; ++v) {
    bool ok = true;
    const float ms = time_ms([&] { ok = add_forward<T>(v, h, y, rstd, x, a, w, n, c, 1e-5f); });
    if (!ok) continue;
    std::printf("%s add forward%d       %dx%d: %8.4f ms  %7.1f GB/s\n", tname, v, n, c, ms,
                fwd_bytes / ms / 1e6);
  }
  // dy = y, x = h, residual = a.
  for (int v = 1; v <= 2; ++v) {
    const float ms = time_ms([&] { residual_backward<T>(v, dx, dw, y, h, w, rstd, a, n, c); });
    std::printf("%s residual backward%d %dx%d: %8.4f ms  %7.1f GB/s\n", tname, v, n, c, ms,
                bwd_bytes / ms / 1e6);
  }
  for (void* p :
       {(void*)x, (void*)a, (void*)h, (void*)y, (void*)dx, (void*)w, (void*)dw, (void*)rstd})
    cudaFree(p);
}

}  // namespace lab

int main(int argc, char** argv) {
  using namespace lab;
  CHECK(cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, 0));
  CHECK(cudaMalloc(&g_partial, (size_t)g_sms * kBlocksPerSm * kMaxC * sizeof(float)));
  validate<float>("f32", 1e-5);
  validate<bf16>("bf16", 2e-2);
  validate_residual<float>("f32", 1e-5);
  validate_residual<bf16>("bf16", 2e-2);
  const int n = argc > 1 ? std::atoi(argv[1]) : 16384, c = argc > 2 ? std::atoi(argv[2]) : 4096;
  bench<float>("f32 ", n, c);
  bench<bf16>("bf16", n, c);
  bench_residual<float>("f32 ", n, c);
  bench_residual<bf16>("bf16", n, c);
  bench_residual<bf16>("bf16", 2048, 4096);  // one Llama-3.1-8B block's rows at T 2048
  return g_failures ? 1 : 0;
}
