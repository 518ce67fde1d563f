// AdamW over flat f32 buffers and the sum of squares behind the global gradient norm.
//
// AdamW is elementwise: one thread per element (grid-stride), the CPU kernel's formula with
// explicit roundings — __fmaf_rn where torch fuses (lerp_, addcmul_), __fmul_rn/__fadd_rn where
// it does not (nvcc would otherwise contract a * b + c into an FMA), __fsqrt_rn and __fdiv_rn —
// so the update equals the CPU's (and torch's) to the bit.
//
// The sum of squares: each block sums a fixed range in f64 and writes one partial; a second
// launch sums the partials in order. No atomics, so the result never depends on scheduling.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/optim_kernels.h"

namespace tune::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 1024;

struct Coeffs {
  float decay, lerp_coeff, v_weight, beta2, bc2_sqrt, eps, neg_step_size;
  bool small_weight;
};

__global__ void adamw_kernel(float* __restrict__ param, const float* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v, int64_t n, Coeffs c) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = grad[i];
    const float p = __fmul_rn(param[i], c.decay);
    const float mi = __fmaf_rn(c.lerp_coeff, __fsub_rn(g, m[i]), c.small_weight ? m[i] : g);
    const float vi = __fmaf_rn(__fmul_rn(c.v_weight, g), g, __fmul_rn(v[i], c.beta2));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), c.bc2_sqrt), c.eps);
    m[i] = mi;
    v[i] = vi;
    param[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(c.neg_step_size, mi), denom));
  }
}

// Block b sums elements [b * per, (b + 1) * per) into partial[b].
__global__ void sum_squares_partial(const float* __restrict__ x, int64_t n, int64_t per,
                                    double* __restrict__ partial) {
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * per;
  const int64_t end = begin + per < n ? begin + per : n;
  double s = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double xi = x[i];
    s += xi * xi;
  }
  __shared__ double sums[kThreads];
  sums[threadIdx.x] = s;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) sums[threadIdx.x] += sums[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sums[0];
}

__global__ void sum_partials(const double* __restrict__ partial, int count,
                             double* __restrict__ out) {
  __shared__ double sums[kThreads];
  double s = 0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  sums[threadIdx.x] = s;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) sums[threadIdx.x] += sums[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = sums[0];
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const cpu::AdamWScalars& s) {
  if (n == 0) return;
  const auto m_weight = static_cast<float>(s.m_weight);
  const bool small_weight = (m_weight < 0 ? -m_weight : m_weight) < 0.5f;
  const Coeffs c{static_cast<float>(s.decay),
                 small_weight ? m_weight : m_weight - 1.0f,
                 static_cast<float>(s.v_weight),
                 static_cast<float>(s.beta2),
                 static_cast<float>(s.bias_correction2_sqrt),
                 static_cast<float>(s.eps),
                 static_cast<float>(s.neg_step_size),
                 small_weight};
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  const auto blocks = static_cast<unsigned>(wanted < 65535 * 8 ? wanted : 65535 * 8);
  adamw_kernel<<<blocks, kThreads, 0, cudaStreamPerThread>>>(param, grad, m, v, n, c);
  TUNE_CUDA_CHECK(cudaGetLastError());
}

double sum_squares(const float* x, int64_t n) {
  if (n == 0) return 0.0;
  const int64_t per_min = kThreads * 16;
  int64_t blocks = (n + per_min - 1) / per_min;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  const int64_t per = (n + blocks - 1) / blocks;
  double* scratch = nullptr;  // blocks partials, then the total
  TUNE_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&scratch),
                                  static_cast<size_t>(blocks + 1) * sizeof(double),
                                  cudaStreamPerThread));
  sum_squares_partial<<<static_cast<unsigned>(blocks), kThreads, 0, cudaStreamPerThread>>>(
      x, n, per, scratch);
  sum_partials<<<1, kThreads, 0, cudaStreamPerThread>>>(scratch, static_cast<int>(blocks),
                                                        scratch + blocks);
  TUNE_CUDA_CHECK(cudaGetLastError());
  double total = 0;
  TUNE_CUDA_CHECK(cudaMemcpyAsync(&total, scratch + blocks, sizeof(double), cudaMemcpyDeviceToHost,
                                  cudaStreamPerThread));
  TUNE_CUDA_CHECK(cudaFreeAsync(scratch, cudaStreamPerThread));
  TUNE_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
  return total;
}

}  // namespace tune::cuda
