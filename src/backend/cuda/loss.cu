// Cross-entropy on the GPU; the variants were measured in dev/kernels/cross_entropy.cu (this is
// its variant 3). Design notes:
// - One block per row. One pass over the row keeps a running (max, sum of exp(x - max)) per
//   thread — the sum rescaled when the max grows — and the block combines the pairs in a fixed
//   tree order; a second pass writes the gradient. So the logits are read twice and the gradient
//   written once; with a block of 1024 threads few enough rows are in flight that the second
//   read mostly hits L2.
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

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_math.cuh"
#include "backend/cuda/loss_kernels.h"

namespace tune::cuda {

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int64_t kIgnoreIndex = -100;
constexpr int kMaxThreads = 1024;
constexpr int kSumThreads = 1024;

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

// Row blockIdx.x. V elements per load, U loads in flight per thread. row_loss [n] f64.
template <typename T, typename I, int V, int U>
__global__ void cross_entropy_rows(T* dlogits, const T* logits, const I* targets, int64_t v,
                                   float grad_scale, double* row_loss, unsigned long long* bad) {
  using P = Pack<T, V>;
  __shared__ MaxSum scratch[32];
  const int64_t r = blockIdx.x;
  const T* x = logits + r * v;
  T* d = dlogits ? dlogits + r * v : nullptr;
  const auto t = static_cast<int64_t>(targets[r]);
  if (t == kIgnoreIndex || t < 0 || t >= v) {
    if (t != kIgnoreIndex && threadIdx.x == 0) atomicMin(bad, static_cast<unsigned long long>(r));
    if (d) {
      for (int64_t j = threadIdx.x; j < v; j += blockDim.x) d[j] = from_f<T>(0.f);
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
  P* dp = reinterpret_cast<P*>(d);
  const float coef = grad_scale / a.s, mb = a.m * kLog2e;
  for (q = threadIdx.x; q < packs; q += stride) {
    const P p = xp[q];
    P o;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      float g = exp2f(fmaf(to_f(p.v[k]), kLog2e, -mb)) * coef;
      if (q * V + k == t) g -= grad_scale;
      o.v[k] = from_f<T>(g);
    }
    dp[q] = o;
  }
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

template <typename T, typename I, int V, int U>
void launch(T* d, const T* x, const I* t, int64_t n, int64_t v, float grad_scale, double* row_loss,
            unsigned long long* bad) {
  const int64_t per_thread_units = (v / V + U - 1) / U;
  const int threads =
      static_cast<int>(std::clamp<int64_t>((per_thread_units + 31) / 32 * 32, 32, kMaxThreads));
  cross_entropy_rows<T, I, V, U><<<static_cast<unsigned>(n), threads, 0, cudaStreamPerThread>>>(
      d, x, t, v, grad_scale, row_loss, bad);
}

// Device scratch: n row losses, the total, and the bad-row word.
struct Scratch {
  double* row_loss;
  double* total;
  unsigned long long* bad;
};

}  // namespace

CrossEntropyResult cross_entropy(DType dtype, DType target_type, void* dlogits, const void* logits,
                                 const void* targets, int64_t n, int64_t v, double grad_scale) {
  if (n == 0) return {0.0, -1};
  if (n > INT_MAX) throw Error(str("cuda::cross_entropy: ", n, " rows exceed the grid"));
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
    constexpr int V = 16 / sizeof(T);
    auto* d = static_cast<T*>(dlogits);
    const auto* x = static_cast<const T*>(logits);
    const bool vec = v % V == 0 && aligned16(x) && (d == nullptr || aligned16(d));
    auto run = [&](auto itag) {
      using I = decltype(itag);
      const auto* t = static_cast<const I*>(targets);
      if (vec) {
        launch<T, I, V, 2>(d, x, t, n, v, scale, s.row_loss, s.bad);
      } else {
        launch<T, I, 1, 4>(d, x, t, n, v, scale, s.row_loss, s.bad);
      }
    };
    if (target_type == DType::i32) {
      run(int32_t{});
    } else {
      run(int64_t{});
    }
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
