// Dropout, the kernel lab (llm.c dev/cuda style). Standalone:
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 --expt-relaxed-constexpr \
//        -I include -I src dev/kernels/dropout.cu -o build/lab/dropout
//   build/lab/dropout [rows cols]     (an extra timing shape; the default set is below)
//   out[i] = keep(i) ? x[i] * keep_scale : 0,   keep(i) = uniform01(seed, stream, i) >= p
// with uniform01 = (word 0 of Philox-4x32-10 at counter (i, stream), key seed) >> 8, times 2^-24,
// compared in f32, and keep_scale = f32(1 / (1 - p)), as ops::dropout passes them. The mask is a
// pure function of (seed, stream, i), so the CUDA mask must equal the CPU's bit for bit. The lab
// compiles in the engine's CUDA kernel (src/backend/cuda/elementwise.cu) and the CPU's own code
// (src/core/rng.cpp's uniform01 and src/backend/cpu/elementwise.cpp's dropout) and checks:
//   f32:  every output bit against tune::cpu::dropout<float> itself;
//   bf16: (no CPU bf16 kernel) every output bit against the CPU's rule: keep by tune::uniform01,
//         then bf16(f32(x) * keep_scale), rounded to nearest even;
//   both: the mask alone (out != 0, inputs nonzero) against tune::uniform01's, counted apart.
// Variants (all must give the same bits):
//   1: the engine: dropout_kernel, one element per grid-stride iteration, one Philox per element.
//   2: 128-bit packs (4 f32 or 8 bf16) per iteration, still one Philox (word 0) per element, the
//      engine's philox_word0; scalar when a pointer is not 16-byte aligned, scalar tail.
// Dropout is expected to be bound by Philox's integer work rather than by memory (10 rounds of
// two 32x32 multiplies, hi and lo, per element), so the timing prints elements/s besides GB/s
// (x read, out written) and a device-to-device copy of the same bytes as the memory ceiling.
// Sizes: LoRA inputs (T 2048 x hidden 4096, 8192 x 2048) and awkward ones (1, 7, 33, 4097 rows
// x 4096 / 1000 columns), at p 0.05, 0.1, 0.5, and at p 0.1 through views one element in
// (unaligned).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../../src/backend/cpu/elementwise.cpp"
#include "../../src/backend/cuda/elementwise.cu"
#include "../../src/core/rng.cpp"

// The two libtune functions elementwise.cu names (copy / copy_2d and its unsupported-dtype
// message); the lab has no libtune to link.
const char* tune::dtype_name(tune::DType) {
  return "dtype";
}
size_t tune::dtype_size(tune::DType t) {
  switch (t) {
    case tune::DType::f64:
    case tune::DType::i64:
      return 8;
    case tune::DType::f32:
    case tune::DType::i32:
      return 4;
    case tune::DType::bf16:
    case tune::DType::f16:
      return 2;
    default:
      return 1;
  }
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
    return __float2bfloat16_rn(v);
  }
}

template <typename T>
constexpr tune::DType dtype_of() {
  return std::is_same_v<T, float> ? tune::DType::f32 : tune::DType::bf16;
}

template <typename T>
struct alignas(16) Pack {
  static constexpr int k = 16 / sizeof(T);
  T v[k];
};

constexpr int kBlock = 256;
int g_sms = 132;
cudaStream_t g_stream = cudaStreamPerThread;  // the engine's stream; events are recorded on it

__device__ __forceinline__ float keep_or_zero(float x, uint64_t i, float threshold,
                                              float keep_scale, uint64_t seed, uint64_t stream) {
  const uint32_t r = tune::cuda::philox_word0(seed, stream, i);
  const float u = static_cast<float>(r >> 8) * (1.0f / 16777216.0f);
  return u >= threshold ? x * keep_scale : 0.0f;
}

// ---- variant 2: 128-bit packs, one Philox per element ----
template <typename T>
__global__ void dropout2(T* out, const T* x, int64_t n, int64_t packs, float threshold,
                         float keep_scale, uint64_t seed, uint64_t stream) {
  using P = Pack<T>;
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t q = tid; q < packs; q += stride) {
    const P xp = reinterpret_cast<const P*>(x)[q];
    P op;
#pragma unroll
    for (int j = 0; j < P::k; ++j)
      op.v[j] = from_f<T>(
          keep_or_zero(to_f(xp.v[j]), uint64_t(q * P::k + j), threshold, keep_scale, seed, stream));
    reinterpret_cast<P*>(out)[q] = op;
  }
  for (int64_t i = packs * P::k + tid; i < n; i += stride)
    out[i] = from_f<T>(keep_or_zero(to_f(x[i]), uint64_t(i), threshold, keep_scale, seed, stream));
}

int blocks_for(int64_t work) {
  return int(std::clamp<int64_t>((work + kBlock - 1) / kBlock, 1, 8192));
}

// p as ops::dropout casts it: threshold f32(p), keep_scale f32(1 / (1 - p)).
template <typename T>
void dropout(int variant, T* out, const T* x, int64_t n, double p, uint64_t seed, uint64_t stream) {
  const float threshold = static_cast<float>(p), keep_scale = static_cast<float>(1.0 / (1.0 - p));
  if (variant == 1) {
    tune::cuda::dropout(dtype_of<T>(), out, x, n, threshold, keep_scale, seed, stream);
  } else if (n > 0) {
    const bool vec =
        reinterpret_cast<uintptr_t>(out) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
    const int64_t packs = vec ? n / Pack<T>::k : 0;
    dropout2<T><<<blocks_for(packs + (n - packs * Pack<T>::k)), kBlock, 0, g_stream>>>(
        out, x, n, packs, threshold, keep_scale, seed, stream);
  }
  CHECK(cudaGetLastError());
}
constexpr int kVariants = 2;

// ---- host side ----
template <typename T>
T host_from(float f) {
  if constexpr (std::is_same_v<T, float>) {
    return f;
  } else {
    const uint16_t h = tune::f32_to_bf16(f);
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
    return tune::bf16_to_f32(h);
  }
}

int g_failures = 0;

template <typename T>
void validate(const char* tname, int64_t rows, int64_t cols, double p, int offset) {
  const int64_t n = rows * cols;
  const uint64_t seed = 0x9E3779B97F4A7C15ull ^ uint64_t(n) * 0x100000001B3ull;
  const uint64_t stream = (uint64_t(rows) << 40) | 0x1'0000'0003ull;  // both halves of the hi word
  std::mt19937 rng(unsigned(rows * 131 + cols));
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<T> hx(n), want(n);
  std::vector<char> keep(n);
  for (int64_t i = 0; i < n; ++i) {
    float v = nd(rng);
    if (host_to(host_from<T>(v)) == 0.0f) v = 1.0f;  // nonzero inputs: out != 0 is the mask
    hx[i] = host_from<T>(v);
  }
  const float threshold = static_cast<float>(p), keep_scale = static_cast<float>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; ++i) keep[i] = tune::uniform01(seed, stream, uint64_t(i)) >= threshold;
  if constexpr (std::is_same_v<T, float>) {
    tune::cpu::dropout<float>(want.data(), hx.data(), n, p, seed, stream);  // the CPU kernel
  } else {
    for (int64_t i = 0; i < n; ++i)
      want[i] = host_from<T>(keep[i] ? host_to(hx[i]) * keep_scale : 0.0f);
  }
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) kept += keep[i];
  T *dx, *dout;
  CHECK(cudaMalloc(&dx, (n + 16) * sizeof(T)));
  CHECK(cudaMalloc(&dout, (n + 16) * sizeof(T)));
  CHECK(cudaMemcpy(dx + offset, hx.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  for (int v = 1; v <= kVariants; ++v) {
    CHECK(cudaMemset(dout, 0xff, (n + 16) * sizeof(T)));  // NaN in f32 and bf16
    dropout<T>(v, dout + offset, dx + offset, n, p, seed, stream);
    CHECK(cudaDeviceSynchronize());
    std::vector<T> got(n);
    CHECK(cudaMemcpy(got.data(), dout + offset, n * sizeof(T), cudaMemcpyDeviceToHost));
    size_t bits = 0, mask = 0;
    for (int64_t i = 0; i < n; ++i) {
      bits += std::memcmp(&got[i], &want[i], sizeof(T)) != 0;
      mask += (host_to(got[i]) != 0.0f) != bool(keep[i]);
    }
    if (bits || mask) {
      std::printf(
          "FAIL %s variant %d %lldx%lld p %.2f offset %d: %zu outputs not the CPU's bits, %zu "
          "mask elements not the CPU's\n",
          tname, v, (long long)rows, (long long)cols, p, offset, bits, mask);
      ++g_failures;
    }
  }
  // In place (out over x), variant 1 (the engine allows it).
  dropout<T>(1, dx + offset, dx + offset, n, p, seed, stream);
  CHECK(cudaDeviceSynchronize());
  std::vector<T> got(n);
  CHECK(cudaMemcpy(got.data(), dx + offset, n * sizeof(T), cudaMemcpyDeviceToHost));
  size_t bits = 0;
  for (int64_t i = 0; i < n; ++i) bits += std::memcmp(&got[i], &want[i], sizeof(T)) != 0;
  if (bits) {
    std::printf("FAIL %s variant 1 in place %lldx%lld p %.2f offset %d: %zu outputs wrong\n", tname,
                (long long)rows, (long long)cols, p, offset, bits);
    ++g_failures;
  }
  if (n >= (1 << 20) && offset == 0)
    std::printf("%s %lldx%lld p %.2f: kept %.5f (expect %.5f)\n", tname, (long long)rows,
                (long long)cols, p, double(kept) / n, 1.0 - p);
  cudaFree(dx), cudaFree(dout);
}

template <typename T>
__global__ void fill_spread(T* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 0x9E3779B1u;
    h ^= h >> 16, h *= 0x85EBCA6Bu, h ^= h >> 13;
    x[i] = from_f<T>(float(h >> 8) * (2.0f / 16777216.0f) - 1.0f);
  }
}

template <typename F>
float time_ms(F&& f, int reps = 20) {
  for (int i = 0; i < 3; ++i) f();
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  CHECK(cudaEventRecord(a, g_stream));
  for (int i = 0; i < reps; ++i) f();
  CHECK(cudaEventRecord(b, g_stream));
  CHECK(cudaEventSynchronize(b));
  float ms;
  CHECK(cudaEventElapsedTime(&ms, a, b));
  CHECK(cudaGetLastError());
  cudaEventDestroy(a), cudaEventDestroy(b);
  return ms / reps;
}

template <typename T>
void bench(const char* tname, int64_t rows, int64_t cols, double p) {
  const int64_t n = rows * cols;
  T *x, *out;
  CHECK(cudaMalloc(&x, n * sizeof(T)));
  CHECK(cudaMalloc(&out, n * sizeof(T)));
  fill_spread<T><<<blocks_for(n), kBlock, 0, g_stream>>>(x, n);
  CHECK(cudaStreamSynchronize(g_stream));
  const double bytes = 2.0 * n * sizeof(T);
  const float c = time_ms(
      [&] { CHECK(cudaMemcpyAsync(out, x, n * sizeof(T), cudaMemcpyDeviceToDevice, g_stream)); });
  std::printf("%-4s %5lldx%-5lld p %.2f copy     : %8.2f us %6.0f GB/s\n", tname, (long long)rows,
              (long long)cols, p, c * 1e3, bytes / (c * 1e6));
  for (int v = 1; v <= kVariants; ++v) {
    uint64_t step = 0;
    const float ms = time_ms([&] { dropout<T>(v, out, x, n, p, 1234, 0x6c6f7261 + step++); });
    std::printf("%-4s %5lldx%-5lld p %.2f variant %d: %8.2f us %6.0f GB/s %7.1f Gelem/s\n", tname,
                (long long)rows, (long long)cols, p, v, ms * 1e3, bytes / (ms * 1e6),
                n / (ms * 1e6));
  }
  cudaFree(x), cudaFree(out);
}

}  // namespace lab

int main(int argc, char** argv) {
  using namespace lab;
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  g_sms = prop.multiProcessorCount;
  std::printf("%s, %d SMs\n", prop.name, g_sms);
  for (double p : {0.05, 0.1, 0.5})
    for (int64_t rows : {1, 7, 33, 4097})
      for (int64_t cols : {4096, 1000})
        for (int offset : {0, 1}) {
          if (offset && p != 0.1) continue;
          validate<float>("f32", rows, cols, p, offset);
          validate<bf16>("bf16", rows, cols, p, offset);
        }
  for (int offset : {0, 1}) {  // the LoRA sizes themselves
    validate<float>("f32", 2048, 4096, 0.1, offset);
    validate<bf16>("bf16", 2048, 4096, 0.1, offset);
    validate<bf16>("bf16", 8192, 2048, 0.05, offset);
  }
  std::printf("validation: %s\n",
              g_failures ? "FAILED" : "every variant gives the CPU's mask and bits");
  const int64_t shapes[][2] = {{2048, 4096}, {8192, 2048}, {4097, 1000}};
  for (const auto& s : shapes) {
    bench<float>("f32", s[0], s[1], 0.1);
    bench<bf16>("bf16", s[0], s[1], 0.1);
  }
  if (argc > 2) {
    bench<float>("f32", std::atoll(argv[1]), std::atoll(argv[2]), 0.1);
    bench<bf16>("bf16", std::atoll(argv[1]), std::atoll(argv[2]), 0.1);
  }
  return g_failures ? 1 : 0;
}
