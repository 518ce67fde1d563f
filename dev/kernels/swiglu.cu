// SwiGLU forward and backward, the kernel lab (llm.c's dev/cuda manner):
//   forward   h = silu(g) * u = g * sigmoid(g) * u
//   backward  dgate = dh * u * s * (1 + g * (1 - s)),  dup = dh * g * s   with s = sigmoid(g)
// in f32 and bf16 storage (f32 math). A CPU reference, numbered variants, validation at awkward
// sizes, and a timing loop printing each variant's time and bandwidth (bytes read + written).
//
//   nvcc -O3 -std=c++20 -gencode arch=compute_90a,code=sm_90a dev/kernels/swiglu.cu -o swiglu
//
// Variants:
//   1: scalar grid-stride loop, one element per iteration.
//   2: 128-bit loads and stores (4 f32 or 8 bf16 per access), grid-stride over packs, scalar tail.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#define CHECK(stmt)                                                                            \
  do {                                                                                         \
    cudaError_t e_ = (stmt);                                                                   \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s failed: %s (%s:%d)\n", #stmt, cudaGetErrorString(e_), __FILE__, \
                   __LINE__);                                                                  \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

using bf16 = __nv_bfloat16;

__host__ __device__ inline float to_f(float x) {
  return x;
}
__device__ inline float to_f(bf16 x) {
  return __bfloat162float(x);
}
template <typename T>
__device__ inline T from_f(float x);
template <>
__device__ inline float from_f<float>(float x) {
  return x;
}
template <>
__device__ inline bf16 from_f<bf16>(float x) {
  return __float2bfloat16(x);
}

__device__ inline float fwd(float g, float u) {
  return g / (1.0f + expf(-g)) * u;
}
__device__ inline void bwd(float d, float g, float u, float& dg, float& du) {
  const float s = 1.0f / (1.0f + expf(-g));
  dg = d * u * s * (1.0f + g * (1.0f - s));
  du = d * g * s;
}

template <typename T>
struct alignas(16) Pack {
  static constexpr int k = 16 / sizeof(T);
  T v[k];
};

// ---- variant 1: scalar grid-stride ----
template <typename T>
__global__ void swiglu_forward1(T* h, const T* g, const T* u, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    h[i] = from_f<T>(fwd(to_f(g[i]), to_f(u[i])));
}
template <typename T>
__global__ void swiglu_backward1(T* dg, T* du, const T* dh, const T* g, const T* u, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float a, b;
    bwd(to_f(dh[i]), to_f(g[i]), to_f(u[i]), a, b);
    dg[i] = from_f<T>(a);
    du[i] = from_f<T>(b);
  }
}

// ---- variant 2: 128-bit packs, scalar tail ----
template <typename T>
__global__ void swiglu_forward2(T* h, const T* g, const T* u, int64_t n) {
  using P = Pack<T>;
  const int64_t packs = n / P::k, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  for (int64_t p = tid; p < packs; p += stride) {
    const P gp = reinterpret_cast<const P*>(g)[p], up = reinterpret_cast<const P*>(u)[p];
    P hp;
#pragma unroll
    for (int j = 0; j < P::k; ++j) hp.v[j] = from_f<T>(fwd(to_f(gp.v[j]), to_f(up.v[j])));
    reinterpret_cast<P*>(h)[p] = hp;
  }
  const int64_t i = packs * P::k + tid;
  if (i < n) h[i] = from_f<T>(fwd(to_f(g[i]), to_f(u[i])));
}
template <typename T>
__global__ void swiglu_backward2(T* dg, T* du, const T* dh, const T* g, const T* u, int64_t n) {
  using P = Pack<T>;
  const int64_t packs = n / P::k, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  for (int64_t p = tid; p < packs; p += stride) {
    const P dp = reinterpret_cast<const P*>(dh)[p], gp = reinterpret_cast<const P*>(g)[p],
            up = reinterpret_cast<const P*>(u)[p];
    P a, b;
#pragma unroll
    for (int j = 0; j < P::k; ++j) {
      float x, y;
      bwd(to_f(dp.v[j]), to_f(gp.v[j]), to_f(up.v[j]), x, y);
      a.v[j] = from_f<T>(x);
      b.v[j] = from_f<T>(y);
    }
    reinterpret_cast<P*>(dg)[p] = a;
    reinterpret_cast<P*>(du)[p] = b;
  }
  const int64_t i = packs * P::k + tid;
  if (i < n) {
    float x, y;
    bwd(to_f(dh[i]), to_f(g[i]), to_f(u[i]), x, y);
    dg[i] = from_f<T>(x);
    du[i] = from_f<T>(y);
  }
}

constexpr int kBlock = 256;
int g_sms = 132;

template <typename T>
void launch_forward(int variant, T* h, const T* g, const T* u, int64_t n) {
  const int64_t work = variant == 1 ? n : std::max<int64_t>(n / Pack<T>::k, 1);
  const int blocks = int(std::min<int64_t>((work + kBlock - 1) / kBlock, int64_t(g_sms) * 32));
  if (variant == 1)
    swiglu_forward1<<<blocks, kBlock>>>(h, g, u, n);
  else
    swiglu_forward2<<<blocks, kBlock>>>(h, g, u, n);
  CHECK(cudaGetLastError());
}
template <typename T>
void launch_backward(int variant, T* dg, T* du, const T* dh, const T* g, const T* u, int64_t n) {
  const int64_t work = variant == 1 ? n : std::max<int64_t>(n / Pack<T>::k, 1);
  const int blocks = int(std::min<int64_t>((work + kBlock - 1) / kBlock, int64_t(g_sms) * 32));
  if (variant == 1)
    swiglu_backward1<<<blocks, kBlock>>>(dg, du, dh, g, u, n);
  else
    swiglu_backward2<<<blocks, kBlock>>>(dg, du, dh, g, u, n);
  CHECK(cudaGetLastError());
}

// ---- host side ----
float host_round(float x, bool is_bf16) {
  if (!is_bf16) return x;
  return __bfloat162float(__float2bfloat16(x));
}

template <typename T>
std::vector<T> to_storage(const std::vector<float>& x) {
  std::vector<T> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = T(x[i]);
  return out;
}
template <typename T>
std::vector<float> from_storage(const std::vector<T>& x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = float(x[i]);
  return out;
}

template <typename T>
T* upload(const std::vector<float>& x) {
  T* d;
  CHECK(cudaMalloc(&d, x.size() * sizeof(T) + 16));
  const auto s = to_storage<T>(x);
  CHECK(cudaMemcpy(d, s.data(), s.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}
template <typename T>
std::vector<float> download(const T* d, int64_t n) {
  std::vector<T> s(n);
  CHECK(cudaMemcpy(s.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return from_storage(s);
}

double max_rel(const std::vector<float>& got, const std::vector<double>& ref) {
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::abs(got[i] - ref[i]) / (std::abs(ref[i]) + 1.0));
  return worst;
}

template <typename T>
bool validate(const char* name, int64_t n, double tol) {
  const bool is_bf16 = sizeof(T) == 2;
  std::mt19937 rng{static_cast<unsigned>(n)};
  std::normal_distribution<float> nd(0.f, 2.f);
  std::vector<float> g(n), u(n), d(n);
  for (int64_t i = 0; i < n; ++i) {
    g[i] = host_round(nd(rng), is_bf16);
    u[i] = host_round(nd(rng), is_bf16);
    d[i] = host_round(nd(rng), is_bf16);
  }
  std::vector<double> rh(n), rdg(n), rdu(n);
  for (int64_t i = 0; i < n; ++i) {  // CPU reference in double
    const double gg = g[i], uu = u[i], dd = d[i], s = 1.0 / (1.0 + std::exp(-gg));
    rh[i] = gg * s * uu;
    rdg[i] = dd * uu * s * (1.0 + gg * (1.0 - s));
    rdu[i] = dd * gg * s;
  }
  T *dG = upload<T>(g), *dU = upload<T>(u), *dD = upload<T>(d);
  T *h, *dg, *du;
  CHECK(cudaMalloc(&h, n * sizeof(T)));
  CHECK(cudaMalloc(&dg, n * sizeof(T)));
  CHECK(cudaMalloc(&du, n * sizeof(T)));
  bool ok = true;
  for (int v = 1; v <= 2; ++v) {
    CHECK(cudaMemset(h, 0xff, n * sizeof(T)));
    CHECK(cudaMemset(dg, 0xff, n * sizeof(T)));
    CHECK(cudaMemset(du, 0xff, n * sizeof(T)));
    launch_forward<T>(v, h, dG, dU, n);
    launch_backward<T>(v, dg, du, dD, dG, dU, n);
    CHECK(cudaDeviceSynchronize());
    const double e1 = max_rel(download(h, n), rh), e2 = max_rel(download(dg, n), rdg),
                 e3 = max_rel(download(du, n), rdu);
    const bool pass = e1 <= tol && e2 <= tol && e3 <= tol;
    if (!pass) {
      std::printf("FAIL %s variant %d n=%lld: h %.3g dgate %.3g dup %.3g\n", name, v, (long long)n,
                  e1, e2, e3);
    }
    ok = ok && pass;
  }
  cudaFree(dG), cudaFree(dU), cudaFree(dD), cudaFree(h), cudaFree(dg), cudaFree(du);
  return ok;
}

template <typename F>
float time_ms(F f, int reps = 50) {
  for (int i = 0; i < 5; ++i) f();
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  CHECK(cudaEventRecord(a));
  for (int i = 0; i < reps; ++i) f();
  CHECK(cudaEventRecord(b));
  CHECK(cudaEventSynchronize(b));
  float ms;
  CHECK(cudaEventElapsedTime(&ms, a, b));
  return ms / reps;
}

template <typename T>
void bench(const char* name, int64_t n) {
  T *g, *u, *d, *h, *dg, *du;
  for (T** p : {&g, &u, &d, &h, &dg, &du}) {
    CHECK(cudaMalloc(p, n * sizeof(T)));
    CHECK(cudaMemset(*p, 0x3c, n * sizeof(T)));  // finite values in f32 and bf16
  }
  for (int v = 1; v <= 2; ++v) {
    const float f = time_ms([&] { launch_forward<T>(v, h, g, u, n); });
    const float b = time_ms([&] { launch_backward<T>(v, dg, du, d, g, u, n); });
    const double fb = 3.0 * n * sizeof(T), bb = 5.0 * n * sizeof(T);
    std::printf(
        "%-4s n=%lld variant %d: forward %8.1f us %7.0f GB/s | backward %8.1f us %7.0f GB/s\n",
        name, (long long)n, v, f * 1e3, fb / (f * 1e6), b * 1e3, bb / (b * 1e6));
  }
  for (T* p : {g, u, d, h, dg, du}) cudaFree(p);
}

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  g_sms = prop.multiProcessorCount;
  std::printf("%s, %d SMs\n", prop.name, g_sms);
  bool ok = true;
  for (int64_t n :
       {int64_t(1), int64_t(7), int64_t(33), int64_t(257), int64_t(4097), int64_t((1 << 20) + 3)}) {
    ok = validate<float>("f32", n, 1e-5) && ok;
    ok = validate<bf16>("bf16", n, 1e-2) && ok;
  }
  std::printf("validation: %s\n", ok ? "all variants match the reference" : "FAILED");
  const int64_t big = int64_t(1) << 28;  // 256 Mi elements: 1 GiB per f32 tensor
  bench<float>("f32", big);
  bench<bf16>("bf16", big);
  return ok ? 0 : 1;
}
