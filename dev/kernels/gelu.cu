// GELU (tanh approximation, GPT-2's gelu_new) forward and backward, the kernel lab (llm.c
// dev/cuda style). Standalone:
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 --expt-relaxed-constexpr \
//        -I include -I src dev/kernels/gelu.cu -o build/lab/gelu
//   build/lab/gelu [rows cols]     (an extra timing shape; the default set is below)
//   forward   y  = 0.5 x (1 + t),  t = tanh(k (x + a x^3)),  k = sqrt(2/pi), a = 0.044715
//   backward  dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 a x^2))
// f32 and bf16 storage, f32 math. The engine (src/backend/cuda/elementwise.cu) is compiled in, so
// variant 1 is exactly what ops::gelu_tanh_forward / gelu_tanh_backward run on CUDA.
// Variants (forward and backward alike):
//   1: the engine: map_kernel, 128-bit packs (4 f32 or 8 bf16) grid-stride, scalar tail; a
//      pointer that is not 16-byte aligned sends the whole range down the scalar path (validated
//      here through views one element in: "1u").
//   2: a scalar grid-stride loop, one element per iteration, with the engine's own op structs
//      (GeluForwardOp, GeluBackwardOp): the same math, so its bits must equal variant 1's.
// Checked against a CPU reference in double (inputs rounded to the storage type first; error over
// |ref| + 1 forward, |ref| + |dy| backward; tolerance 1e-5 f32, 1e-2 bf16), every variant's bits
// against variant 1's, at awkward shapes (1, 7, 33, 4097 rows x 3072 / 1000 columns), in place
// (dx over dy) as well.
// Timed at GPT-2 124M training's MLP activation (B 64 x T 1024 rows x 4 * 768 = 3072) and
// smaller, with inputs spread over [-4, 4] (tanhf's cost depends on the argument). GB/s counts
// the bytes that must move: forward x read, y written; backward dy, x read, dx written.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../../src/backend/cuda/elementwise.cu"

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

// The lab's own helpers live apart from the engine's (tune::cuda): bf16 is a global-namespace
// type, so global helpers would be found by argument-dependent lookup from inside the engine.
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

constexpr int kBlock = 256;
int g_sms = 132;
cudaStream_t g_stream = cudaStreamPerThread;  // the engine's stream; events are recorded on it

// ---- variant 2: scalar grid-stride with the engine's op structs ----
template <typename T>
__global__ void gelu_forward2(T* y, const T* x, int64_t n) {
  const tune::cuda::GeluForwardOp op{};
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float in[1] = {to_f(x[i])};
    float out[1];
    op(in, out);
    y[i] = from_f<T>(out[0]);
  }
}
template <typename T>
__global__ void gelu_backward2(T* dx, const T* dy, const T* x, int64_t n) {
  const tune::cuda::GeluBackwardOp op{};
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float in[2] = {to_f(dy[i]), to_f(x[i])};
    float out[1];
    op(in, out);
    dx[i] = from_f<T>(out[0]);
  }
}

int blocks_for(int64_t n) {
  return int(std::clamp<int64_t>((n + kBlock - 1) / kBlock, 1, int64_t(g_sms) * 32));
}

template <typename T>
void forward(int variant, T* y, const T* x, int64_t n) {
  if (variant == 1) {
    tune::cuda::gelu_tanh_forward(dtype_of<T>(), y, x, n);
  } else if (n > 0) {
    gelu_forward2<T><<<blocks_for(n), kBlock, 0, g_stream>>>(y, x, n);
  }
  CHECK(cudaGetLastError());
}
template <typename T>
void backward(int variant, T* dx, const T* dy, const T* x, int64_t n) {
  if (variant == 1) {
    tune::cuda::gelu_tanh_backward(dtype_of<T>(), dx, dy, x, n);
  } else if (n > 0) {
    gelu_backward2<T><<<blocks_for(n), kBlock, 0, g_stream>>>(dx, dy, x, n);
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

template <typename T>
T* dalloc(int64_t n) {
  T* d;
  CHECK(cudaMalloc(&d, (n + 16) * sizeof(T)));  // room for the one-element-in views
  return d;
}
template <typename T>
std::vector<T> fetch(const T* d, int64_t n) {
  std::vector<T> h(n);
  CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

// max over i of |got - ref| / (|ref| + scale[i]); NaN anywhere gives NaN (and fails every
// tolerance). The forward's scale is 1; the backward's is |dy| (dx = dy * gelu'(x): gelu' is
// computed to within an f32 rounding of max(|gelu'|, 1), where 1 + t cancels for negative x).
template <typename T>
double max_err(const std::vector<T>& got, const std::vector<double>& ref,
               const std::vector<double>& scale) {
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = std::abs(double(host_to(got[i])) - ref[i]) / (std::abs(ref[i]) + scale[i]);
    if (!(e <= worst)) worst = e;
  }
  return worst;
}
template <typename T>
size_t bit_diffs(const std::vector<T>& a, const std::vector<T>& b) {
  size_t d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += std::memcmp(&a[i], &b[i], sizeof(T)) != 0;
  return d;
}

int g_failures = 0;

template <typename T>
void validate(const char* tname, int64_t rows, int64_t cols, double tol) {
  const int64_t n = rows * cols;
  std::mt19937 rng(unsigned(rows * 7919 + cols));
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<T> hx(n), hdy(n);
  std::vector<double> x(n), dy(n), ry(n), rdx(n);
  const float extremes[] = {0.f, -0.f, 30.f, -30.f, 8.f, -8.f, 1e-6f, -1e-6f};
  for (int64_t i = 0; i < n; ++i) {
    const float xv = (i % 97 == 5) ? extremes[(i / 97) % 8] : nd(rng);
    hx[i] = host_from<T>(xv);
    hdy[i] = host_from<T>(nd(rng));
    x[i] = host_to(hx[i]);
    dy[i] = host_to(hdy[i]);
  }
  std::vector<double> ones(n, 1.0), dy_scale(n);
  for (int64_t i = 0; i < n; ++i) dy_scale[i] = std::abs(dy[i]) + 1e-30;
  const double k = std::sqrt(2.0 / M_PI), a = 0.044715;
  for (int64_t i = 0; i < n; ++i) {  // the reference, in double
    const double v = x[i], t = std::tanh(k * (v + a * v * v * v));
    ry[i] = 0.5 * v * (1.0 + t);
    rdx[i] = dy[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * a * v * v));
  }
  T *dX = dalloc<T>(n), *dDY = dalloc<T>(n), *dY = dalloc<T>(n), *dDX = dalloc<T>(n);
  std::vector<T> y1, dx1;
  for (int v = 1; v <= kVariants; ++v) {
    CHECK(cudaMemcpy(dX, hx.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dDY, hdy.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    CHECK(cudaMemset(dY, 0xff, n * sizeof(T)));  // NaN in f32 and bf16
    CHECK(cudaMemset(dDX, 0xff, n * sizeof(T)));
    forward<T>(v, dY, dX, n);
    backward<T>(v, dDX, dDY, dX, n);
    CHECK(cudaDeviceSynchronize());
    const std::vector<T> gy = fetch(dY, n), gdx = fetch(dDX, n);
    // In place: dx written over dy (the engine allows it).
    backward<T>(v, dDY, dDY, dX, n);
    CHECK(cudaDeviceSynchronize());
    const std::vector<T> gip = fetch(dDY, n);
    if (v == 1) y1 = gy, dx1 = gdx;
    const double ey = max_err(gy, ry, ones), edx = max_err(gdx, rdx, dy_scale);
    const size_t bits = bit_diffs(gy, y1) + bit_diffs(gdx, dx1) + bit_diffs(gip, gdx);
    if (!(ey <= tol && edx <= tol) || bits) {
      std::printf(
          "FAIL %s variant %d %lldx%lld: y err %.3g dx err %.3g (tol %.0e); %zu elements not "
          "bitwise as variant 1 / in place as out of place\n",
          tname, v, (long long)rows, (long long)cols, ey, edx, tol, bits);
      ++g_failures;
    }
  }
  // The engine through views one element in: not 16-byte aligned, so the scalar path. Its bits
  // must equal the aligned run's.
  if (n > 1) {
    const int64_t m = n - 1;
    CHECK(cudaMemcpy(dX + 1, hx.data() + 1, m * sizeof(T), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dDY + 1, hdy.data() + 1, m * sizeof(T), cudaMemcpyHostToDevice));
    CHECK(cudaMemset(dY, 0xff, n * sizeof(T)));
    CHECK(cudaMemset(dDX, 0xff, n * sizeof(T)));
    forward<T>(1, dY + 1, dX + 1, m);
    backward<T>(1, dDX + 1, dDY + 1, dX + 1, m);
    CHECK(cudaDeviceSynchronize());
    const std::vector<T> gy = fetch(dY + 1, m), gdx = fetch(dDX + 1, m);
    const size_t bits = bit_diffs(gy, std::vector<T>(y1.begin() + 1, y1.end())) +
                        bit_diffs(gdx, std::vector<T>(dx1.begin() + 1, dx1.end()));
    if (bits) {
      std::printf("FAIL %s variant 1u (unaligned view) %lldx%lld: %zu elements not as aligned\n",
                  tname, (long long)rows, (long long)cols, bits);
      ++g_failures;
    }
  }
  cudaFree(dX), cudaFree(dDY), cudaFree(dY), cudaFree(dDX);
}

// Deterministic inputs in [-4, 4) from a hash of the index, written on the device.
template <typename T>
__global__ void fill_spread(T* x, int64_t n, uint32_t salt) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 0x9E3779B1u ^ salt;
    h ^= h >> 16, h *= 0x85EBCA6Bu, h ^= h >> 13, h *= 0xC2B2AE35u, h ^= h >> 16;
    x[i] = from_f<T>(float(h >> 8) * (8.0f / 16777216.0f) - 4.0f);
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
void bench(const char* tname, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  T *x = dalloc<T>(n), *dy = dalloc<T>(n), *y = dalloc<T>(n), *dx = dalloc<T>(n);
  fill_spread<T><<<blocks_for(n), kBlock, 0, g_stream>>>(x, n, 0x1234u);
  fill_spread<T><<<blocks_for(n), kBlock, 0, g_stream>>>(dy, n, 0xabcdu);
  CHECK(cudaStreamSynchronize(g_stream));
  const double fb = 2.0 * n * sizeof(T), bb = 3.0 * n * sizeof(T);
  for (int v = 1; v <= kVariants; ++v) {
    const float f = time_ms([&] { forward<T>(v, y, x, n); });
    const float b = time_ms([&] { backward<T>(v, dx, dy, x, n); });
    std::printf(
        "%-4s %6lldx%-5lld variant %d: forward %9.2f us %6.0f GB/s | backward %9.2f us %6.0f "
        "GB/s\n",
        tname, (long long)rows, (long long)cols, v, f * 1e3, fb / (f * 1e6), b * 1e3,
        bb / (b * 1e6));
  }
  cudaFree(x), cudaFree(dy), cudaFree(y), cudaFree(dx);
}

}  // namespace lab

int main(int argc, char** argv) {
  using namespace lab;
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  g_sms = prop.multiProcessorCount;
  std::printf("%s, %d SMs\n", prop.name, g_sms);
  for (int64_t rows : {1, 7, 33, 4097})
    for (int64_t cols : {3072, 1000}) {
      validate<float>("f32", rows, cols, 1e-5);
      validate<bf16>("bf16", rows, cols, 1e-2);
    }
  validate<float>("f32", 1, 1, 1e-5);
  validate<bf16>("bf16", 1, 3, 1e-2);
  std::printf("validation: %s\n", g_failures ? "FAILED" : "all variants match the reference");
  const int64_t shapes[][2] = {{64 * 1024, 3072}, {8 * 1024, 3072}, {4097, 1000}};
  for (const auto& s : shapes) {
    bench<float>("f32", s[0], s[1]);
    bench<bf16>("bf16", s[0], s[1]);
  }
  if (argc > 2) {
    bench<float>("f32", std::atoll(argv[1]), std::atoll(argv[2]));
    bench<bf16>("bf16", std::atoll(argv[1]), std::atoll(argv[2]));
  }
  return g_failures ? 1 : 0;
}
