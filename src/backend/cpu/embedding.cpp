// Embedding lookup and its scatter-add backward. Design notes:
// - ids were range-checked by src/ops before we get here.
// - Backward would race when two rows share an id, so threads split the columns instead of the
//   rows: each thread owns a column slice of dtable and walks every row in order. No atomics,
//   and each dtable element sees its additions in row order at any thread count.
#include <algorithm>
#include <cstring>

#include "backend/cpu/cpu_kernels.h"

namespace tune::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
constexpr int64_t kColumnBlock = 256;
}  // namespace

template <typename T, typename I>
void embedding_forward(T* out, const I* ids, const T* table, int64_t n, int64_t c) {
#pragma omp parallel for schedule(static) if (n * c > kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    std::memcpy(out + r * c, table + static_cast<int64_t>(ids[r]) * c,
                static_cast<size_t>(c) * sizeof(T));
  }
}

template <typename T, typename I>
void embedding_backward(T* dtable, const T* dout, const I* ids, int64_t n, int64_t c) {
  const int64_t blocks = (c + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (n * c > kParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kColumnBlock, width = std::min(kColumnBlock, c - c0);
    for (int64_t r = 0; r < n; ++r) {
      T* dst = dtable + static_cast<int64_t>(ids[r]) * c + c0;
      const T* src = dout + r * c + c0;
      for (int64_t j = 0; j < width; ++j) dst[j] += src[j];
    }
  }
}

#define TUNE_INSTANTIATE(T, I)                                                     \
  template void embedding_forward<T, I>(T*, const I*, const T*, int64_t, int64_t); \
  template void embedding_backward<T, I>(T*, const T*, const I*, int64_t, int64_t);
TUNE_INSTANTIATE(float, int32_t)
TUNE_INSTANTIATE(float, int64_t)
TUNE_INSTANTIATE(double, int32_t)
TUNE_INSTANTIATE(double, int64_t)
#undef TUNE_INSTANTIATE

}  // namespace tune::cpu
