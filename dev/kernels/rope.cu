// Lab: rotary position embedding, in place on [B, T, H, D] bf16 (HF rotate_half).
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 --expt-relaxed-constexpr \
//        -I include -I src dev/kernels/rope.cu -o rope_lab
// The engine kernel (src/backend/cuda/rope.cu) is compiled in; variants are its pack width:
//   1: V = 1 (scalar);  2: V = 4 (8 bytes);  3: V = 8 (16 bytes, the engine's choice for bf16).
// Checked against a CPU reference (forward then backward returns x); timed (median of 20,
// events) in GB/s of x read + written (the cos/sin rows are shared by all heads of a row).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../../src/backend/cuda/rope.cu"

using namespace tune::cuda;

#define CK(x)                                                                        \
  do {                                                                               \
    cudaError_t e_ = (x);                                                            \
    if (e_ != cudaSuccess) {                                                         \
      std::printf("CUDA %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

int main() {
  struct Cfg {
    int64_t b, t, h, d;
  };
  std::printf("%-28s %8s %10s %10s %s\n", "shape", "variant", "us", "GB/s", "check");
  for (const Cfg& c : {Cfg{1, 1, 32, 128}, Cfg{64, 1, 32, 128}, Cfg{4, 4096, 32, 128},
                       Cfg{1, 8192, 8, 128}, Cfg{2, 4096, 16, 256}}) {
    const int64_t half = c.d / 2, p = 8192, n = c.b * c.t * c.h * c.d;
    std::vector<__nv_bfloat16> cs(p * half), sn(p * half), x(n);
    for (int64_t i = 0; i < p; ++i)
      for (int64_t e = 0; e < half; ++e) {
        const double f = std::pow(500000.0, -2.0 * e / c.d);
        cs[i * half + e] = __float2bfloat16(std::cos(i * f));
        sn[i * half + e] = __float2bfloat16(std::sin(i * f));
      }
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    for (auto& v : x) v = __float2bfloat16(nd(rng));
    std::vector<int64_t> pos(c.b * c.t);
    for (auto& v : pos) v = rng() % p;
    __nv_bfloat16 *dx, *dc, *ds;
    int64_t* dp;
    CK(cudaMalloc(&dx, n * 2));
    CK(cudaMalloc(&dc, cs.size() * 2));
    CK(cudaMalloc(&ds, sn.size() * 2));
    CK(cudaMalloc(&dp, pos.size() * 8));
    CK(cudaMemcpy(dc, cs.data(), cs.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(ds, sn.data(), sn.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dp, pos.data(), pos.size() * 8, cudaMemcpyHostToDevice));
    char name[64];
    std::snprintf(name, sizeof name, "B=%ld T=%ld H=%ld D=%ld", (long)c.b, (long)c.t, (long)c.h,
                  (long)c.d);
    for (int v = 1; v <= 3; ++v) {
      auto call = [&](float sign) {
        const int hh = static_cast<int>(c.h), hf = static_cast<int>(half);
        if (v == 1)
          launch<__nv_bfloat16, int64_t, 1>(dx, dc, ds, dp, c.b * c.t, hh, hf, p, sign, nullptr);
        if (v == 2)
          launch<__nv_bfloat16, int64_t, 4>(dx, dc, ds, dp, c.b * c.t, hh, hf, p, sign, nullptr);
        if (v == 3)
          launch<__nv_bfloat16, int64_t, 8>(dx, dc, ds, dp, c.b * c.t, hh, hf, p, sign, nullptr);
      };
      CK(cudaMemcpy(dx, x.data(), n * 2, cudaMemcpyHostToDevice));
      call(1.f);
      CK(cudaDeviceSynchronize());
      std::vector<__nv_bfloat16> got(n);
      CK(cudaMemcpy(got.data(), dx, n * 2, cudaMemcpyDeviceToHost));
      double num = 0, den = 0;
      for (int64_t r = 0; r < c.b * c.t; ++r)
        for (int64_t hd = 0; hd < c.h; ++hd)
          for (int64_t e = 0; e < half; ++e) {
            const int64_t i1 = (r * c.h + hd) * c.d + e, i2 = i1 + half;
            const double co = __bfloat162float(cs[pos[r] * half + e]),
                         si = __bfloat162float(sn[pos[r] * half + e]);
            const double x1 = __bfloat162float(x[i1]), x2 = __bfloat162float(x[i2]);
            const double r1 = x1 * co - x2 * si, r2 = x2 * co + x1 * si;
            const double g1 = __bfloat162float(got[i1]), g2 = __bfloat162float(got[i2]);
            num += (g1 - r1) * (g1 - r1) + (g2 - r2) * (g2 - r2);
            den += r1 * r1 + r2 * r2;
          }
      const double rel = std::sqrt(num / den);
      cudaEvent_t a, b;
      CK(cudaEventCreate(&a));
      CK(cudaEventCreate(&b));
      std::vector<float> ms;
      for (int it = 0; it < 23; ++it) {
        CK(cudaEventRecord(a, cudaStreamPerThread));
        call(it % 2 ? -1.f : 1.f);
        CK(cudaEventRecord(b, cudaStreamPerThread));
        CK(cudaEventSynchronize(b));
        float t;
        CK(cudaEventElapsedTime(&t, a, b));
        if (it >= 3) ms.push_back(t);
      }
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      std::printf("%-28s %8d %10.1f %10.0f rel_err %.1e%s\n", name, v, med * 1e3,
                  2.0 * n * 2 / (med * 1e-3) / 1e9, rel, rel < 1e-2 ? "" : " FAIL");
    }
    cudaFree(dx), cudaFree(dc), cudaFree(ds), cudaFree(dp);
  }
  return 0;
}
