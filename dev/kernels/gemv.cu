// Skinny products for decoding, the kernel lab (llm.c dev/cuda style). Standalone:
//   nvcc -O3 -std=c++20 -gencode arch=compute_90a,code=sm_90a dev/kernels/gemv.cu -lcublasLt \
//     -o /tmp/gemv
// y (m, n) = x (m, k) @ W^T with W (n, k) row-major bf16 (a Linear's [out, in] weight), f32
// math, m = 1 (batch-1 decoding). Bound by reading W once: the time to beat is bytes(W) / the
// ~3 TB/s the H100 moves. Shapes: the Llama-3.1-8B projections and head.
// Variants:
//   0: cuBLASLt (what cuda::gemm does for any shape)
//   1: one warp per output column, 16-byte loads, 4 in flight per lane, 4 warps per block
//   2: as 1 with 8 loads in flight per lane
//   3: as 1 with 8 warps per block
//   4: two warps per output column (each half the row), partial sums through shared memory
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
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

__device__ __forceinline__ float dot8(const uint4& a, const uint4& b) {
  const bf16* pa = reinterpret_cast<const bf16*>(&a);
  const bf16* pb = reinterpret_cast<const bf16*>(&b);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 8; ++i) s += __bfloat162float(pa[i]) * __bfloat162float(pb[i]);
  return s;
}

// Variants 1-3: one warp per column, kUnroll 16-byte loads in flight per lane.
template <int kWarps, int kUnroll>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_warp(bf16* y, const bf16* __restrict__ x, const bf16* __restrict__ w, int n, int k) {
  const int lane = threadIdx.x % 32;
  const int col = blockIdx.x * kWarps + threadIdx.x / 32;
  if (col >= n) return;
  const uint4* wp = reinterpret_cast<const uint4*>(w + static_cast<size_t>(col) * k);
  const uint4* xp = reinterpret_cast<const uint4*>(x);
  const int packs = k / 8;
  float acc = 0.f;
  int p = lane;
  for (; p + 32 * (kUnroll - 1) < packs; p += 32 * kUnroll) {
    uint4 wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) wv[u] = __ldcs(wp + p + 32 * u);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) acc += dot8(wv[u], __ldg(xp + p + 32 * u));
  }
  for (; p < packs; p += 32) acc += dot8(__ldcs(wp + p), __ldg(xp + p));
  for (int o = 16; o > 0; o /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) y[col] = __float2bfloat16(acc);
}

// Variant 4: two warps per column, each summing half the row.
__global__ void __launch_bounds__(256)
    gemv_split(bf16* y, const bf16* __restrict__ x, const bf16* __restrict__ w, int n, int k) {
  constexpr int kUnroll = 4;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;  // 8 warps: 4 columns x 2 halves
  const int col = blockIdx.x * 4 + warp / 2, half = warp % 2;
  __shared__ float partial[8];
  float acc = 0.f;
  if (col < n) {
    const int packs = k / 8, per = packs / 2, begin = half * per, end = half ? packs : per;
    const uint4* wp = reinterpret_cast<const uint4*>(w + static_cast<size_t>(col) * k);
    const uint4* xp = reinterpret_cast<const uint4*>(x);
    int p = begin + lane;
    for (; p + 32 * (kUnroll - 1) < end; p += 32 * kUnroll) {
      uint4 wv[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) wv[u] = __ldcs(wp + p + 32 * u);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) acc += dot8(wv[u], __ldg(xp + p + 32 * u));
    }
    for (; p < end; p += 32) acc += dot8(__ldcs(wp + p), __ldg(xp + p));
  }
  for (int o = 16; o > 0; o /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) partial[warp] = acc;
  __syncthreads();
  if (threadIdx.x < 4 && blockIdx.x * 4 + threadIdx.x < n)
    y[blockIdx.x * 4 + threadIdx.x] =
        __float2bfloat16(partial[2 * threadIdx.x] + partial[2 * threadIdx.x + 1]);
}

struct Lt {
  cublasLtHandle_t h;
  void* ws;
  Lt() {
    cublasLtCreate(&h);
    CHECK(cudaMalloc(&ws, 32 << 20));
  }
};

void cublas_gemv(Lt& lt, bf16* y, const bf16* x, const bf16* w, int n, int k) {
  // Column-major: y^T (n, 1) = W (n, k) [as col-major (k, n) transposed] x^T (k, 1).
  cublasLtMatmulDesc_t op;
  cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  cublasOperation_t t = CUBLAS_OP_T, nt = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t);
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &nt, sizeof nt);
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, k, n, k);
  cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, k, 1, k);
  cublasLtMatrixLayoutCreate(&c, CUDA_R_16BF, n, 1, n);
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulPreferenceCreate(&pref);
  size_t ws = 32 << 20;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof ws);
  cublasLtMatmulHeuristicResult_t r{};
  int found = 0;
  cublasLtMatmulAlgoGetHeuristic(lt.h, op, a, b, c, c, pref, 1, &r, &found);
  const float one = 1.f, zero = 0.f;
  cublasLtMatmul(lt.h, op, &one, w, a, x, b, &zero, y, c, y, c, &r.algo, lt.ws, ws, 0);
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(a);
  cublasLtMatrixLayoutDestroy(b);
  cublasLtMatrixLayoutDestroy(c);
  cublasLtMatmulDescDestroy(op);
}

void run_variant(int v, Lt& lt, bf16* y, const bf16* x, const bf16* w, int n, int k) {
  switch (v) {
    case 0:
      return cublas_gemv(lt, y, x, w, n, k);
    case 1:
      return gemv_warp<4, 4><<<(n + 3) / 4, 128>>>(y, x, w, n, k);
    case 2:
      return gemv_warp<4, 8><<<(n + 3) / 4, 128>>>(y, x, w, n, k);
    case 3:
      return gemv_warp<8, 4><<<(n + 7) / 8, 256>>>(y, x, w, n, k);
    case 4:
      return gemv_split<<<(n + 3) / 4, 256>>>(y, x, w, n, k);
  }
}

int main() {
  const int shapes[][2] = {
      {4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}, {128256, 4096}};
  // Several copies of W so that timing reads HBM, not L2 (50 MB).
  constexpr int kCopies = 8;
  Lt lt;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::printf("%-16s %8s %10s %10s %10s %10s %10s\n", "n x k", "MB", "v0 GB/s", "v1", "v2", "v3",
              "v4");
  double total_bytes = 0, total_time[5] = {0, 0, 0, 0, 0};
  for (const auto& s : shapes) {
    const int n = s[0], k = s[1];
    const size_t wn = static_cast<size_t>(n) * k;
    std::vector<bf16> hw(wn), hx(k);
    std::vector<float> fw(wn), fx(k);
    for (size_t i = 0; i < wn; ++i)
      fw[i] = __bfloat162float(hw[i] = __float2bfloat16(nd(rng) * 0.02f));
    for (int i = 0; i < k; ++i) fx[i] = __bfloat162float(hx[i] = __float2bfloat16(nd(rng)));
    std::vector<double> ref(n);
    for (int c = 0; c < n; ++c) {
      double a = 0;
      for (int j = 0; j < k; ++j)
        a += static_cast<double>(fw[static_cast<size_t>(c) * k + j]) * fx[j];
      ref[c] = a;
    }
    bf16 *w, *x, *y;
    const int copies = wn * 2 > (size_t{512} << 20) ? 2 : kCopies;
    CHECK(cudaMalloc(&w, wn * 2 * copies));
    CHECK(cudaMalloc(&x, k * 2));
    CHECK(cudaMalloc(&y, n * 2));
    for (int c = 0; c < copies; ++c)
      CHECK(cudaMemcpy(w + c * wn, hw.data(), wn * 2, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(x, hx.data(), k * 2, cudaMemcpyHostToDevice));
    std::printf("%6d x %-7d %8.1f", n, k, wn * 2 / 1e6);
    for (int v = 0; v < 5; ++v) {
      run_variant(v, lt, y, x, w, n, k);
      CHECK(cudaDeviceSynchronize());
      std::vector<bf16> hy(n);
      CHECK(cudaMemcpy(hy.data(), y, n * 2, cudaMemcpyDeviceToHost));
      double err = 0, scale = 0;
      for (int c = 0; c < n; ++c) {
        err = std::max(err, std::abs(__bfloat162float(hy[c]) - ref[c]));
        scale = std::max(scale, std::abs(ref[c]));
      }
      if (err / scale > 2e-2) std::printf("\nvariant %d WRONG: rel err %.3g\n", v, err / scale);
      cudaEvent_t a, b;
      cudaEventCreate(&a);
      cudaEventCreate(&b);
      const int reps = 40;
      cudaEventRecord(a);
      for (int r = 0; r < reps; ++r) run_variant(v, lt, y, x, w + (r % copies) * wn, n, k);
      cudaEventRecord(b);
      CHECK(cudaEventSynchronize(b));
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      const double t = ms / 1e3 / reps;
      total_time[v] += t;
      std::printf(" %10.0f", wn * 2 / t / 1e9);
    }
    total_bytes += wn * 2;
    std::printf("\n");
    cudaFree(w);
    cudaFree(x);
    cudaFree(y);
  }
  std::printf("%-25s", "all five, once each");
  for (int v = 0; v < 5; ++v) std::printf(" %10.0f", total_bytes / total_time[v] / 1e9);
  std::printf("  GB/s\n");
  return 0;
}
