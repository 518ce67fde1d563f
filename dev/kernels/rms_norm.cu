// RMSNorm forward and backward, the kernel lab (llm.c dev/cuda style). Standalone:
//   nvcc -O3 -std=c++20 -gencode arch=compute_90a,code=sm_90a dev/kernels/rms_norm.cu -o
//   /tmp/rms_norm
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
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#define CHECK(stmt)                                                        \
  do {                                                                     \
    cudaError_t e_ = (stmt);                                               \
    if (e_ != cudaSuccess) {                                               \
      std::fprintf(stderr, "%s at %s:%d: %s\n", #stmt, __FILE__, __LINE__, \
                   cudaGetErrorString(e_));                                \
      std::exit(1);                                                        \
    }                                                                      \
  } while (0)

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

int main(int argc, char** argv) {
  CHECK(cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, 0));
  CHECK(cudaMalloc(&g_partial, (size_t)g_sms * kBlocksPerSm * kMaxC * sizeof(float)));
  validate<float>("f32", 1e-5);
  validate<bf16>("bf16", 2e-2);
  const int n = argc > 1 ? std::atoi(argv[1]) : 16384, c = argc > 2 ? std::atoi(argv[2]) : 4096;
  bench<float>("f32 ", n, c);
  bench<bf16>("bf16", n, c);
  return g_failures ? 1 : 0;
}
