// Rotary position embedding on the GPU, in place on [B, T, H, D] (HF rotate_half: element i pairs
// with i + D/2); measured in dev/kernels/rope.cu. Design notes:
// - One thread per (row, head, group of V pair indices): it loads x[i .. i+V) and
//   x[i+D/2 .. i+D/2+V) and the V cos/sin values as packs, rotates in f32, stores both packs.
//   V = 8 / 4 / 2 / 1 elements by what D/2 and the pointers allow (16-byte packs for bf16 at
//   D/2 % 8 == 0).
// - Backward is the same kernel with sin negated (the transpose of a rotation).
// - Positions are checked on the device (embedding_kernels.h); a bad one leaves its row as is.
#include <algorithm>
#include <cstdint>

#include "backend/cuda/embedding_common.cuh"
#include "backend/cuda/embedding_kernels.h"

namespace tune::cuda {

namespace {

template <typename T, typename I, int V>
__global__ void rope_rows(T* x, const T* cos, const T* sin, const I* positions, int64_t rows, int h,
                          int half, int64_t p, float sign, unsigned long long* bad) {
  const int groups = half / V;
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= rows * h * groups) return;
  const int gi = static_cast<int>(idx % groups);
  const int64_t rh = idx / groups;  // (row, head)
  const int64_t row = rh / h;
  const int64_t pos = static_cast<int64_t>(positions[row]);
  if (pos < 0 || pos >= p) {
    if (rh % h == 0 && gi == 0) report_bad_index(bad, row);
    return;
  }
  using P = Pack<T, V>;
  T* x1p = x + rh * 2 * half + gi * V;
  T* x2p = x1p + half;
  const P c = *reinterpret_cast<const P*>(cos + pos * half + gi * V);
  const P s = *reinterpret_cast<const P*>(sin + pos * half + gi * V);
  P a = *reinterpret_cast<const P*>(x1p);
  P b = *reinterpret_cast<const P*>(x2p);
#pragma unroll
  for (int e = 0; e < V; ++e) {
    const float x1 = to_f(a.v[e]), x2 = to_f(b.v[e]), ce = to_f(c.v[e]), se = sign * to_f(s.v[e]);
    a.v[e] = from_f<T>(x1 * ce - x2 * se);
    b.v[e] = from_f<T>(x2 * ce + x1 * se);
  }
  *reinterpret_cast<P*>(x1p) = a;
  *reinterpret_cast<P*>(x2p) = b;
}

template <typename T, typename I, int V>
void launch(T* x, const T* cos, const T* sin, const I* pos, int64_t rows, int h, int half,
            int64_t p, float sign, unsigned long long* bad) {
  const int64_t threads = rows * h * (half / V);
  constexpr int kBlock = 256;
  rope_rows<T, I, V>
      <<<static_cast<unsigned>((threads + kBlock - 1) / kBlock), kBlock, 0, cudaStreamPerThread>>>(
          x, cos, sin, pos, rows, h, half, p, sign, bad);
}

}  // namespace

int64_t rope(DType dtype, DType pos_type, void* x, const void* cos, const void* sin,
             const void* positions, int64_t b, int64_t t, int64_t h, int64_t d, int64_t p,
             RopeDirection direction, bool check) {
  const int64_t rows = b * t, half = d / 2;
  if (rows == 0 || h == 0 || half == 0) return -1;
  const IndexCheck index_check(check);
  const float sign = direction == RopeDirection::forward ? 1.f : -1.f;
  dispatch_storage(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto go = [&](auto itag) {
      using I = decltype(itag);
      auto* xp = static_cast<T*>(x);
      const auto* cp = static_cast<const T*>(cos);
      const auto* sp = static_cast<const T*>(sin);
      const auto* pp = static_cast<const I*>(positions);
      const auto addr = reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(cos) |
                        reinterpret_cast<uintptr_t>(sin);
      auto fits = [&](int v) {
        return half % v == 0 && addr % (static_cast<uintptr_t>(v) * sizeof(T)) == 0;
      };
      const int hh = static_cast<int>(h), hf = static_cast<int>(half);
      if (sizeof(T) == 2 && fits(8)) {
        launch<T, I, 8>(xp, cp, sp, pp, rows, hh, hf, p, sign, index_check.flag());
      } else if (fits(4)) {
        launch<T, I, 4>(xp, cp, sp, pp, rows, hh, hf, p, sign, index_check.flag());
      } else if (fits(2)) {
        launch<T, I, 2>(xp, cp, sp, pp, rows, hh, hf, p, sign, index_check.flag());
      } else {
        launch<T, I, 1>(xp, cp, sp, pp, rows, hh, hf, p, sign, index_check.flag());
      }
    };
    if (pos_type == DType::i32) {
      go(int32_t{});
    } else {
      go(int64_t{});
    }
  });
  TUNE_CUDA_CHECK(cudaGetLastError());
  return index_check.first_bad();
}

}  // namespace tune::cuda
