// CUDA elementwise kernels: fill, copy, add, add_inplace, scale_inplace, add_bias, bias_backward,
// SwiGLU and GELU (tanh) forward and backward, dropout and strided 2-D copies. Design notes:
// - Storage is f32, bf16 or f16; the math is f32 (bias_backward accumulates in f64).
// - The elementwise ops share one kernel, map_kernel: each thread loads 128-bit packs (4 f32 or
//   8 bf16/f16) of every input, applies the op per element and stores the packs, grid-stride;
//   the last n % pack elements take a scalar tail. When any pointer is not 16-byte aligned (a view
//   at an odd offset) the whole range takes the scalar path. dev/kernels/swiglu.cu measured the
//   two (variant 2 is this one). A thread loads all of its inputs before it stores, so an output
//   may alias an input.
// - bias_backward is deterministic: blocks of 32 columns x 8 row lanes sum fixed row chunks in a
//   fixed order into f64 partials, and a second pass sums the partials per column in chunk order.
//   The chunking depends on the shape alone.
// - Dropout draws its mask with the same Philox-4x32-10 as tune::uniform01 (src/core/rng.cpp),
//   word 0 of counter (index, stream) under key seed, so CPU and GPU drop the same elements.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/elementwise_kernels.h"

namespace tune::cuda {

namespace {

constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 8192;  // grid-stride beyond: ~60 blocks of 256 threads per SM

__device__ inline float to_f(float x) {
  return x;
}
__device__ inline float to_f(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
__device__ inline float to_f(__half x) {
  return __half2float(x);
}
template <typename T>
__device__ inline T from_f(float x);
template <>
__device__ inline float from_f<float>(float x) {
  return x;
}
template <>
__device__ inline __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ inline __half from_f<__half>(float x) {
  return __float2half_rn(x);
}

template <typename T>
struct alignas(16) Pack {
  static constexpr int k = 16 / sizeof(T);
  T v[k];
};

constexpr int at_least_one(int n) {
  return n > 0 ? n : 1;
}

template <typename T, int NIn, int NOut>
struct Ptrs {
  const T* in[at_least_one(NIn)];
  T* out[NOut];
};

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

int blocks_for(int64_t work) {
  return static_cast<int>(std::clamp<int64_t>((work + kBlock - 1) / kBlock, 1, kMaxBlocks));
}

// out[j][i] = op(in[0][i], ..., in[NIn-1][i]) for i < n; the first `packs` packs vectorised.
template <typename T, int NIn, int NOut, typename Op>
__global__ void map_kernel(Ptrs<T, NIn, NOut> p, int64_t n, int64_t packs, Op op) {
  using P = Pack<T>;
  const int64_t tid = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t q = tid; q < packs; q += stride) {
    P in[at_least_one(NIn)];
#pragma unroll
    for (int a = 0; a < NIn; ++a) in[a] = reinterpret_cast<const P*>(p.in[a])[q];
    P out[NOut];
#pragma unroll
    for (int j = 0; j < P::k; ++j) {
      float x[at_least_one(NIn)], y[NOut];
#pragma unroll
      for (int a = 0; a < NIn; ++a) x[a] = to_f(in[a].v[j]);
      op(x, y);
#pragma unroll
      for (int b = 0; b < NOut; ++b) out[b].v[j] = from_f<T>(y[b]);
    }
#pragma unroll
    for (int b = 0; b < NOut; ++b) reinterpret_cast<P*>(p.out[b])[q] = out[b];
  }
  for (int64_t i = packs * P::k + tid; i < n; i += stride) {
    float x[at_least_one(NIn)], y[NOut];
#pragma unroll
    for (int a = 0; a < NIn; ++a) x[a] = to_f(p.in[a][i]);
    op(x, y);
#pragma unroll
    for (int b = 0; b < NOut; ++b) p.out[b][i] = from_f<T>(y[b]);
  }
}

template <typename T, int NIn, int NOut, typename Op>
void map(const Ptrs<T, NIn, NOut>& p, int64_t n, Op op) {
  if (n == 0) return;
  bool vec = true;
  for (int a = 0; a < NIn; ++a) vec = vec && aligned16(p.in[a]);
  for (int b = 0; b < NOut; ++b) vec = vec && aligned16(p.out[b]);
  const int64_t packs = vec ? n / Pack<T>::k : 0;
  const int64_t work = packs + (n - packs * Pack<T>::k);
  map_kernel<T, NIn, NOut><<<blocks_for(work), kBlock, 0, cudaStreamPerThread>>>(p, n, packs, op);
  TUNE_CUDA_CHECK(cudaGetLastError());
}

struct FillOp {
  float value;
  __device__ void operator()(const float (&)[1], float (&y)[1]) const { y[0] = value; }
};
struct AddOp {
  __device__ void operator()(const float (&x)[2], float (&y)[1]) const { y[0] = x[0] + x[1]; }
};
struct AxpyOp {  // y + alpha x
  float alpha;
  __device__ void operator()(const float (&x)[2], float (&y)[1]) const {
    y[0] = x[0] + alpha * x[1];
  }
};
struct ScaleOp {
  float alpha;
  __device__ void operator()(const float (&x)[1], float (&y)[1]) const { y[0] = x[0] * alpha; }
};
__device__ inline float sigmoid(float g) {
  return 1.0f / (1.0f + expf(-g));  // exp overflows to inf for very negative g: s = 0, no NaN
}
struct SwigluForwardOp {  // (gate, up) -> h
  __device__ void operator()(const float (&x)[2], float (&y)[1]) const {
    const float g = x[0];
    y[0] = g * sigmoid(g) * x[1];
  }
};
struct SwigluBackwardOp {  // (dh, gate, up) -> (dgate, dup)
  __device__ void operator()(const float (&x)[3], float (&y)[2]) const {
    const float d = x[0], g = x[1], u = x[2], s = sigmoid(g);
    y[0] = d * u * s * (1.0f + g * (1.0f - s));
    y[1] = d * g * s;
  }
};

// GELU, tanh approximation, as the CPU kernel (backend/cpu/activation.cpp) computes it.
constexpr float kGeluK = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluA = 0.044715f;
struct GeluForwardOp {  // x -> y
  __device__ void operator()(const float (&x)[1], float (&y)[1]) const {
    const float v = x[0];
    y[0] = 0.5f * v * (1.0f + tanhf(kGeluK * (v + kGeluA * v * v * v)));
  }
};
struct GeluBackwardOp {  // (dy, x) -> dx
  __device__ void operator()(const float (&x)[2], float (&y)[1]) const {
    const float v = x[1], t = tanhf(kGeluK * (v + kGeluA * v * v * v));
    const float grad =
        0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * kGeluK * (1.0f + 3.0f * kGeluA * v * v);
    y[0] = x[0] * grad;
  }
};

// tune::philox4x32(key, counter_hi, counter_lo)[0], the word uniform01 uses.
__device__ __forceinline__ uint32_t philox_word0(uint64_t key, uint64_t hi, uint64_t lo) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(lo), c1 = static_cast<uint32_t>(lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(hi), c3 = static_cast<uint32_t>(hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi0 = __umulhi(kM0, c0), lo0 = kM0 * c0;
    const uint32_t hi1 = __umulhi(kM1, c2), lo1 = kM1 * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
    k0 += kW0, k1 += kW1;
  }
  return c0;
}

// out[i] = keep(i) ? x[i] * keep_scale : 0 with keep(i) = uniform01(seed, stream, i) >= threshold,
// uniform01 = (word >> 8) * 2^-24 (exact in f32).
template <typename T>
__global__ void dropout_kernel(T* out, const T* x, int64_t n, float threshold, float keep_scale,
                               uint64_t seed, uint64_t stream) {
  const int64_t tid = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = tid; i < n; i += stride) {
    const uint32_t r = philox_word0(seed, stream, static_cast<uint64_t>(i));
    const float u = static_cast<float>(r >> 8) * (1.0f / 16777216.0f);
    out[i] = u >= threshold ? from_f<T>(to_f(x[i]) * keep_scale) : from_f<T>(0.0f);
  }
}

// y (rows, cols) += b (cols); packs when cols is a multiple of the pack and both are aligned.
template <typename T>
__global__ void add_bias_kernel(T* y, const T* b, int64_t n, int64_t cols, bool vec) {
  using P = Pack<T>;
  const int64_t tid = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  if (vec) {
    for (int64_t q = tid; q < n / P::k; q += stride) {
      P yp = reinterpret_cast<P*>(y)[q];
      const P bp = reinterpret_cast<const P*>(b)[(q * P::k % cols) / P::k];
#pragma unroll
      for (int j = 0; j < P::k; ++j) yp.v[j] = from_f<T>(to_f(yp.v[j]) + to_f(bp.v[j]));
      reinterpret_cast<P*>(y)[q] = yp;
    }
  } else {
    for (int64_t i = tid; i < n; i += stride) y[i] = from_f<T>(to_f(y[i]) + to_f(b[i % cols]));
  }
}

constexpr int kColTile = 32, kRowLanes = 8;

// Column sums of dy rows [chunk * rows_per_chunk, ...) for 32 columns per block: lane ty sums rows
// ty, ty + 8, ... of the chunk, then lane 0 adds the 8 lane sums in order. With partial, the sum
// goes to partial[chunk, col]; without (one chunk), it is added to db.
template <typename T>
__global__ void bias_partial_kernel(const T* dy, int64_t rows, int64_t cols, int64_t rows_per_chunk,
                                    double* partial, T* db) {
  __shared__ double lane_sum[kRowLanes][kColTile];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t col = blockIdx.x * int64_t{kColTile} + tx;
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = std::min(rows, r0 + rows_per_chunk);
  double acc = 0;
  if (col < cols) {
    for (int64_t r = r0 + ty; r < r1; r += kRowLanes) acc += to_f(dy[r * cols + col]);
  }
  lane_sum[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && col < cols) {
    double sum = 0;
#pragma unroll
    for (int l = 0; l < kRowLanes; ++l) sum += lane_sum[l][tx];
    if (partial) {
      partial[blockIdx.y * cols + col] = sum;
    } else {
      db[col] = from_f<T>(to_f(db[col]) + static_cast<float>(sum));
    }
  }
}

template <typename T>
__global__ void bias_finish_kernel(T* db, const double* partial, int64_t chunks, int64_t cols) {
  const int64_t col = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (col >= cols) return;
  double sum = 0;
  for (int64_t c = 0; c < chunks; ++c) sum += partial[c * cols + col];
  db[col] = from_f<T>(to_f(db[col]) + static_cast<float>(sum));
}

template <typename F>
void dispatch(DType dtype, const char* what, F f) {
  switch (dtype) {
    case DType::f32:
      return f(float{});
    case DType::bf16:
      return f(__nv_bfloat16{});
    case DType::f16:
      return f(__half{});
    default:
      break;
  }
  throw Error(str(what, ": ", dtype_name(dtype), " is not supported (f32, bf16, f16)"));
}

}  // namespace

void fill(DType dtype, void* x, int64_t n, double value) {
  dispatch(dtype, "cuda::fill", [&](auto tag) {
    using T = decltype(tag);
    map(Ptrs<T, 0, 1>{{nullptr}, {static_cast<T*>(x)}}, n, FillOp{static_cast<float>(value)});
  });
}

void copy(DType dtype, void* dst, const void* src, int64_t n) {
  const size_t bytes = static_cast<size_t>(n) * dtype_size(dtype);
  if (dst == src || bytes == 0) return;
  const auto d = reinterpret_cast<uintptr_t>(dst), s = reinterpret_cast<uintptr_t>(src);
  if (d + bytes <= s || s + bytes <= d) {
    TUNE_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cudaStreamPerThread));
    return;
  }
  // Overlapping ranges (memmove): through a temporary, stream-ordered.
  void* tmp = nullptr;
  TUNE_CUDA_CHECK(cudaMallocAsync(&tmp, bytes, cudaStreamPerThread));
  TUNE_CUDA_CHECK(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, cudaStreamPerThread));
  TUNE_CUDA_CHECK(cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, cudaStreamPerThread));
  TUNE_CUDA_CHECK(cudaFreeAsync(tmp, cudaStreamPerThread));
}

void add(DType dtype, void* out, const void* a, const void* b, int64_t n) {
  dispatch(dtype, "cuda::add", [&](auto tag) {
    using T = decltype(tag);
    map(Ptrs<T, 2, 1>{{static_cast<const T*>(a), static_cast<const T*>(b)}, {static_cast<T*>(out)}},
        n, AddOp{});
  });
}

void add_inplace(DType dtype, void* y, const void* x, int64_t n, double alpha) {
  dispatch(dtype, "cuda::add_inplace", [&](auto tag) {
    using T = decltype(tag);
    map(Ptrs<T, 2, 1>{{static_cast<const T*>(y), static_cast<const T*>(x)}, {static_cast<T*>(y)}},
        n, AxpyOp{static_cast<float>(alpha)});
  });
}

void scale_inplace(DType dtype, void* y, int64_t n, double alpha) {
  dispatch(dtype, "cuda::scale_inplace", [&](auto tag) {
    using T = decltype(tag);
    map(Ptrs<T, 1, 1>{{static_cast<const T*>(y)}, {static_cast<T*>(y)}}, n,
        ScaleOp{static_cast<float>(alpha)});
  });
}

void add_bias(DType dtype, void* y, const void* b, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  dispatch(dtype, "cuda::add_bias", [&](auto tag) {
    using T = decltype(tag);
    const bool vec = cols % Pack<T>::k == 0 && aligned16(y) && aligned16(b);
    const int64_t work = vec ? n / Pack<T>::k : n;
    add_bias_kernel<T><<<blocks_for(work), kBlock, 0, cudaStreamPerThread>>>(
        static_cast<T*>(y), static_cast<const T*>(b), n, cols, vec);
    TUNE_CUDA_CHECK(cudaGetLastError());
  });
}

void bias_backward(DType dtype, void* db, const void* dy, int64_t rows, int64_t cols) {
  if (rows == 0 || cols == 0) return;
  // Enough row chunks for ~4 blocks per SM on an H100, at least 64 rows each; shape-only.
  const int64_t col_tiles = (cols + kColTile - 1) / kColTile;
  int64_t chunks = std::clamp<int64_t>((528 + col_tiles - 1) / col_tiles, 1, (rows + 63) / 64);
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  dispatch(dtype, "cuda::bias_backward", [&](auto tag) {
    using T = decltype(tag);
    const dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(chunks));
    const dim3 block(kColTile, kRowLanes);
    const T* dy_t = static_cast<const T*>(dy);
    T* db_t = static_cast<T*>(db);
    if (chunks == 1) {
      bias_partial_kernel<T>
          <<<grid, block, 0, cudaStreamPerThread>>>(dy_t, rows, cols, rows, nullptr, db_t);
      TUNE_CUDA_CHECK(cudaGetLastError());
      return;
    }
    double* partial = nullptr;
    TUNE_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&partial),
                                    static_cast<size_t>(chunks * cols) * sizeof(double),
                                    cudaStreamPerThread));
    bias_partial_kernel<T>
        <<<grid, block, 0, cudaStreamPerThread>>>(dy_t, rows, cols, rows_per_chunk, partial, db_t);
    TUNE_CUDA_CHECK(cudaGetLastError());
    bias_finish_kernel<T>
        <<<static_cast<unsigned>((cols + kBlock - 1) / kBlock), kBlock, 0, cudaStreamPerThread>>>(
            db_t, partial, chunks, cols);
    TUNE_CUDA_CHECK(cudaGetLastError());
    TUNE_CUDA_CHECK(cudaFreeAsync(partial, cudaStreamPerThread));
  });
}

void swiglu_forward(DType dtype, void* h, const void* gate, const void* up, int64_t n) {
  dispatch(dtype, "cuda::swiglu_forward", [&](auto tag) {
    using T = decltype(tag);
    map(Ptrs<T, 2, 1>{{static_cast<const T*>(gate), static_cast<const T*>(up)},
                      {static_cast<T*>(h)}},
        n, SwigluForwardOp{});
  });
}

void swiglu_backward(DType dtype, void* dgate, void* dup, const void* dh, const void* gate,
                     const void* up, int64_t n) {
  dispatch(dtype, "cuda::swiglu_backward", [&](auto tag) {
    using T = decltype(tag);
    map(Ptrs<T, 3, 2>{{static_cast<const T*>(dh), static_cast<const T*>(gate),
                       static_cast<const T*>(up)},
                      {static_cast<T*>(dgate), static_cast<T*>(dup)}},
        n, SwigluBackwardOp{});
  });
}

void gelu_tanh_forward(DType dtype, void* y, const void* x, int64_t n) {
  dispatch(dtype, "cuda::gelu_tanh_forward", [&](auto tag) {
    using T = decltype(tag);
    map(Ptrs<T, 1, 1>{{static_cast<const T*>(x)}, {static_cast<T*>(y)}}, n, GeluForwardOp{});
  });
}

void gelu_tanh_backward(DType dtype, void* dx, const void* dy, const void* x, int64_t n) {
  dispatch(dtype, "cuda::gelu_tanh_backward", [&](auto tag) {
    using T = decltype(tag);
    map(Ptrs<T, 2, 1>{{static_cast<const T*>(dy), static_cast<const T*>(x)}, {static_cast<T*>(dx)}},
        n, GeluBackwardOp{});
  });
}

void dropout(DType dtype, void* out, const void* x, int64_t n, float threshold, float keep_scale,
             uint64_t seed, uint64_t stream) {
  if (n == 0) return;
  dispatch(dtype, "cuda::dropout", [&](auto tag) {
    using T = decltype(tag);
    dropout_kernel<T><<<blocks_for(n), kBlock, 0, cudaStreamPerThread>>>(
        static_cast<T*>(out), static_cast<const T*>(x), n, threshold, keep_scale, seed, stream);
    TUNE_CUDA_CHECK(cudaGetLastError());
  });
}

void copy_2d(DType dtype, void* dst, int64_t ld_dst, const void* src, int64_t ld_src, int64_t rows,
             int64_t cols) {
  if (rows == 0 || cols == 0) return;
  const size_t e = dtype_size(dtype);
  TUNE_CUDA_CHECK(cudaMemcpy2DAsync(dst, static_cast<size_t>(ld_dst) * e, src,
                                    static_cast<size_t>(ld_src) * e, static_cast<size_t>(cols) * e,
                                    static_cast<size_t>(rows), cudaMemcpyDeviceToDevice,
                                    cudaStreamPerThread));
}

}  // namespace tune::cuda
