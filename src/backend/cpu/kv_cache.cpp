// The paged KV cache on the CPU: the reference the CUDA kernels are tested against, and the path
// CPU inference takes. Design notes:
// - Writing is a byte copy per row (Hkv * D elements are contiguous in both k and a page slot).
// - Decode is one task per (sequence, query head): gather scores over the visible keys through the
//   block table, softmax with the max subtracted, then the probability-weighted sum of V rows.
//   Each task owns its output row, so the result does not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/kv_cache_kernels.h"

namespace tune::cpu {

namespace {
constexpr int64_t kParallelMinWork = 1 << 16;
}  // namespace

template <typename I>
void kv_cache_write(void* k_pages, void* v_pages, const void* k, const void* v, const I* slots,
                    int64_t n, int64_t row_bytes) {
  auto* kp = static_cast<char*>(k_pages);
  auto* vp = static_cast<char*>(v_pages);
  const auto* kr = static_cast<const char*>(k);
  const auto* vr = static_cast<const char*>(v);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t slot = static_cast<int64_t>(slots[r]);
    if (slot < 0) continue;
    std::memcpy(kp + slot * row_bytes, kr + r * row_bytes, static_cast<size_t>(row_bytes));
    std::memcpy(vp + slot * row_bytes, vr + r * row_bytes, static_cast<size_t>(row_bytes));
  }
}

template <typename T>
void attention_decode(T* out, const T* q, const T* k_pages, const T* v_pages,
                      const int32_t* block_table, const int32_t* seq_lens, const DecodeShape& s,
                      double scale, int64_t window) {
  const int64_t d = s.head_dim, group = s.q_heads / s.kv_heads, tasks = s.seqs * s.q_heads;
  const int64_t slot_stride = s.kv_heads * d;  // elements between consecutive positions
  int64_t work = 0;
  for (int64_t n = 0; n < s.seqs; ++n) work += seq_lens[n];
  work *= s.q_heads * d;
#pragma omp parallel for schedule(dynamic) if (work > kParallelMinWork)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t n = task / s.q_heads, h = task % s.q_heads, g = h / group;
    const int64_t len = seq_lens[n];
    const int64_t lo = window > 0 ? std::max<int64_t>(0, len - window) : 0;
    const int32_t* pages = block_table + n * s.max_pages;
    // Position t of sequence n, kv head g: (D) elements.
    auto row = [&](const T* base, int64_t t) {
      const int64_t slot =
          static_cast<int64_t>(pages[t / s.page_size]) * s.page_size + t % s.page_size;
      return base + slot * slot_stride + g * d;
    };
    const T* qh = q + (n * s.q_heads + h) * d;
    std::vector<T> p(static_cast<size_t>(len - lo));
    T m = -INFINITY;
    for (int64_t t = lo; t < len; ++t) {
      const T* kr = row(k_pages, t);
      T dot = 0;
      for (int64_t i = 0; i < d; ++i) dot += qh[i] * kr[i];
      p[t - lo] = dot * static_cast<T>(scale);
      m = std::max(m, p[t - lo]);
    }
    T sum = 0;
    for (T& x : p) {
      x = std::exp(x - m);
      sum += x;
    }
    T* oh = out + (n * s.q_heads + h) * d;
    std::fill(oh, oh + d, T(0));
    for (int64_t t = lo; t < len; ++t) {
      const T* vr = row(v_pages, t);
      const T w = p[t - lo] / sum;
      for (int64_t i = 0; i < d; ++i) oh[i] += w * vr[i];
    }
  }
}

template void kv_cache_write<int32_t>(void*, void*, const void*, const void*, const int32_t*,
                                      int64_t, int64_t);
template void kv_cache_write<int64_t>(void*, void*, const void*, const void*, const int64_t*,
                                      int64_t, int64_t);
template void attention_decode<float>(float*, const float*, const float*, const float*,
                                      const int32_t*, const int32_t*, const DecodeShape&, double,
                                      int64_t);
template void attention_decode<double>(double*, const double*, const double*, const double*,
                                       const int32_t*, const int32_t*, const DecodeShape&, double,
                                       int64_t);

}  // namespace tune::cpu
