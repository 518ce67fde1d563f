// Cross-entropy forward + backward in one kernel, the kernel lab (llm.c dev/cuda style).
// Standalone:
//   nvcc -O3 -std=c++20 -gencode arch=compute_90a,code=sm_90a dev/kernels/cross_entropy.cu -o
//   /tmp/cross_entropy && /tmp/cross_entropy [N V]
// Per row of logits x [N, V] with target t (-100: ignored):
//   loss_r = max + log(sum_j exp(x_j - max)) - x_t,  d_j = scale * (softmax_j - [j == t]).
// Math in f32, T is float or bf16; d may alias x (every variant reads a row fully before the
// barrier that precedes its first write). One block per row in every variant. The timing counts
// the bytes that must move (x read once, d written once): the second read of x in the gradient
// pass is served by L2 when the rows in flight fit in it, and costs DRAM bandwidth otherwise.
// Variants:
//   1: three passes (max, sum, gradient), scalar loads, 256 threads
//   2: one online pass for (max, sum) — a running max, the sum rescaled when the max grows —
//      then the gradient pass; 128-bit loads
//   3: as 2, two 128-bit loads in flight per thread per iteration
//   4: a cluster of 8 blocks per row (Hopper), each keeping its eighth of the row in shared
//      memory: the row is read from memory once. Each block reduces its chunk to a (max, sum)
//      pair; after a cluster barrier every block combines the 8 pairs in rank order through
//      distributed shared memory, then writes its chunk's gradient from shared memory.
// Measured on an H100 (80GB HBM3), 2026-11-23, N = 8192 (f32: 4096), V = 128256, bytes counted as
// logits read once + dlogits written once (copy ceiling ~3.0 TB/s):
//   bf16: 1: 5.64 ms (745 GB/s)  2: 2.11 ms (1990)  3: 2.10 ms (2002, 1024 threads)
//         4: 1.58 ms (2660, 256 threads; 512: 2390; 1024: 1506)
//   f32:  1: 3.59 ms (1169)      3: 2.12 ms (1980)  4: 1.50 ms (2793, 512 threads; 256: 2416)
//   In place within 1% of out of place. Variants 2-3 sit at 2.0 TB/s whatever the block size:
//   1.5x that is the copy ceiling, i.e. the second read of each 256 KB row misses L2. Variant 4
//   reads each row once; src/backend/cuda/loss.cu uses it for rows of 64 KB and more.
// The block size is swept for 2 and 3: it sets how many rows are in flight (and so whether the
// second read of a row hits L2) and how many loads each SM has outstanding.
#include <cooperative_groups.h>
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

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kIgnore = -100;

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[wid] = v;
  __syncthreads();
  return warp_max(lane < nw ? scratch[lane] : -INFINITY);
}
__device__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[wid] = v;
  __syncthreads();
  return warp_sum(lane < nw ? scratch[lane] : 0.f);
}

// (max, sum of exp(x - max)) pairs combined; a side with no elements has max -inf, sum 0.
struct MaxSum {
  float m, s;
};
__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.f};
  return {m, a.s * exp2f((a.m - m) * kLog2e) + b.s * exp2f((b.m - m) * kLog2e)};
}
__device__ MaxSum block_combine(MaxSum v, MaxSum* scratch) {
  const int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = blockDim.x / 32;
  for (int o = 16; o > 0; o /= 2) {
    const MaxSum other{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = combine(v, other);
  }
  if (lane == 0) scratch[wid] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : MaxSum{-INFINITY, 0.f};
  for (int o = 16; o > 0; o /= 2) {
    const MaxSum other{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = combine(v, other);
  }
  return v;
}

// Ignored row: zero gradient, no loss.
template <typename T>
__device__ void ignore_row(T* d, int v, float* loss) {
  for (int j = threadIdx.x; j < v; j += blockDim.x) d[j] = from_f<T>(0.f);
  if (threadIdx.x == 0) *loss = 0.f;
}

// ---------------- variant 1: three passes ----------------
template <typename T>
__global__ void ce1(T* dlogits, const T* logits, const int* targets, int v, float scale,
                    float* loss) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* x = logits + r * v;
  T* d = dlogits + r * v;
  const int t = targets[r];
  if (t == kIgnore) return ignore_row(d, v, loss + r);
  float m = -INFINITY;
  for (int j = threadIdx.x; j < v; j += blockDim.x) m = fmaxf(m, to_f(x[j]));
  m = block_max(m, scratch);
  float s = 0;
  for (int j = threadIdx.x; j < v; j += blockDim.x) s += expf(to_f(x[j]) - m);
  const float xt = to_f(x[t]);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) loss[r] = m + logf(s) - xt;
  const float coef = scale / s;
  for (int j = threadIdx.x; j < v; j += blockDim.x) {
    float g = expf(to_f(x[j]) - m) * coef;
    if (j == t) g -= scale;
    d[j] = from_f<T>(g);
  }
}

// ---------------- variants 2 and 3: online (max, sum), then the gradient ----------------
template <typename T, int V>
__device__ __forceinline__ void accumulate(MaxSum& a, const Pack<T, V>& p) {
  float f[V], pm = -INFINITY;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    f[k] = to_f(p.v[k]);
    pm = fmaxf(pm, f[k]);
  }
  if (pm > a.m) {  // rare after the first packs: rescale the sum to the new max
    a.s *= exp2f((a.m - pm) * kLog2e);
    a.m = pm;
  }
  if (a.m == -INFINITY) return;  // only -inf so far (masked logits): nothing to add, no NaN
  const float mb = a.m * kLog2e;
#pragma unroll
  for (int k = 0; k < V; ++k) a.s += exp2f(fmaf(f[k], kLog2e, -mb));
}

template <typename T, int V, int U>
__global__ void ce_online(T* dlogits, const T* logits, const int* targets, int v, float scale,
                          float* loss) {
  __shared__ MaxSum scratch[32];
  using P = Pack<T, V>;
  const int64_t r = blockIdx.x;
  const T* x = logits + r * v;
  T* d = dlogits + r * v;
  const int t = targets[r];
  if (t == kIgnore) return ignore_row(d, v, loss + r);
  const P* xp = reinterpret_cast<const P*>(x);
  P* dp = reinterpret_cast<P*>(d);
  const int packs = v / V, stride = blockDim.x;
  MaxSum a{-INFINITY, 0.f};
  int q = threadIdx.x;
  for (; q + (U - 1) * stride < packs; q += U * stride) {
    P p[U];
#pragma unroll
    for (int u = 0; u < U; ++u) p[u] = xp[q + u * stride];
#pragma unroll
    for (int u = 0; u < U; ++u) accumulate<T, V>(a, p[u]);
  }
  for (; q < packs; q += stride) accumulate<T, V>(a, xp[q]);
  const float xt = to_f(x[t]);
  a = block_combine(a, scratch);  // its barrier orders every read of x before any write of d
  if (threadIdx.x == 0) loss[r] = a.m + logf(a.s) - xt;
  const float coef = scale / a.s, mb = a.m * kLog2e;
  for (q = threadIdx.x; q < packs; q += stride) {
    const P p = xp[q];
    P o;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      float g = exp2f(fmaf(to_f(p.v[k]), kLog2e, -mb)) * coef;
      if (q * V + k == t) g -= scale;
      o.v[k] = from_f<T>(g);
    }
    dp[q] = o;
  }
}

// ---------------- variant 4: a cluster per row, the row in shared memory ----------------
namespace cg = cooperative_groups;
constexpr int kCluster = 8;

template <typename T, int V>
__global__ void ce_cluster(T* dlogits, const T* logits, const int* targets, int v, int chunk_packs,
                           float scale, float* loss) {
  using P = Pack<T, V>;
  extern __shared__ __align__(16) unsigned char smem[];
  P* chunk = reinterpret_cast<P*>(smem);
  __shared__ MaxSum scratch[32];
  __shared__ MaxSum block_pair;
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = cluster.block_rank();
  const int64_t r = blockIdx.x / kCluster;
  const T* x = logits + r * v;
  T* d = dlogits + r * v;
  const P* xp = reinterpret_cast<const P*>(x);
  const int packs = v / V, q0 = rank * chunk_packs, q1 = min(packs, q0 + chunk_packs);
  const int t = targets[r];
  if (t == kIgnore) {
    for (int j = q0 * V + threadIdx.x; j < q1 * V; j += blockDim.x) d[j] = from_f<T>(0.f);
    if (rank == 0 && threadIdx.x == 0) loss[r] = 0.f;
    return;
  }
  const float xt = rank == 0 && threadIdx.x == 0 ? to_f(x[t]) : 0.f;
  MaxSum a{-INFINITY, 0.f};
  int q = q0 + threadIdx.x;
  for (; q + (int)blockDim.x < q1; q += 2 * blockDim.x) {
    const P p0 = xp[q], p1 = xp[q + blockDim.x];
    chunk[q - q0] = p0;
    chunk[q + blockDim.x - q0] = p1;
    accumulate<T, V>(a, p0);
    accumulate<T, V>(a, p1);
  }
  if (q < q1) {
    const P p0 = xp[q];
    chunk[q - q0] = p0;
    accumulate<T, V>(a, p0);
  }
  a = block_combine(a, scratch);
  if (threadIdx.x == 0) block_pair = a;
  cluster.sync();
  MaxSum total{-INFINITY, 0.f};
  for (int k = 0; k < kCluster; ++k)
    total = combine(total, *cluster.map_shared_rank(&block_pair, k));
  cluster.sync();
  if (rank == 0 && threadIdx.x == 0) loss[r] = total.m + logf(total.s) - xt;
  P* dp = reinterpret_cast<P*>(d);
  const float coef = scale / total.s, mb = total.m * kLog2e;
  for (q = q0 + threadIdx.x; q < q1; q += blockDim.x) {
    const P p = chunk[q - q0];
    P o;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      float g = exp2f(fmaf(to_f(p.v[k]), kLog2e, -mb)) * coef;
      if (q * V + k == t) g -= scale;
      o.v[k] = from_f<T>(g);
    }
    dp[q] = o;
  }
}

template <typename T, int V>
bool run_cluster(int block, T* d, const T* x, const int* t, int n, int v, float scale,
                 float* loss) {
  const int chunk_packs = (v / V + kCluster - 1) / kCluster;
  const size_t bytes = (size_t)chunk_packs * sizeof(Pack<T, V>);
  if (bytes > 200 * 1024) return false;
  auto* kernel = ce_cluster<T, V>;
  CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(n * kCluster);
  cfg.blockDim = dim3(block);
  cfg.dynamicSmemBytes = bytes;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = kCluster;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  CHECK(cudaLaunchKernelEx(&cfg, kernel, d, x, t, v, chunk_packs, scale, loss));
  return true;
}

// ---------------- launchers ----------------
template <typename T>
bool run(int variant, int block, T* d, const T* x, const int* t, int n, int v, float scale,
         float* loss) {
  constexpr int V = 16 / sizeof(T);
  switch (variant) {
    case 1:
      if (block != 256) return false;
      ce1<T><<<n, 256>>>(d, x, t, v, scale, loss);
      return true;
    case 2:
      if (v % V) return false;
      ce_online<T, V, 1><<<n, block>>>(d, x, t, v, scale, loss);
      return true;
    case 3:
      if (v % V) return false;
      ce_online<T, V, 2><<<n, block>>>(d, x, t, v, scale, loss);
      return true;
    case 4:
      if (v % V) return false;
      return run_cluster<T, V>(block, d, x, t, n, v, scale, loss);
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

void cpu_ce(std::vector<double>& d, std::vector<double>& loss, const std::vector<double>& x,
            const std::vector<int>& t, int n, int v, double scale) {
  for (int r = 0; r < n; ++r) {
    const double* xr = &x[(size_t)r * v];
    double* dr = &d[(size_t)r * v];
    if (t[r] == kIgnore) {
      for (int j = 0; j < v; ++j) dr[j] = 0;
      loss[r] = 0;
      continue;
    }
    double m = -INFINITY, s = 0;
    for (int j = 0; j < v; ++j) m = std::max(m, xr[j]);
    for (int j = 0; j < v; ++j) s += std::exp(xr[j] - m);
    loss[r] = m + std::log(s) - xr[t[r]];
    for (int j = 0; j < v; ++j) dr[j] = scale * (std::exp(xr[j] - m) / s - (j == t[r]));
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

int g_failures = 0;

template <typename T>
void validate(const char* tname, double tol) {
  const int rows[] = {1, 7, 33}, vocabs[] = {8, 1000, 50264, 128256};
  for (int n : rows)
    for (int v : vocabs) {
      std::mt19937 rng(n * 131 + v);
      std::normal_distribution<float> nd(0.f, 2.f);
      std::uniform_int_distribution<int> ud(0, v - 1);
      const size_t nv = (size_t)n * v;
      std::vector<T> hx(nv);
      std::vector<double> x(nv), d(nv), loss(n);
      for (size_t i = 0; i < nv; ++i) {
        hx[i] = host_from<T>(nd(rng));
        x[i] = host_to(hx[i]);
      }
      std::vector<int> t(n);
      for (int r = 0; r < n; ++r) t[r] = r % 5 == 3 ? kIgnore : ud(rng);
      const double scale = 0.37;
      cpu_ce(d, loss, x, t, n, v, scale);
      T *xd, *dd;
      int* td;
      float* ld;
      CHECK(cudaMalloc(&xd, nv * sizeof(T)));
      CHECK(cudaMalloc(&dd, nv * sizeof(T)));
      CHECK(cudaMalloc(&td, n * 4));
      CHECK(cudaMalloc(&ld, n * 4));
      CHECK(cudaMemcpy(td, t.data(), n * 4, cudaMemcpyHostToDevice));
      for (int variant = 1; variant <= 4; ++variant)
        for (int block : {256, 1024}) {
          CHECK(cudaMemcpy(xd, hx.data(), nv * sizeof(T), cudaMemcpyHostToDevice));
          // In place (d aliases x): the case training uses.
          if (!run<T>(variant, block, xd, xd, td, n, v, (float)scale, ld)) continue;
          CHECK(cudaGetLastError());
          std::vector<T> hd(nv);
          std::vector<float> hl(n);
          CHECK(cudaMemcpy(hd.data(), xd, nv * sizeof(T), cudaMemcpyDeviceToHost));
          CHECK(cudaMemcpy(hl.data(), ld, n * 4, cudaMemcpyDeviceToHost));
          std::vector<double> gd(nv), gl(hl.begin(), hl.end());
          for (size_t i = 0; i < nv; ++i) gd[i] = host_to(hd[i]);
          const double ed = rel_err(gd, d), el = rel_err(gl, loss);
          if (!(ed <= tol && el <= 1e-5)) {
            std::printf("FAIL %s variant %d block %d n=%d v=%d: d %.3g loss %.3g\n", tname, variant,
                        block, n, v, ed, el);
            ++g_failures;
          }
        }
      cudaFree(xd), cudaFree(dd), cudaFree(td), cudaFree(ld);
    }
  std::printf("validated %s: %s\n", tname, g_failures ? "FAILURES" : "all variants ok");
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
float time_ms(F&& f, int reps = 10) {
  for (int i = 0; i < 2; ++i) f();
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
void bench(const char* tname, int n, int v) {
  const size_t nv = (size_t)n * v;
  T *x, *d;
  int* t;
  float* loss;
  CHECK(cudaMalloc(&x, nv * sizeof(T)));
  CHECK(cudaMalloc(&d, nv * sizeof(T)));
  CHECK(cudaMalloc(&t, n * 4));
  CHECK(cudaMalloc(&loss, n * 4));
  randomize(x, nv, 8.f, 1);
  std::vector<int> ht(n);
  for (int r = 0; r < n; ++r) ht[r] = (int)(((uint64_t)r * 2654435761u) % v);
  CHECK(cudaMemcpy(t, ht.data(), n * 4, cudaMemcpyHostToDevice));
  const double bytes = 2.0 * nv * sizeof(T);
  for (int variant = 1; variant <= 4; ++variant)
    for (int block : {256, 512, 1024}) {
      bool ok = true;
      const float ms = time_ms([&] { ok = run<T>(variant, block, d, x, t, n, v, 1.f, loss); });
      if (!ok) continue;
      const float ms_inplace = time_ms([&] { run<T>(variant, block, x, x, t, n, v, 1.f, loss); });
      std::printf(
          "%s variant %d block %4d  %dx%d: %8.4f ms %7.1f GB/s  in place %8.4f ms %7.1f GB/s\n",
          tname, variant, block, n, v, ms, bytes / ms / 1e6, ms_inplace, bytes / ms_inplace / 1e6);
      randomize(x, nv, 8.f, 1);  // the in-place runs wrote gradients over the logits
    }
  cudaFree(x), cudaFree(d), cudaFree(t), cudaFree(loss);
}

int main(int argc, char** argv) {
  validate<float>("f32", 1e-5);
  validate<bf16>("bf16", 2e-2);
  const int n = argc > 1 ? std::atoi(argv[1]) : 8192, v = argc > 2 ? std::atoi(argv[2]) : 128256;
  bench<bf16>("bf16", n, v);
  bench<float>("f32 ", n / 2, v);
  return g_failures ? 1 : 0;
}
