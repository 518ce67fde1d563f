// Lab: paged attention decode (one query per sequence), flash-decoding style.
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 --expt-relaxed-constexpr \
//        -I include -I src dev/kernels/attention_decode.cu -o attention_decode_lab
// The engine kernel (src/backend/cuda/attention_decode.cu) is compiled into this file, so the
// variants are the engine's launch with different split counts:
//   1: one block per (sequence, kv head, head chunk), no split;
//   2: the engine's choice (grid about 4x the SMs, >= 256 keys per split) + merge kernel;
//   3: twice the engine's choice;
// then, at the engine's split count, the kernel's template knobs: heads per block (HPB) and keys
// each lane group loads per trip (KPT):
//   4: KPT 1;  5: KPT 2;  6: KPT 4;  7: HPB / 2 with KPT 4;  8: HPB / 2 with KPT 2.
// History (H100, GB/s of K/V read; configs as in main()):
//   per-key rescale, 2 keys per trip, HPB <= 8:   1x32k 1177, 4x8k 777, 64x1k 1339, 32x4k 1162,
//                                                 MHA 2745, MQA D256 292
//   one rescale per trip, KPT 4 (HPB 8: KPT 2):   871, 944, 1237, 1469, 2219, 311
//   KPT 2 (v5):                                   1336, 903, 1533, 1348, 2380, 306
//   KPT 1 (v4):                                   1182, 775, 1333, 1159, 2720, 239
//   HPB 4 instead of 8, KPT 2 (MQA v8):           374
// The engine now takes HPB <= 4 with KPT 2, and KPT 1 when HPB is 1 (MHA).
// Every variant is checked against a CPU reference in double; then timed (median of 50, events),
// reporting the K/V bytes read per call over the time (the floor: reading the cache once).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../../src/backend/cuda/attention_decode.cu"

using namespace tune::cuda;

#define CK(x)                                                                        \
  do {                                                                               \
    cudaError_t e_ = (x);                                                            \
    if (e_ != cudaSuccess) {                                                         \
      std::printf("CUDA %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

struct Config {
  int64_t n, hq, hkv, d, page, len, window;
};

// The engine's launch with explicit heads per block and keys per trip (bf16, LANES by d).
template <int H, int KPT>
void launch_knobs(void* out, const void* q, const void* k, const void* v, const PagedKeys& keys,
                  int64_t units, int64_t q_heads, int64_t kv_heads, int64_t d, float scale,
                  int splits, float* ws) {
  float* part_o = ws;
  float* part_lse = splits > 1 ? ws + units * q_heads * splits * d : nullptr;
  const dim3 grid(units, q_heads / H, splits);
  const size_t smem = static_cast<size_t>(kWarps * H * (d + 2)) * sizeof(float);
  const float sl = scale * kLog2e;
  using T = __nv_bfloat16;
  auto go = [&](auto kernel) {
    kernel<<<grid, kWarps * 32, smem, cudaStreamPerThread>>>(
        static_cast<T*>(out), part_o, part_lse, static_cast<const T*>(q), static_cast<const T*>(k),
        static_cast<const T*>(v), keys, (int)q_heads, (int)kv_heads, (int)d, sl, splits);
  };
  if (d <= 64) {
    go(attention_split_keys<T, 8, H, KPT, PagedKeys>);
  } else if (d <= 128) {
    go(attention_split_keys<T, 16, H, KPT, PagedKeys>);
  } else {
    go(attention_split_keys<T, 32, H, KPT, PagedKeys>);
  }
  if (splits > 1) {
    merge_splits<T><<<units * q_heads, 128, 0, cudaStreamPerThread>>>(static_cast<T*>(out), part_o,
                                                                      part_lse, (int)d, splits);
  }
}

template <int KPT>
void launch_hpb(int hpb, void* out, const void* q, const void* k, const void* v,
                const PagedKeys& keys, int64_t units, int64_t q_heads, int64_t kv_heads, int64_t d,
                float scale, int splits, float* ws) {
  switch (hpb) {
    case 8:
      launch_knobs<8, KPT>(out, q, k, v, keys, units, q_heads, kv_heads, d, scale, splits, ws);
      break;
    case 4:
      launch_knobs<4, KPT>(out, q, k, v, keys, units, q_heads, kv_heads, d, scale, splits, ws);
      break;
    case 2:
      launch_knobs<2, KPT>(out, q, k, v, keys, units, q_heads, kv_heads, d, scale, splits, ws);
      break;
    default:
      launch_knobs<1, KPT>(out, q, k, v, keys, units, q_heads, kv_heads, d, scale, splits, ws);
      break;
  }
}

int main() {
  const Config configs[] = {
      {1, 32, 8, 128, 16, 32768, 0},  // one long sequence (Llama-3-8B heads)
      {4, 32, 8, 128, 16, 8192, 0},   // few long
      {64, 32, 8, 128, 16, 1024, 0},  // many short
      {32, 32, 8, 128, 16, 4096, 0},  // batch serving
      {64, 32, 32, 128, 16, 512, 0},  // MHA (no GQA), short
      {8, 16, 1, 256, 16, 4096, 0},   // MQA, D 256
  };
  std::printf("%-34s %8s %10s %10s %10s\n", "config", "variant", "splits", "us", "GB/s");
  for (const Config& c : configs) {
    const int64_t max_pages = (c.len + c.page - 1) / c.page;
    const int64_t pages = c.n * max_pages;
    const int64_t elems = pages * c.page * c.hkv * c.d;
    std::mt19937 rng(42);
    std::normal_distribution<float> nd;
    std::vector<__nv_bfloat16> hk(elems), hv(elems), hq(c.n * c.hq * c.d);
    for (auto& x : hk) x = __float2bfloat16(nd(rng));
    for (auto& x : hv) x = __float2bfloat16(nd(rng));
    for (auto& x : hq) x = __float2bfloat16(nd(rng));
    std::vector<int32_t> table(c.n * max_pages), lens(c.n, static_cast<int32_t>(c.len));
    for (int64_t i = 0; i < c.n * max_pages; ++i)
      table[i] = static_cast<int32_t>((i * 7919) % pages);
    // Distinct pages: 7919 is prime and coprime with pages in these configs.
    __nv_bfloat16 *dk, *dv, *dq, *dout;
    int32_t *dtab, *dlen;
    float* ws;
    CK(cudaMalloc(&dk, elems * 2));
    CK(cudaMalloc(&dv, elems * 2));
    CK(cudaMalloc(&dq, hq.size() * 2));
    CK(cudaMalloc(&dout, hq.size() * 2));
    CK(cudaMalloc(&dtab, table.size() * 4));
    CK(cudaMalloc(&dlen, lens.size() * 4));
    CK(cudaMalloc(&ws, static_cast<size_t>(c.n * c.hq * 64 * (c.d + 1)) * 4));
    CK(cudaMemcpy(dk, hk.data(), elems * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dv, hv.data(), elems * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dq, hq.data(), hq.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dtab, table.data(), table.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dlen, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));

    // CPU reference in double for sequences 0 and n-1 (all heads).
    const float scale = 1.f / std::sqrt(static_cast<float>(c.d));
    std::vector<double> ref(c.n * c.hq * c.d, 0.0);
    std::vector<int64_t> checked{0};
    if (c.n > 1) checked.push_back(c.n - 1);
    for (int64_t s : checked) {
      for (int64_t h = 0; h < c.hq; ++h) {
        const int64_t g = h / (c.hq / c.hkv);
        std::vector<double> p(c.len);
        double mx = -1e300;
        for (int64_t t = 0; t < c.len; ++t) {
          const int64_t row =
              ((int64_t)table[s * max_pages + t / c.page] * c.page + t % c.page) * c.hkv + g;
          double dot = 0;
          for (int64_t e = 0; e < c.d; ++e)
            dot += (double)__bfloat162float(hq[(s * c.hq + h) * c.d + e]) *
                   __bfloat162float(hk[row * c.d + e]);
          p[t] = dot * scale;
          mx = std::max(mx, p[t]);
        }
        double sum = 0;
        for (auto& x : p) sum += (x = std::exp(x - mx));
        for (int64_t t = 0; t < c.len; ++t) {
          const int64_t row =
              ((int64_t)table[s * max_pages + t / c.page] * c.page + t % c.page) * c.hkv + g;
          for (int64_t e = 0; e < c.d; ++e)
            ref[(s * c.hq + h) * c.d + e] += p[t] / sum * __bfloat162float(hv[row * c.d + e]);
        }
      }
    }

    const PagedKeys keys{dtab, dlen, c.page, max_pages, c.hkv, c.window};
    const int chosen = choose_splits(c.n, c.hq, c.hkv, max_pages * c.page);
    const int split_counts[8] = {1,      chosen, std::min(64, chosen * 2), chosen, chosen, chosen,
                                 chosen, chosen};
    const int hpb = heads_per_block(c.hq / c.hkv), half_hpb = std::max(1, hpb / 2);
    const double bytes = 2.0 * c.n * c.len * c.hkv * c.d * 2;
    char name[64];
    std::snprintf(name, sizeof name, "N=%ld Hq=%ld Hkv=%ld D=%ld len=%ld", (long)c.n, (long)c.hq,
                  (long)c.hkv, (long)c.d, (long)c.len);
    for (int v = 0; v < 8; ++v) {
      const int splits = split_counts[v];
      auto call = [&] {
        switch (v) {
          case 3:
            launch_hpb<1>(hpb, dout, dq, dk, dv, keys, c.n, c.hq, c.hkv, c.d, scale, splits, ws);
            break;
          case 4:
            launch_hpb<2>(hpb, dout, dq, dk, dv, keys, c.n, c.hq, c.hkv, c.d, scale, splits, ws);
            break;
          case 5:
            launch_hpb<4>(hpb, dout, dq, dk, dv, keys, c.n, c.hq, c.hkv, c.d, scale, splits, ws);
            break;
          case 6:
            launch_hpb<4>(half_hpb, dout, dq, dk, dv, keys, c.n, c.hq, c.hkv, c.d, scale, splits,
                          ws);
            break;
          case 7:
            launch_hpb<2>(half_hpb, dout, dq, dk, dv, keys, c.n, c.hq, c.hkv, c.d, scale, splits,
                          ws);
            break;
          default:
            launch_split(tune::DType::bf16, dout, dq, dk, dv, keys, c.n, c.hq, c.hkv, c.d, scale,
                         splits, ws);
        }
      };
      CK(cudaMemset(dout, 0xff, hq.size() * 2));
      call();
      CK(cudaDeviceSynchronize());
      std::vector<__nv_bfloat16> got(hq.size());
      CK(cudaMemcpy(got.data(), dout, got.size() * 2, cudaMemcpyDeviceToHost));
      double num = 0, den = 0;
      for (int64_t s : checked) {
        for (int64_t i = (s * c.hq) * c.d; i < (s + 1) * c.hq * c.d; ++i) {
          const double x = __bfloat162float(got[i]);
          num += (x - ref[i]) * (x - ref[i]);
          den += ref[i] * ref[i];
        }
      }
      const double rel = std::sqrt(num / den);
      cudaEvent_t a, b;
      CK(cudaEventCreate(&a));
      CK(cudaEventCreate(&b));
      std::vector<float> ms;
      for (int it = 0; it < 60; ++it) {
        CK(cudaEventRecord(a, cudaStreamPerThread));
        call();
        CK(cudaEventRecord(b, cudaStreamPerThread));
        CK(cudaEventSynchronize(b));
        float t;
        CK(cudaEventElapsedTime(&t, a, b));
        if (it >= 10) ms.push_back(t);
      }
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      std::printf("%-34s %8d %10d %10.1f %10.0f  rel_err %.2e%s\n", name, v + 1, splits, med * 1e3,
                  bytes / (med * 1e-3) / 1e9, rel, rel < 2e-2 ? "" : "  FAIL");
    }
    cudaFree(dk), cudaFree(dv), cudaFree(dq), cudaFree(dout), cudaFree(dtab), cudaFree(dlen),
        cudaFree(ws);
  }
  return 0;
}
