// Cross-entropy on the GPU; the variants were measured in dev/kernels/cross_entropy.cu (long rows
// on Hopper: its variant 4; otherwise its variant 3). Design notes:
// - One block per row. One pass over the row keeps a running (max, sum of exp(x - max)) per
//   thread — the sum rescaled when the max grows — and the block combines the pairs in a fixed
//   tree order; a second pass writes the gradient. So the logits are read twice and the gradient
//   written once. For long rows (Llama 3's 128256 bf16 logits are 256 KB) the rows in flight
//   outgrow L2 and the second read goes to memory: 6 bytes moved per bf16 logit, 2.0 TB/s of
//   useful traffic at the H100's 3 TB/s. There (compute capability 9.0+) a cluster of 8 blocks
//   takes a row instead, each keeping its eighth in shared memory, so the row is read once.
// - dlogits may be logits itself: every read of the row (and of x[target]) happens before the
//   combine's barrier, and in the gradient pass each thread reads an element just before it
//   writes that same element.
// - exp as exp2f(x * log2(e) - max * log2(e)): one FMA and the MUFU instruction per element.
// - Loads are 128 bits wide when v and both pointers allow (every row then starts aligned);
//   otherwise scalar, with several loads in flight per thread.
// - Each row writes its loss (f64) to scratch; one block then sums the rows in a fixed order. The
//   first row with a target outside [0, v) (not -100) is recorded with atomicMin in a device
//   word; the loss and that word come back in one copy and one stream sync.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <type_traits>

#include <cooperative_groups.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_math.cuh"
#include "backend/cuda/loss_kernels.h"

namespace tune::cuda {

namespace {

namespace cg = cooperative_groups;

constexpr float kLog2e = 1.4426950408889634f;
constexpr int64_t kIgnoreIndex = -100;
constexpr int kMaxThreads = 1024;
constexpr int kSumThreads = 1024;
constexpr int kCluster = 8;  // the portable cluster size
// Threads per cluster block: the lab's best on the H100 at 8192 x 128256 (256 for 2-byte logits,
// 512 for f32).
template <typename T>
constexpr int kClusterThreads = sizeof(T) >= 4 ? 512 : 256;
// A block's chunk stays under this, so that two blocks fit an SM's shared memory.
constexpr size_t kClusterChunkMax = 112 * 1024;
// Rows shorter than this take the two-pass kernel: their second read is served by L2.
constexpr size_t kClusterRowMin = 64 * 1024;

// (max, sum of exp(x - max)) over some elements; none: max -inf, sum 0.
struct MaxSum {
  float m, s;
};

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.f};
  return {m, a.s * exp2f((a.m - m) * kLog2e) + b.s * exp2f((b.m - m) * kLog2e)};
}

__device__ __forceinline__ MaxSum warp_combine(MaxSum v) {
  for (int o = 16; o > 0; o /= 2) {
    const MaxSum other{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = combine(v, other);
  }
  return v;
}

// The block's pair, in every thread; blockDim.x is a multiple of 32.
__device__ MaxSum block_combine(MaxSum v, MaxSum* scratch) {
  const int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = blockDim.x / 32;
  v = warp_combine(v);
  if (lane == 0) scratch[wid] = v;
  __syncthreads();
  return warp_combine(lane < nw ? scratch[lane] : MaxSum{-INFINITY, 0.f});
}

template <typename T, int V>
__device__ __forceinline__ void accumulate(MaxSum& a, const Pack<T, V>& p) {
  float f[V], pm = -INFINITY;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    f[k] = to_f(p.v[k]);
    pm = fmaxf(pm, f[k]);
  }
  if (pm > a.m) {  // rare after the first packs
    a.s *= exp2f((a.m - pm) * kLog2e);
    a.m = pm;
  }
  if (a.m == -INFINITY) return;  // only -inf so far (masked logits): nothing to add, no NaN
  const float mb = a.m * kLog2e;
#pragma unroll
  for (int k = 0; k < V; ++k) a.s += exp2f(fmaf(f[k], kLog2e, -mb));
}

// The gradient of the V logits p starting at column `first` of a row whose target is t:
// grad_scale * (softmax - onehot), softmax = exp2(x log2e - mb) * coef with coef = grad_scale /
// sum.
template <typename G, typename T, int V>
__device__ __forceinline__ Pack<G, V> gradient(const Pack<T, V>& p, int64_t first, int64_t t,
                                               float mb, float coef, float grad_scale) {
  Pack<G, V> o;
#pragma unroll
  for (int k = 0; k < V; ++k) {
    float g = exp2f(fmaf(to_f(p.v[k]), kLog2e, -mb)) * coef;
    if (first + k == t) g -= grad_scale;
    o.v[k] = from_f<G>(g);
  }
  return o;
}

// Row blockIdx.x. V elements per load, U loads in flight per thread. row_loss [n] f64.
template <typename T, typename G, typename I, int V, int U>
__global__ void cross_entropy_rows(G* dlogits, const T* logits, const I* targets, int64_t v,
                                   float grad_scale, double* row_loss, unsigned long long* bad) {
  using P = Pack<T, V>;
  using PG = Pack<G, V>;
  __shared__ MaxSum scratch[32];
  const int64_t r = blockIdx.x;
  const T* x = logits + r * v;
  G* d = dlogits ? dlogits + r * v : nullptr;
  const auto t = static_cast<int64_t>(targets[r]);
  if (t == kIgnoreIndex || t < 0 || t >= v) {
    if (t != kIgnoreIndex && threadIdx.x == 0) atomicMin(bad, static_cast<unsigned long long>(r));
    if (d) {
      for (int64_t j = threadIdx.x; j < v; j += blockDim.x) d[j] = from_f<G>(0.f);
    }
    if (threadIdx.x == 0) row_loss[r] = 0.0;
    return;
  }
  const P* xp = reinterpret_cast<const P*>(x);
  const int64_t packs = v / V, stride = blockDim.x;
  MaxSum a{-INFINITY, 0.f};
  int64_t q = threadIdx.x;
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
  if (threadIdx.x == 0) {
    row_loss[r] = static_cast<double>(a.m) + log(static_cast<double>(a.s)) - xt;
  }
  if (!d) return;
  PG* dp = reinterpret_cast<PG*>(d);
  const float coef = grad_scale / a.s, mb = a.m * kLog2e;
  for (q = threadIdx.x; q < packs; q += stride)
    dp[q] = gradient<G>(xp[q], q * V, t, mb, coef, grad_scale);
}

// Long rows on Hopper: a cluster of kCluster blocks per row, each holding its chunk of the row in
// shared memory, so the logits are read from memory once. Each block reduces its chunk to a
// (max, sum) pair; after a cluster barrier every block combines the kCluster pairs in rank order
// through distributed shared memory (the same result in every block), then writes the gradient of
// its chunk from shared memory. chunk_packs: packs of V elements per block.
template <typename T, typename G, typename I, int V>
__global__ void __launch_bounds__(kClusterThreads<T>)
    cross_entropy_cluster(G* dlogits, const T* logits, const I* targets, int64_t v,
                          int64_t chunk_packs, float grad_scale, double* row_loss,
                          unsigned long long* bad) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using P = Pack<T, V>;
  using PG = Pack<G, V>;
  extern __shared__ __align__(16) unsigned char smem[];
  P* chunk = reinterpret_cast<P*>(smem);  // [chunk_packs]
  __shared__ MaxSum scratch[32];
  __shared__ MaxSum block_pair;
  cg::cluster_group cluster = cg::this_cluster();
  const auto rank = static_cast<int64_t>(cluster.block_rank());
  const int64_t r = blockIdx.x / kCluster;
  const T* x = logits + r * v;
  G* d = dlogits ? dlogits + r * v : nullptr;
  const P* xp = reinterpret_cast<const P*>(x);
  const int64_t packs = v / V, q0 = rank * chunk_packs, q1 = min64(packs, q0 + chunk_packs);
  const auto t = static_cast<int64_t>(targets[r]);
  if (t == kIgnoreIndex || t < 0 || t >= v) {  // the same branch in every block of the cluster
    const bool first = rank == 0 && threadIdx.x == 0;
    if (t != kIgnoreIndex && first) atomicMin(bad, static_cast<unsigned long long>(r));
    if (d) {
      PG zero;
#pragma unroll
      for (int k = 0; k < V; ++k) zero.v[k] = from_f<G>(0.f);
      for (int64_t q = q0 + threadIdx.x; q < q1; q += blockDim.x)
        reinterpret_cast<PG*>(d)[q] = zero;
    }
    if (first) row_loss[r] = 0.0;
    return;
  }
  // x[t] before the first cluster barrier: no block writes d (which may be x) before it.
  const float xt = rank == 0 && threadIdx.x == 0 ? to_f(x[t]) : 0.f;
  MaxSum a{-INFINITY, 0.f};
  int64_t q = q0 + threadIdx.x;
  for (; q + blockDim.x < q1; q += 2 * blockDim.x) {
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
  for (unsigned k = 0; k < kCluster; ++k)
    total = combine(total, *cluster.map_shared_rank(&block_pair, k));
  cluster.sync();  // every block has read every pair: none may exit before
  if (rank == 0 && threadIdx.x == 0) {
    row_loss[r] = static_cast<double>(total.m) + log(static_cast<double>(total.s)) - xt;
  }
  if (!d) return;
  PG* dp = reinterpret_cast<PG*>(d);
  const float coef = grad_scale / total.s, mb = total.m * kLog2e;
  for (q = q0 + threadIdx.x; q < q1; q += blockDim.x)
    dp[q] = gradient<G>(chunk[q - q0], q * V, t, mb, coef, grad_scale);
#else
  __trap();  // launched only on compute capability 9.0 and later
#endif
}

// *total = the sum of row_loss [n] in a fixed order: thread t sums rows t, t + 1024, ... in row
// order, then a tree over the threads.
__global__ void sum_rows(const double* row_loss, int64_t n, double* total) {
  __shared__ double sums[kSumThreads];
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += kSumThreads) s += row_loss[i];
  sums[threadIdx.x] = s;
  __syncthreads();
  for (int width = kSumThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) sums[threadIdx.x] += sums[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) *total = sums[0];
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <typename T, typename G, typename I, int V, int U>
void launch(G* d, const T* x, const I* t, int64_t n, int64_t v, float grad_scale, double* row_loss,
            unsigned long long* bad) {
  const int64_t per_thread_units = (v / V + U - 1) / U;
  const int threads =
      static_cast<int>(std::clamp<int64_t>((per_thread_units + 31) / 32 * 32, 32, kMaxThreads));
  cross_entropy_rows<T, G, I, V, U><<<static_cast<unsigned>(n), threads, 0, cudaStreamPerThread>>>(
      d, x, t, v, grad_scale, row_loss, bad);
}

bool has_clusters() {
  thread_local int major = [] {
    int dev = 0, m = 0;
    TUNE_CUDA_CHECK(cudaGetDevice(&dev));
    TUNE_CUDA_CHECK(cudaDeviceGetAttribute(&m, cudaDevAttrComputeCapabilityMajor, dev));
    return m;
  }();
  return major >= 9;
}

// Launches the cluster kernel and returns true when the rows suit it (see kClusterRowMin,
// kClusterChunkMax); false leaves the work to the two-pass kernel.
template <typename T, typename G, typename I, int V>
bool launch_cluster(G* d, const T* x, const I* t, int64_t n, int64_t v, float grad_scale,
                    double* row_loss, unsigned long long* bad) {
  const int64_t packs = v / V, chunk_packs = (packs + kCluster - 1) / kCluster;
  const size_t chunk_bytes = static_cast<size_t>(chunk_packs) * V * sizeof(T);
  const size_t row_bytes = static_cast<size_t>(v) * sizeof(T);
  if (row_bytes < kClusterRowMin || chunk_bytes > kClusterChunkMax || !has_clusters() ||
      n > INT_MAX / kCluster) {
    return false;
  }
  auto* kernel = cross_entropy_cluster<T, G, I, V>;
  TUNE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(chunk_bytes)));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(n * kCluster));
  cfg.blockDim = dim3(kClusterThreads<T>);
  cfg.dynamicSmemBytes = chunk_bytes;
  cfg.stream = cudaStreamPerThread;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = kCluster;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  TUNE_CUDA_CHECK(
      cudaLaunchKernelEx(&cfg, kernel, d, x, t, v, chunk_packs, grad_scale, row_loss, bad));
  return true;
}

// Device scratch: n row losses, the total, and the bad-row word.
struct Scratch {
  double* row_loss;
  double* total;
  unsigned long long* bad;
};

}  // namespace

CrossEntropyResult cross_entropy(DType dtype, DType grad_type, DType target_type, void* dlogits,
                                 const void* logits, const void* targets, int64_t n, int64_t v,
                                 double grad_scale) {
  if (n == 0) return {0.0, -1};
  if (n > INT_MAX) throw Error(str("cuda::cross_entropy: ", n, " rows exceed the grid"));
  if (grad_type != dtype && dtype != DType::f32)
    throw Error(str("cuda::cross_entropy: a ", dtype_name(grad_type), " gradient of ",
                    dtype_name(dtype),
                    " logits; only f32 logits may have a gradient of another "
                    "dtype"));
  const cudaStream_t stream = cudaStreamPerThread;
  // [n row losses][total][bad word]: one allocation from the stream-ordered pool.
  void* mem = nullptr;
  const size_t bytes = static_cast<size_t>(n + 2) * sizeof(double);
  TUNE_CUDA_CHECK(cudaMallocAsync(&mem, bytes, stream));
  const Scratch s{static_cast<double*>(mem), static_cast<double*>(mem) + n,
                  reinterpret_cast<unsigned long long*>(static_cast<double*>(mem) + n + 1)};
  TUNE_CUDA_CHECK(cudaMemsetAsync(s.bad, 0xff, sizeof(unsigned long long), stream));
  const auto scale = static_cast<float>(grad_scale);
  dispatch_storage(dtype, [&](auto tag) {
    using T = decltype(tag);
    dispatch_storage(grad_type, [&](auto gtag) {
      using G = decltype(gtag);
      if constexpr (std::is_same_v<T, G> || std::is_same_v<T, float>) {
        constexpr int V = 16 / sizeof(T);
        auto* d = static_cast<G*>(dlogits);
        const auto* x = static_cast<const T*>(logits);
        const bool vec = v % V == 0 && aligned16(x) && (d == nullptr || aligned16(d));
        auto run = [&](auto itag) {
          using I = decltype(itag);
          const auto* t = static_cast<const I*>(targets);
          if (vec) {
            if (!launch_cluster<T, G, I, V>(d, x, t, n, v, scale, s.row_loss, s.bad))
              launch<T, G, I, V, 2>(d, x, t, n, v, scale, s.row_loss, s.bad);
          } else {
            if (!launch_cluster<T, G, I, 1>(d, x, t, n, v, scale, s.row_loss, s.bad))
              launch<T, G, I, 1, 4>(d, x, t, n, v, scale, s.row_loss, s.bad);
          }
        };
        if (target_type == DType::i32) {
          run(int32_t{});
        } else {
          run(int64_t{});
        }
      }
    });
  });
  TUNE_CUDA_CHECK(cudaGetLastError());
  sum_rows<<<1, kSumThreads, 0, stream>>>(s.row_loss, n, s.total);
  TUNE_CUDA_CHECK(cudaGetLastError());
  struct {
    double total;
    unsigned long long bad;
  } back{};
  TUNE_CUDA_CHECK(cudaMemcpyAsync(&back, s.total, sizeof back, cudaMemcpyDeviceToHost, stream));
  TUNE_CUDA_CHECK(cudaFreeAsync(mem, stream));
  TUNE_CUDA_CHECK(cudaStreamSynchronize(stream));
  return {back.total, back.bad == ULLONG_MAX ? -1 : static_cast<int64_t>(back.bad)};
}

}  // namespace tune::cuda
