// LayerNorm forward and backward, the kernel lab (llm.c dev/cuda style). Standalone:
//   nvcc -O3 -std=c++20 -gencode arch=compute_90a,code=sm_90a dev/kernels/layer_norm.cu -o
//   /tmp/layer_norm && /tmp/layer_norm [N C]
// y = (x - mean) * rstd * w + b per row; mean, rstd saved (f32). Backward with
// xhat = (x - mean) * rstd, g = w * dy:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dw += sum_rows dy * xhat,  db += sum_rows
//   dy.
// Math in f32; T is float or bf16. dw, db deterministic (no float atomics).
// The design questions beyond RMSNorm's (dev/kernels/rms_norm.cu): the variance in two passes
// (mean first, then mean((x - mean)^2); the second pass reads the row from L1/L2) against one pass
// of sum and sum of squares (cancels when |mean| >> std: GPT-2's residual stream has such rows);
// and the backward's two row sums and two column partials.
// Measured on an H100 (80GB HBM3), 2026-11-23, N = 16384 (bytes: forward x read + y written,
// backward dy, x read + dx written):
//   forward  bf16 C=768: 2: 2.27 TB/s  3: 2.36  4 (one pass): 2.51; C=1600: 2: 2.39  3: 2.44
//            4: 2.18. f32 C=768: 2: 2.50  3: 2.60; C=1600: 2: 2.29  3: 2.71. Variant 4 fails the
//            offset-300 check (y error ~4e-3, two passes ~1e-5), so norm.cu keeps two passes.
//   backward C=768:  f32 2: 0.096 ms (1.57 TB/s) -> 3: 0.071 ms (2.12); bf16 2: 0.104 (0.72) -> 3:
//            0.100 (0.75). C=1600: f32 2: 0.157 (2.00) -> 3: 0.131 (2.40); bf16 2: 0.170 (0.92)
//            -> 3: 0.159 (0.99). bf16 backward stays latency-bound (two block sums per row).
// Variants:
//   forward  1: one thread per row, two passes
//            2: one warp per row, 128-bit loads, two passes (src/backend/cuda/norm.cu, short rows)
//            3: one block per row, 128-bit loads, two passes (norm.cu, long rows)
//            4: one warp per row, 128-bit loads, one pass of sum and sum of squares
//   backward 1: dx one thread per row, dw/db one thread per column walking the rows
//            2: row-striding blocks, 128-bit loads, dw/db partials in shared memory per block,
//               then a column pass over the partials in block order (4 blocks per SM)
//            3: as 2 with enough blocks for ~1536 threads per SM (GPT-2's rows give blocks of
//               96-200 threads), and a column pass with 8 lanes per column, each summing every
//               8th block in order, then the 8 lane sums in order (still deterministic)
//            4: as 3 with the shared dw/db sums laid out [V][c / V] (3 keeps them by column, so a
//               warp's lanes are V floats apart: 8-way bank conflicts in bf16, 4-way in f32, on
//               2V read-modify-writes per row, ~0.2 ms of shared-memory wavefronts at 65536 x 768
//               bf16 by count) and the two row sums in one block exchange (2 barriers, not 4);
//               bitwise variant 3 (checked), and optionally the residual add fused into dx
//               (norm.cu). Not yet timed: run the lab on an H100 and record it here.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
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
__global__ void fwd1(T* y, float* mean, float* rstd, const T* x, const T* w, const T* b, int n,
                     int c, float eps) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const T* xr = x + (int64_t)r * c;
  T* yr = y + (int64_t)r * c;
  float s = 0;
  for (int j = 0; j < c; ++j) s += to_f(xr[j]);
  const float mu = s / c;
  float ss = 0;
  for (int j = 0; j < c; ++j) ss += (to_f(xr[j]) - mu) * (to_f(xr[j]) - mu);
  const float rs = rsqrtf(ss / c + eps);
  mean[r] = mu;
  rstd[r] = rs;
  for (int j = 0; j < c; ++j) yr[j] = from_f<T>((to_f(xr[j]) - mu) * rs * to_f(w[j]) + to_f(b[j]));
}

// lanes threads own the row; sum reduces over them. one_pass: sum and sum of squares together.
template <typename T, int V, bool OnePass, typename Sum>
__device__ __forceinline__ void row(T* yr, float* mean, float* rstd, const T* xr, const T* w,
                                    const T* b, int c, float eps, int lane, int lanes, Sum sum) {
  float s = 0, sq = 0;
  for (int j = lane * V; j < c; j += lanes * V) {
    const Pack<T, V> p = load<T, V>(xr + j);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float v = to_f(p.v[k]);
      s += v;
      if (OnePass) sq += v * v;
    }
  }
  const float mu = sum(s) / c;
  float var;
  if (OnePass) {
    var = fmaxf(sum(sq) / c - mu * mu, 0.f);
  } else {
    float ss = 0;
    for (int j = lane * V; j < c; j += lanes * V) {
      const Pack<T, V> p = load<T, V>(xr + j);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float d = to_f(p.v[k]) - mu;
        ss += d * d;
      }
    }
    var = sum(ss) / c;
  }
  const float rs = rsqrtf(var + eps);
  if (lane == 0) {
    *mean = mu;
    *rstd = rs;
  }
  for (int j = lane * V; j < c; j += lanes * V) {
    const Pack<T, V> px = load<T, V>(xr + j), pw = load<T, V>(w + j), pb = load<T, V>(b + j);
    Pack<T, V> py;
#pragma unroll
    for (int k = 0; k < V; ++k)
      py.v[k] = from_f<T>((to_f(px.v[k]) - mu) * rs * to_f(pw.v[k]) + to_f(pb.v[k]));
    store<T, V>(yr + j, py);
  }
}

template <typename T, int V, bool OnePass>
__global__ void fwd_warp(T* y, float* mean, float* rstd, const T* x, const T* w, const T* b, int n,
                         int c, float eps) {
  const int r = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
  if (r >= n) return;
  const int64_t off = (int64_t)r * c;
  row<T, V, OnePass>(y + off, mean + r, rstd + r, x + off, w, b, c, eps, threadIdx.x % 32, 32,
                     [](float v) { return warp_sum(v); });
}

template <typename T, int V>
__global__ void fwd_block(T* y, float* mean, float* rstd, const T* x, const T* w, const T* b, int c,
                          float eps) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  row<T, V, false>(y + r * c, mean + r, rstd + r, x + r * c, w, b, c, eps, threadIdx.x, blockDim.x,
                   [&](float v) { return block_sum(v, scratch); });
}

// ---------------- backward ----------------
template <typename T>
__global__ void bwd1_dx(T* dx, const T* dy, const T* x, const T* w, const float* mean,
                        const float* rstd, int n, int c) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const T* dyr = dy + (int64_t)r * c;
  const T* xr = x + (int64_t)r * c;
  T* dxr = dx + (int64_t)r * c;
  const float mu = mean[r], rs = rstd[r];
  float sg = 0, sgx = 0;
  for (int j = 0; j < c; ++j) {
    const float g = to_f(w[j]) * to_f(dyr[j]);
    sg += g;
    sgx += g * (to_f(xr[j]) - mu) * rs;
  }
  const float mg = sg / c, mgx = sgx / c;
  for (int j = 0; j < c; ++j) {
    const float xhat = (to_f(xr[j]) - mu) * rs;
    dxr[j] = from_f<T>(rs * (to_f(w[j]) * to_f(dyr[j]) - mg - xhat * mgx));
  }
}
template <typename T>
__global__ void bwd1_dwdb(T* dw, T* db, const T* dy, const T* x, const float* mean,
                          const float* rstd, int n, int c) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  float aw = 0, ab = 0;
  for (int r = 0; r < n; ++r) {
    const float d = to_f(dy[(int64_t)r * c + j]);
    aw += d * (to_f(x[(int64_t)r * c + j]) - mean[r]) * rstd[r];
    ab += d;
  }
  dw[j] = from_f<T>(to_f(dw[j]) + aw);
  db[j] = from_f<T>(to_f(db[j]) + ab);
}

// Two block sums in one exchange (two barriers, not four); bitwise block_sum's totals.
__device__ __forceinline__ float2 block_sum2(float a, float b, float2* scratch) {
  const int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
  a = warp_sum(a);
  b = warp_sum(b);
  __syncthreads();
  if (lane == 0) scratch[wid] = make_float2(a, b);
  __syncthreads();
  const float2 v = lane < nw ? scratch[lane] : make_float2(0.f, 0.f);
  return make_float2(warp_sum(v.x), warp_sum(v.y));
}

// Packed (variant 4): the shared dw/db sums laid out [V][c / V] per half (lanes on consecutive
// words; by column, lanes sit V floats apart: 8-way bank conflicts in bf16 on 2V read-modify-writes
// per row), and the two row sums in one block_sum2. residual (null: none) is added to dx after
// dx is rounded, as a separate add would.
template <typename T, int V, bool Packed>
__global__ void bwd_block(T* dx, float* partial, const T* dy, const T* x, const T* w,
                          const float* mean, const float* rstd, const T* residual, int n, int c) {
  extern __shared__ float acc[];  // [2c]: dw sums, then db sums
  __shared__ float2 scratch2[32];
  float* scratch = reinterpret_cast<float*>(scratch2);
  const int ks = Packed ? c / V : 1;
  auto at = [&](int j) { return Packed ? j / V : j; };
  for (int j = threadIdx.x * V; j < c; j += blockDim.x * V)
#pragma unroll
    for (int k = 0; k < V; ++k) acc[at(j) + k * ks] = acc[c + at(j) + k * ks] = 0.f;
  for (int r = blockIdx.x; r < n; r += gridDim.x) {
    const T* dyr = dy + (int64_t)r * c;
    const T* xr = x + (int64_t)r * c;
    T* dxr = dx + (int64_t)r * c;
    const float mu = mean[r], rs = rstd[r];
    float sg = 0, sgx = 0;
    for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
      const Pack<T, V> pdy = load<T, V>(dyr + j), px = load<T, V>(xr + j), pw = load<T, V>(w + j);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float g = to_f(pw.v[k]) * to_f(pdy.v[k]);
        sg += g;
        sgx += g * (to_f(px.v[k]) - mu);
      }
    }
    float mg, mgx;
    if constexpr (Packed) {
      const float2 t = block_sum2(sg, sgx, scratch2);
      mg = t.x / c, mgx = t.y * rs / c;
    } else {
      mg = block_sum(sg, scratch) / c, mgx = block_sum(sgx, scratch) * rs / c;
    }
    const T* resr = residual ? residual + (int64_t)r * c : nullptr;
    for (int j = threadIdx.x * V; j < c; j += blockDim.x * V) {
      const Pack<T, V> pdy = load<T, V>(dyr + j), px = load<T, V>(xr + j), pw = load<T, V>(w + j);
      Pack<T, V> pdx;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float d = to_f(pdy.v[k]), xhat = (to_f(px.v[k]) - mu) * rs;
        acc[at(j) + k * ks] += d * xhat;
        acc[c + at(j) + k * ks] += d;
        pdx.v[k] = from_f<T>(rs * (to_f(pw.v[k]) * d - mg - xhat * mgx));
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
  float* out = partial + (int64_t)blockIdx.x * 2 * c;
  for (int j = threadIdx.x * V; j < c; j += blockDim.x * V)
#pragma unroll
    for (int k = 0; k < V; ++k)
      out[j + k] = acc[at(j) + k * ks], out[c + j + k] = acc[c + at(j) + k * ks];
}

template <typename T>
__global__ void dwdb_reduce(T* dw, T* db, const float* partial, int blocks, int c) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= c) return;
  float sw = 0, sb = 0;
  for (int b = 0; b < blocks; ++b) {
    sw += partial[(int64_t)b * 2 * c + j];
    sb += partial[(int64_t)b * 2 * c + c + j];
  }
  dw[j] = from_f<T>(to_f(dw[j]) + sw);
  db[j] = from_f<T>(to_f(db[j]) + sb);
}

// dw[j] += sum over blocks of partial[b, j] (db likewise from column c + j): lane ty of 8 sums
// blocks ty, ty + 8, ... in order, then the 8 lane sums are added in lane order.
template <typename T>
__global__ void dwdb_reduce_lanes(T* dw, T* db, const float* partial, int blocks, int c) {
  __shared__ float lw[8][32], lb[8][32];
  const int tx = threadIdx.x, ty = threadIdx.y, j = blockIdx.x * 32 + tx;
  float sw = 0, sb = 0;
  if (j < c) {
    for (int b = ty; b < blocks; b += 8) {
      sw += partial[(int64_t)b * 2 * c + j];
      sb += partial[(int64_t)b * 2 * c + c + j];
    }
  }
  lw[ty][tx] = sw;
  lb[ty][tx] = sb;
  __syncthreads();
  if (ty == 0 && j < c) {
    float w = 0, bsum = 0;
#pragma unroll
    for (int l = 0; l < 8; ++l) w += lw[l][tx], bsum += lb[l][tx];
    dw[j] = from_f<T>(to_f(dw[j]) + w);
    db[j] = from_f<T>(to_f(db[j]) + bsum);
  }
}

// ---------------- launchers ----------------
int g_sms = 0;
float* g_partial = nullptr;  // [kMaxBlocks, 2 * kMaxC]
constexpr int kMaxC = 6144, kBlocksPerSm = 4, kMaxBlocksPerSm = 16;

template <typename T>
constexpr int vec() {
  return 16 / sizeof(T);
}

template <typename T>
bool forward(int variant, T* y, float* mean, float* rstd, const T* x, const T* w, const T* b, int n,
             int c, float eps, int block = 256) {
  constexpr int V = vec<T>();
  if (variant != 1 && c % V) return false;
  switch (variant) {
    case 1:
      if (block != 128) return false;
      fwd1<<<(n + 127) / 128, 128>>>(y, mean, rstd, x, w, b, n, c, eps);
      return true;
    case 2:
      fwd_warp<T, V, false>
          <<<(n * 32 + block - 1) / block, block>>>(y, mean, rstd, x, w, b, n, c, eps);
      return true;
    case 3: {
      const int threads = std::min(block, ((c / V + 31) / 32) * 32);
      if (threads != block && block != 256) return false;
      fwd_block<T, V><<<n, threads>>>(y, mean, rstd, x, w, b, c, eps);
      return true;
    }
    case 4:
      fwd_warp<T, V, true>
          <<<(n * 32 + block - 1) / block, block>>>(y, mean, rstd, x, w, b, n, c, eps);
      return true;
  }
  return false;
}

// residual (not null) only with variant 4: dx += residual in the same pass.
template <typename T>
bool backward(int variant, T* dx, T* dw, T* db, const T* dy, const T* x, const T* w,
              const float* mean, const float* rstd, int n, int c, int block = 256,
              const T* residual = nullptr) {
  constexpr int V = vec<T>();
  if (residual && variant != 4) return false;
  if (variant == 1) {
    if (block != 128) return false;
    bwd1_dx<<<(n + 127) / 128, 128>>>(dx, dy, x, w, mean, rstd, n, c);
    bwd1_dwdb<<<(c + 127) / 128, 128>>>(dw, db, dy, x, mean, rstd, n, c);
    return true;
  }
  if (variant < 2 || variant > 4 || c % V) return false;
  const int threads = std::min(block, ((c / V + 31) / 32) * 32);
  if (threads != block && block != 256) return false;
  const int per_sm =
      variant == 2 ? kBlocksPerSm : std::clamp(1536 / threads, kBlocksPerSm, kMaxBlocksPerSm);
  const int grid = std::min(n, g_sms * per_sm);
  if (variant == 4) {
    bwd_block<T, V, true><<<grid, threads, 2 * c * sizeof(float)>>>(dx, g_partial, dy, x, w, mean,
                                                                    rstd, residual, n, c);
  } else {
    bwd_block<T, V, false><<<grid, threads, 2 * c * sizeof(float)>>>(dx, g_partial, dy, x, w, mean,
                                                                     rstd, nullptr, n, c);
  }
  if (variant == 2) {
    dwdb_reduce<<<(c + 255) / 256, 256>>>(dw, db, g_partial, grid, c);
  } else {
    dwdb_reduce_lanes<<<(c + 31) / 32, dim3(32, 8)>>>(dw, db, g_partial, grid, c);
  }
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

void cpu_forward(std::vector<double>& y, std::vector<double>& mean, std::vector<double>& rstd,
                 const std::vector<double>& x, const std::vector<double>& w,
                 const std::vector<double>& b, int n, int c, double eps) {
  for (int r = 0; r < n; ++r) {
    const double* xr = &x[(size_t)r * c];
    double s = 0;
    for (int j = 0; j < c; ++j) s += xr[j];
    const double mu = s / c;
    double ss = 0;
    for (int j = 0; j < c; ++j) ss += (xr[j] - mu) * (xr[j] - mu);
    mean[r] = mu;
    rstd[r] = 1.0 / std::sqrt(ss / c + eps);
    for (int j = 0; j < c; ++j) y[(size_t)r * c + j] = (xr[j] - mu) * rstd[r] * w[j] + b[j];
  }
}
void cpu_backward(std::vector<double>& dx, std::vector<double>& dw, std::vector<double>& db,
                  const std::vector<double>& dy, const std::vector<double>& x,
                  const std::vector<double>& w, const std::vector<double>& mean,
                  const std::vector<double>& rstd, int n, int c) {
  for (int r = 0; r < n; ++r) {
    double sg = 0, sgx = 0;
    for (int j = 0; j < c; ++j) {
      const size_t i = (size_t)r * c + j;
      const double g = w[j] * dy[i];
      sg += g;
      sgx += g * (x[i] - mean[r]) * rstd[r];
    }
    for (int j = 0; j < c; ++j) {
      const size_t i = (size_t)r * c + j;
      const double xhat = (x[i] - mean[r]) * rstd[r];
      dx[i] = rstd[r] * (w[j] * dy[i] - sg / c - xhat * sgx / c);
      dw[j] += dy[i] * xhat;
      db[j] += dy[i];
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
T* upload(const std::vector<T>& h) {
  T* d;
  CHECK(cudaMalloc(&d, h.size() * sizeof(T)));
  CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}
template <typename T>
std::vector<double> fetch(const T* d, size_t count) {
  std::vector<T> h(count);
  CHECK(cudaMemcpy(h.data(), d, count * sizeof(T), cudaMemcpyDeviceToHost));
  std::vector<double> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = host_to(h[i]);
  return out;
}

int g_failures = 0;

// offset: the rows' mean in units of their spread (the one-pass variance's weak spot).
template <typename T>
void validate(const char* tname, double tol, float offset) {
  const int rows[] = {1, 7, 33, 257}, cols[] = {64, 80, 768, 1600};
  const double eps = 1e-5;
  const int failures_before = g_failures;
  for (int n : rows)
    for (int c : cols) {
      std::mt19937 rng(n * 131 + c);
      std::vector<T> hx, hw, hb, hdy, hdw0, hdb0;
      std::vector<double> x = rounded(hx, rng, (size_t)n * c, 1.f, offset);
      std::vector<double> w = rounded(hw, rng, c, 0.5f, 1.f), b = rounded(hb, rng, c, 0.5f, 0.f);
      std::vector<double> dy = rounded(hdy, rng, (size_t)n * c, 1.f, 0.f);
      std::vector<double> dw = rounded(hdw0, rng, c, 1.f, 0.f),
                          db = rounded(hdb0, rng, c, 1.f, 0.f);
      std::vector<double> y(x.size()), mean(n), rstd(n), dx(x.size());
      cpu_forward(y, mean, rstd, x, w, b, n, c, eps);
      std::vector<float> hm(mean.begin(), mean.end()), hr(rstd.begin(), rstd.end());
      std::vector<double> m32(hm.begin(), hm.end()), r32(hr.begin(), hr.end());
      cpu_backward(dx, dw, db, dy, x, w, m32, r32, n, c);
      const size_t nc = (size_t)n * c;
      T *xd = upload(hx), *wd = upload(hw), *bd = upload(hb), *dyd = upload(hdy);
      float *md = upload(hm), *rd = upload(hr);
      T *yo, *dxo, *dwo, *dbo;
      float *mo, *ro;
      CHECK(cudaMalloc(&yo, nc * sizeof(T)));
      CHECK(cudaMalloc(&dxo, nc * sizeof(T)));
      CHECK(cudaMalloc(&dwo, c * sizeof(T)));
      CHECK(cudaMalloc(&dbo, c * sizeof(T)));
      CHECK(cudaMalloc(&mo, n * 4));
      CHECK(cudaMalloc(&ro, n * 4));
      for (int v = 1; v <= 4; ++v) {
        if (!forward<T>(v, yo, mo, ro, xd, wd, bd, n, c, (float)eps, v == 1 ? 128 : 256)) continue;
        CHECK(cudaGetLastError());
        const double ey = rel_err(fetch(yo, nc), y), em = rel_err(fetch(mo, n), mean),
                     er = rel_err(fetch(ro, n), rstd);
        // With a large offset the f32 mean's rounding (|mean| * 2^-24 * sqrt(c)) bounds y's
        // error near 1e-5 of its spread even for an exact variance; the one-pass variance loses
        // far more.
        const double ty = offset > 0 ? 3e-4 : tol;
        if (!(ey <= ty && em <= 1e-5 && er <= 1e-4)) {
          std::printf("%s %s forward%d n=%d c=%d offset %g: y %.3g mean %.3g rstd %.3g\n",
                      v == 4 ? "(expected) fail" : "FAIL", tname, v, n, c, offset, ey, em, er);
          if (v != 4) ++g_failures;
        }
      }
      // Variant 4 must reproduce variant 3 bit for bit (same arithmetic, sums laid out and
      // exchanged differently), and with a residual, variant 4 then a separate add.
      std::vector<T> raw3(nc + 2 * c), raw4(nc + 2 * c);
      auto raw = [&](std::vector<T>& out) {
        CHECK(cudaMemcpy(out.data(), dxo, nc * sizeof(T), cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(out.data() + nc, dwo, c * sizeof(T), cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(out.data() + nc + c, dbo, c * sizeof(T), cudaMemcpyDeviceToHost));
      };
      for (int v = 1; v <= 4; ++v) {
        CHECK(cudaMemcpy(dwo, hdw0.data(), c * sizeof(T), cudaMemcpyHostToDevice));
        CHECK(cudaMemcpy(dbo, hdb0.data(), c * sizeof(T), cudaMemcpyHostToDevice));
        if (!backward<T>(v, dxo, dwo, dbo, dyd, xd, wd, md, rd, n, c, v == 1 ? 128 : 256)) continue;
        CHECK(cudaGetLastError());
        const double ex = rel_err(fetch(dxo, nc), dx), ew = rel_err(fetch(dwo, c), dw),
                     eb = rel_err(fetch(dbo, c), db);
        if (!(ex <= tol && ew <= tol && eb <= tol)) {
          std::printf("FAIL %s backward%d n=%d c=%d: dx %.3g dw %.3g db %.3g\n", tname, v, n, c, ex,
                      ew, eb);
          ++g_failures;
        }
        if (v == 3) raw(raw3);
        if (v == 4) {
          raw(raw4);
          if (std::memcmp(raw3.data(), raw4.data(), raw3.size() * sizeof(T)) != 0) {
            std::printf("FAIL %s backward4 n=%d c=%d: not bitwise backward3\n", tname, n, c);
            ++g_failures;
          }
        }
      }
      if (c % vec<T>() == 0) {
        std::vector<T> hres;
        rounded(hres, rng, nc, 1.f, 0.f);
        T* resd = upload(hres);
        CHECK(cudaMemcpy(dwo, hdw0.data(), c * sizeof(T), cudaMemcpyHostToDevice));
        CHECK(cudaMemcpy(dbo, hdb0.data(), c * sizeof(T), cudaMemcpyHostToDevice));
        backward<T>(4, dxo, dwo, dbo, dyd, xd, wd, md, rd, n, c, 256, resd);
        CHECK(cudaGetLastError());
        std::vector<T> fused(nc + 2 * c);
        raw(fused);
        for (size_t i = 0; i < nc; ++i) raw4[i] = host_from<T>(host_to(raw4[i]) + host_to(hres[i]));
        if (std::memcmp(fused.data(), raw4.data(), fused.size() * sizeof(T)) != 0) {
          std::printf("FAIL %s backward4 + residual n=%d c=%d: not bitwise backward4 then add\n",
                      tname, n, c);
          ++g_failures;
        }
        cudaFree(resd);
      }
      cudaFree(xd), cudaFree(wd), cudaFree(bd), cudaFree(dyd), cudaFree(md), cudaFree(rd);
      cudaFree(yo), cudaFree(dxo), cudaFree(dwo), cudaFree(dbo), cudaFree(mo), cudaFree(ro);
    }
  std::printf("validated %s offset %g: %s\n", tname, offset,
              g_failures > failures_before ? "FAILURES" : "all variants ok");
}

// Timing data: uniform values in [-scale, scale) from a hash of the index (zeros would time a
// different kernel: one branch always taken, no rescaling).
template <typename T>
__global__ void fill_random(T* x, size_t n, float scale, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 0x9E3779B1u ^ seed;
    h ^= h >> 15, h *= 0x85EBCA77u, h ^= h >> 13, h *= 0xC2B2AE3Du, h ^= h >> 16;
    x[i] = from_f<T>(scale * ((float)h * 2.3283064e-10f * 2.f - 1.f));
  }
}
template <typename T>
void randomize(T* x, size_t n, float scale, uint32_t seed) {
  fill_random<T><<<1024, 256>>>(x, n, scale, seed);
  CHECK(cudaGetLastError());
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
  T *x, *y, *dy, *dx, *w, *b, *dw, *db;
  float *mean, *rstd;
  CHECK(cudaMalloc(&x, nc * sizeof(T)));
  CHECK(cudaMalloc(&y, nc * sizeof(T)));
  CHECK(cudaMalloc(&dy, nc * sizeof(T)));
  CHECK(cudaMalloc(&dx, nc * sizeof(T)));
  for (T** p : {&w, &b, &dw, &db}) CHECK(cudaMalloc(p, c * sizeof(T)));
  CHECK(cudaMalloc(&mean, n * 4));
  CHECK(cudaMalloc(&rstd, n * 4));
  randomize(x, nc, 2.f, 1);
  randomize(dy, nc, 1.f, 2);
  for (T* p : {w, b, dw, db}) randomize(p, c, 1.f, 3);
  randomize(mean, n, 0.1f, 4);
  randomize(rstd, n, 1.f, 5);
  const double fwd_bytes = 2.0 * nc * sizeof(T), bwd_bytes = 3.0 * nc * sizeof(T);
  for (int v = 1; v <= 4; ++v)
    for (int block : {128, 256, 512, 1024}) {
      bool ok = true;
      const float ms = time_ms(
          [&] { ok = forward<T>(v, y, mean, rstd, x, w, b, n, c, 1e-5f, block); }, v == 1 ? 3 : 20);
      if (!ok) continue;
      std::printf("%s forward%d  block %4d  %dx%d: %8.4f ms  %7.1f GB/s\n", tname, v, block, n, c,
                  ms, fwd_bytes / ms / 1e6);
    }
  for (int v = 1; v <= 4; ++v)
    for (int block : {128, 256, 512, 1024}) {
      bool ok = true;
      const float ms =
          time_ms([&] { ok = backward<T>(v, dx, dw, db, dy, x, w, mean, rstd, n, c, block); },
                  v == 1 ? 3 : 20);
      if (!ok) continue;
      std::printf("%s backward%d block %4d  %dx%d: %8.4f ms  %7.1f GB/s\n", tname, v, block, n, c,
                  ms, bwd_bytes / ms / 1e6);
    }
  {  // the fused residual add: one more stream read (y stands in for the residual)
    bool ok = true;
    const float ms =
        time_ms([&] { ok = backward<T>(4, dx, dw, db, dy, x, w, mean, rstd, n, c, 256, y); });
    if (ok)
      std::printf("%s backward4 + residual      %dx%d: %8.4f ms  %7.1f GB/s\n", tname, n, c, ms,
                  4.0 * nc * sizeof(T) / ms / 1e6);
  }
  cudaFree(x), cudaFree(y), cudaFree(dy), cudaFree(dx), cudaFree(w), cudaFree(b), cudaFree(dw);
  cudaFree(db), cudaFree(mean), cudaFree(rstd);
}

int main(int argc, char** argv) {
  CHECK(cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, 0));
  CHECK(cudaMalloc(&g_partial, (size_t)g_sms * kMaxBlocksPerSm * 2 * kMaxC * sizeof(float)));
  validate<float>("f32", 1e-5, 0.f);
  validate<float>("f32", 1e-5, 300.f);
  validate<bf16>("bf16", 2e-2, 0.f);
  const int n = argc > 1 ? std::atoi(argv[1]) : 16384;
  for (int c : {768, 1600}) {
    bench<float>("f32 ", n, argc > 2 ? std::atoi(argv[2]) : c);
    bench<bf16>("bf16", n, argc > 2 ? std::atoi(argv[2]) : c);
  }
  return g_failures ? 1 : 0;
}
