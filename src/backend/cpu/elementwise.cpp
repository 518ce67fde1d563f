// Elementwise kernels and the reductions over them. Design notes:
// - Loops are flat over numel and parallel with a static schedule once they are big enough to
//   pay for waking the threads; below that they run inline.
// - Reductions never depend on the thread count: sum_squares sums fixed-size chunks into
//   partials and adds those in chunk order; bias_backward gives each thread whole columns, so
//   every column is summed over rows in row order.
// - Dropout's mask is uniform01(seed, stream, i) >= p, compared in float (the type uniform01
//   returns) so that every device draws the same mask.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "tune/core/rng.h"

namespace tune::cpu {

namespace {
// Below this many elements a loop runs on the calling thread.
constexpr int64_t kParallelMin = 1 << 15;
// Reduction chunk: fixed, so partial sums and their order are the same at any thread count.
constexpr int64_t kChunk = 1 << 14;
// Columns per task in column reductions: 64 doubles of accumulators stay in registers/L1.
constexpr int64_t kColumnBlock = 64;
}  // namespace

template <typename T>
void fill(T* x, int64_t n, T value) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] = value;
}

template <typename T>
void copy(T* dst, const T* src, int64_t n) {
  if (dst != src) std::memmove(dst, src, static_cast<size_t>(n) * sizeof(T));
}

template <typename T>
void add(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <typename T>
void add_inplace(T* y, const T* x, int64_t n, T alpha) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

template <typename T>
void scale_inplace(T* y, int64_t n, T alpha) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] *= alpha;
}

template <typename T>
void add_bias(T* y, const T* b, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    T* yr = y + r * cols;
    for (int64_t c = 0; c < cols; ++c) yr[c] += b[c];
  }
}

template <typename T>
void bias_backward(T* db, const T* dy, int64_t rows, int64_t cols) {
  const int64_t blocks = (cols + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kColumnBlock, width = std::min(kColumnBlock, cols - c0);
    double acc[kColumnBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = dy + r * cols + c0;
      for (int64_t j = 0; j < width; ++j) acc[j] += row[j];
    }
    for (int64_t j = 0; j < width; ++j) db[c0 + j] += static_cast<T>(acc[j]);
  }
}

template <typename T>
double sum_squares(const T* x, int64_t n) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t end = std::min(n, (ch + 1) * kChunk);
    double acc = 0;
    for (int64_t i = ch * kChunk; i < end; ++i) acc += static_cast<double>(x[i]) * x[i];
    partial[static_cast<size_t>(ch)] = acc;
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

template <typename T>
void dropout(T* out, const T* x, int64_t n, double p, uint64_t seed, uint64_t stream) {
  const float threshold = static_cast<float>(p);
  const T keep_scale = static_cast<T>(1.0 / (1.0 - p));
#pragma omp parallel for schedule(static) if (n > kParallelMin / 8)
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = uniform01(seed, stream, static_cast<uint64_t>(i)) >= threshold;
    out[i] = keep ? x[i] * keep_scale : T(0);
  }
}

template <typename T>
void copy_2d(T* dst, int64_t ld_dst, const T* src, int64_t ld_src, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 16))
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) dst[r * ld_dst + j] = src[r * ld_src + j];
}

#define TUNE_INSTANTIATE(T)                                                   \
  template void fill<T>(T*, int64_t, T);                                      \
  template void copy<T>(T*, const T*, int64_t);                               \
  template void add<T>(T*, const T*, const T*, int64_t);                      \
  template void add_inplace<T>(T*, const T*, int64_t, T);                     \
  template void scale_inplace<T>(T*, int64_t, T);                             \
  template void add_bias<T>(T*, const T*, int64_t, int64_t);                  \
  template void bias_backward<T>(T*, const T*, int64_t, int64_t);             \
  template double sum_squares<T>(const T*, int64_t);                          \
  template void copy_2d<T>(T*, int64_t, const T*, int64_t, int64_t, int64_t); \
  template void dropout<T>(T*, const T*, int64_t, double, uint64_t, uint64_t);
TUNE_INSTANTIATE(float)
TUNE_INSTANTIATE(double)
#undef TUNE_INSTANTIATE

}  // namespace tune::cpu
