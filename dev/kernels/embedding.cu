// Lab: embedding lookup and its scatter-add backward (bf16 table, i64 ids).
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 --expt-relaxed-constexpr \
//        -I include -I src dev/kernels/embedding.cu -o embedding_lab
// The engine kernels (src/backend/cuda/embedding.cu) are compiled in. Variants:
//   forward 1: scalar copies (V = 1);  forward 2: 16-byte packs (the engine's choice).
//   backward 1: f32 atomicAdd into an f32 table (non-deterministic, for comparison);
//   backward 2: the engine's per-id ownership (deterministic, no atomics).
// Checked against a CPU reference; timed (median of 20, events) in GB/s of the rows read and
// written (forward: 2 N C bytes-per-element; backward: the same plus the table rows touched).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../../src/backend/cuda/embedding.cu"

using namespace tune::cuda;

#define CK(x)                                                                        \
  do {                                                                               \
    cudaError_t e_ = (x);                                                            \
    if (e_ != cudaSuccess) {                                                         \
      std::printf("CUDA %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

__global__ void backward_atomic(float* dtable, const float* dout, const int64_t* ids, int64_t c) {
  const int64_t r = blockIdx.x;
  float* dst = dtable + ids[r] * c;
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) atomicAdd(dst + j, dout[r * c + j]);
}

template <typename F>
double time_ms(F&& f, int reps = 20) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int it = 0; it < reps + 3; ++it) {
    CK(cudaEventRecord(a, cudaStreamPerThread));
    f();
    CK(cudaEventRecord(b, cudaStreamPerThread));
    CK(cudaEventSynchronize(b));
    float t;
    CK(cudaEventElapsedTime(&t, a, b));
    if (it >= 3) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int main() {
  const int64_t vocab = 128256, c = 4096;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<__nv_bfloat16> table(vocab * c);
  for (auto& x : table) x = __float2bfloat16(nd(rng));
  __nv_bfloat16* dtab;
  CK(cudaMalloc(&dtab, table.size() * 2));
  CK(cudaMemcpy(dtab, table.data(), table.size() * 2, cudaMemcpyHostToDevice));
  std::printf("%-22s %-10s %10s %10s %s\n", "rows", "variant", "us", "GB/s", "check");
  for (int64_t n : {int64_t{1}, int64_t{64}, int64_t{8192}, int64_t{16384}}) {
    std::vector<int64_t> ids(n);
    for (auto& x : ids) x = rng() % (n < 64 ? vocab : 3000);  // repeats in the big batches
    int64_t* dids;
    __nv_bfloat16* dout;
    CK(cudaMalloc(&dids, n * 8));
    CK(cudaMalloc(&dout, n * c * 2));
    CK(cudaMemcpy(dids, ids.data(), n * 8, cudaMemcpyHostToDevice));
    const double fbytes = 2.0 * n * c * 2;
    for (int v = 1; v <= 2; ++v) {
      auto call = [&] {
        if (v == 1) {
          embedding_forward_rows<__nv_bfloat16, int64_t, 1>
              <<<n, 256, 0, cudaStreamPerThread>>>(dout, dids, dtab, c, vocab, nullptr);
        } else {
          embedding_forward_rows<__nv_bfloat16, int64_t, 8>
              <<<n, 256, 0, cudaStreamPerThread>>>(dout, dids, dtab, c, vocab, nullptr);
        }
      };
      CK(cudaMemset(dout, 0xff, n * c * 2));
      call();
      CK(cudaDeviceSynchronize());
      std::vector<__nv_bfloat16> got(n * c);
      CK(cudaMemcpy(got.data(), dout, n * c * 2, cudaMemcpyDeviceToHost));
      bool ok = true;
      for (int64_t r = 0; r < n && ok; ++r)
        for (int64_t j = 0; j < c; ++j)
          if (__bfloat162float(got[r * c + j]) != __bfloat162float(table[ids[r] * c + j]))
            ok = false;
      const double ms = time_ms(call);
      std::printf("n=%-20ld fwd %-6d %10.1f %10.0f %s\n", (long)n, v, ms * 1e3,
                  fbytes / (ms * 1e-3) / 1e9, ok ? "exact" : "FAIL");
    }
    // Backward, f32: atomics vs ownership, and the ownership result against a CPU sum.
    std::vector<float> hdout(n * c);
    for (auto& x : hdout) x = nd(rng);
    float *ddout, *dgrad;
    const int64_t small_vocab = 3000 > vocab ? vocab : (n < 64 ? vocab : 3000);
    CK(cudaMalloc(&ddout, n * c * 4));
    CK(cudaMalloc(&dgrad, small_vocab * c * 4));
    CK(cudaMemcpy(ddout, hdout.data(), n * c * 4, cudaMemcpyHostToDevice));
    std::vector<double> ref(small_vocab * c, 0.0);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < c; ++j) ref[ids[r] * c + j] += hdout[r * c + j];
    const double bbytes = 4.0 * n * c + 8.0 * c * std::min<int64_t>(n, small_vocab);
    for (int v = 1; v <= 2; ++v) {
      auto call = [&] {
        if (v == 1) {
          backward_atomic<<<n, 256, 0, cudaStreamPerThread>>>(dgrad, ddout, dids, c);
        } else {
          embedding_backward_owned<float, int64_t><<<n, kThreads, c * 4, cudaStreamPerThread>>>(
              dgrad, ddout, dids, n, c, small_vocab, nullptr);
        }
      };
      if (v == 2) {
        CK(cudaFuncSetAttribute(embedding_backward_owned<float, int64_t>,
                                cudaFuncAttributeMaxDynamicSharedMemorySize, c * 4));
      }
      CK(cudaMemset(dgrad, 0, small_vocab * c * 4));
      call();
      CK(cudaDeviceSynchronize());
      std::vector<float> got(small_vocab * c);
      CK(cudaMemcpy(got.data(), dgrad, got.size() * 4, cudaMemcpyDeviceToHost));
      double err = 0;
      for (size_t i = 0; i < got.size(); ++i) err = std::max(err, std::abs(got[i] - ref[i]));
      const double ms = time_ms([&] {
        CK(cudaMemsetAsync(dgrad, 0, small_vocab * c * 4, cudaStreamPerThread));
        call();
      });
      std::printf("n=%-20ld bwd %-6d %10.1f %10.0f max_abs_err %.1e%s\n", (long)n, v, ms * 1e3,
                  bbytes / (ms * 1e-3) / 1e9, err, err < 1e-3 ? "" : " FAIL");
    }
    cudaFree(dids), cudaFree(dout), cudaFree(ddout), cudaFree(dgrad);
  }
  return 0;
}
