// AdamW (f32, and mixed precision: f32 master and moments with a bf16/f16/f32 compute copy), SGD,
// and the sum of squares behind the global gradient norm.
//
// AdamW and SGD are elementwise: one thread per element (grid-stride), the CPU kernel's formula
// with explicit roundings — __fmaf_rn where torch fuses (lerp_, addcmul_, add_ with alpha),
// __fmul_rn/__fadd_rn where it does not (nvcc would otherwise contract a * b + c into an FMA),
// __fsqrt_rn and __fdiv_rn — so the update equals the CPU's (and torch's) to the bit. The mixed
// update runs the same per-element function on g = grad_scale * grad (one rounded product, exact
// when grad_scale is 1) and then rounds the new master to the compute dtype.
//
// The sum of squares: each block sums a fixed range in f64 and writes one partial; a second
// launch sums the partials in order. No atomics, so the result never depends on scheduling.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_math.cuh"
#include "backend/cuda/optim_kernels.h"

namespace tune::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 1024;

struct Coeffs {
  float decay, lerp_coeff, v_weight, beta2, bc2_sqrt, eps, neg_step_size;
  bool small_weight;
};

// One element's AdamW step on master weight p with gradient g; m and v are updated in place.
// Returns the new p.
__device__ __forceinline__ float adamw_element(float p0, float g, float& m, float& v,
                                               const Coeffs& c) {
  const float p = __fmul_rn(p0, c.decay);
  const float mi = __fmaf_rn(c.lerp_coeff, __fsub_rn(g, m), c.small_weight ? m : g);
  const float vi = __fmaf_rn(__fmul_rn(c.v_weight, g), g, __fmul_rn(v, c.beta2));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), c.bc2_sqrt), c.eps);
  m = mi;
  v = vi;
  return __fadd_rn(p, __fdiv_rn(__fmul_rn(c.neg_step_size, mi), denom));
}

__global__ void adamw_kernel(float* __restrict__ param, const float* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v, int64_t n, Coeffs c) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float mi = m[i], vi = v[i];
    param[i] = adamw_element(param[i], grad[i], mi, vi, c);
    m[i] = mi;
    v[i] = vi;
  }
}

// The mixed-precision step: master, m, v f32; grad and param of the compute type T.
template <typename T>
__global__ void adamw_mixed_kernel(float* __restrict__ master, T* __restrict__ param,
                                   const T* __restrict__ grad, float* __restrict__ m,
                                   float* __restrict__ v, int64_t n, Coeffs c, float grad_scale) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float mi = m[i], vi = v[i];
    const float g = __fmul_rn(to_f(grad[i]), grad_scale);
    const float p = adamw_element(master[i], g, mi, vi, c);
    master[i] = p;
    param[i] = from_f<T>(p);
    m[i] = mi;
    v[i] = vi;
  }
}

struct SgdCoeffs {
  float neg_lr, mu, wd;
  bool decay, use_momentum, first;
};

// backend/cpu/optim_kernels.cpp's sgd_element with its roundings.
__global__ void sgd_kernel(float* __restrict__ param, const float* __restrict__ grad,
                           float* __restrict__ momentum_buf, int64_t n, SgdCoeffs c) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float d = grad[i];
    const float p = param[i];
    if (c.decay) d = __fmaf_rn(c.wd, p, d);
    if (c.use_momentum) {
      d = c.first ? d : __fadd_rn(__fmul_rn(momentum_buf[i], c.mu), d);
      momentum_buf[i] = d;
    }
    param[i] = __fmaf_rn(c.neg_lr, d, p);
  }
}

// Block b sums elements [b * per, (b + 1) * per) into partial[b].
template <typename T>
__global__ void sum_squares_partial(const T* __restrict__ x, int64_t n, int64_t per,
                                    double* __restrict__ partial) {
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * per;
  const int64_t end = begin + per < n ? begin + per : n;
  double s = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double xi = to_f(x[i]);
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

Coeffs coeffs(const cpu::AdamWScalars& s) {
  const auto m_weight = static_cast<float>(s.m_weight);
  const bool small_weight = (m_weight < 0 ? -m_weight : m_weight) < 0.5f;
  return Coeffs{static_cast<float>(s.decay),
                small_weight ? m_weight : m_weight - 1.0f,
                static_cast<float>(s.v_weight),
                static_cast<float>(s.beta2),
                static_cast<float>(s.bias_correction2_sqrt),
                static_cast<float>(s.eps),
                static_cast<float>(s.neg_step_size),
                small_weight};
}

unsigned elementwise_blocks(int64_t n) {
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(wanted < 65535 * 8 ? wanted : 65535 * 8);
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const cpu::AdamWScalars& s) {
  if (n == 0) return;
  adamw_kernel<<<elementwise_blocks(n), kThreads, 0, cudaStreamPerThread>>>(param, grad, m, v, n,
                                                                            coeffs(s));
  TUNE_CUDA_CHECK(cudaGetLastError());
}

void adamw_update_mixed(DType dtype, float* master, void* param, const void* grad, float* m,
                        float* v, int64_t n, const cpu::AdamWScalars& s, float grad_scale) {
  if (n == 0) return;
  if (dtype != DType::f32 && dtype != DType::bf16 && dtype != DType::f16) {
    throw Error(
        str("cuda::adamw_update_mixed: ", dtype_name(dtype), " is not supported (f32, bf16, f16)"));
  }
  dispatch_storage(dtype, [&](auto tag) {
    using T = decltype(tag);
    adamw_mixed_kernel<T><<<elementwise_blocks(n), kThreads, 0, cudaStreamPerThread>>>(
        master, static_cast<T*>(param), static_cast<const T*>(grad), m, v, n, coeffs(s),
        grad_scale);
  });
  TUNE_CUDA_CHECK(cudaGetLastError());
}

void sgd_update(float* param, const float* grad, float* momentum_buf, int64_t n, double lr,
                double momentum, double weight_decay, cpu::FirstStep first_step) {
  if (n == 0) return;
  // The scalars cast to f32 once, as the CPU kernel does.
  const SgdCoeffs c{static_cast<float>(-lr),
                    static_cast<float>(momentum),
                    static_cast<float>(weight_decay),
                    weight_decay != 0.0,
                    momentum != 0.0,
                    first_step == cpu::FirstStep::yes};
  sgd_kernel<<<elementwise_blocks(n), kThreads, 0, cudaStreamPerThread>>>(param, grad, momentum_buf,
                                                                          n, c);
  TUNE_CUDA_CHECK(cudaGetLastError());
}

double sum_squares(DType dtype, const void* x, int64_t n) {
  if (n == 0) return 0.0;
  if (dtype != DType::f32 && dtype != DType::bf16 && dtype != DType::f16) {
    throw Error(
        str("cuda::sum_squares: ", dtype_name(dtype), " is not supported (f32, bf16, f16)"));
  }
  const int64_t per_min = kThreads * 16;
  int64_t blocks = (n + per_min - 1) / per_min;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  const int64_t per = (n + blocks - 1) / blocks;
  double* scratch = nullptr;  // blocks partials, then the total
  TUNE_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&scratch),
                                  static_cast<size_t>(blocks + 1) * sizeof(double),
                                  cudaStreamPerThread));
  dispatch_storage(dtype, [&](auto tag) {
    using T = decltype(tag);
    sum_squares_partial<T><<<static_cast<unsigned>(blocks), kThreads, 0, cudaStreamPerThread>>>(
        static_cast<const T*>(x), n, per, scratch);
  });
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
