// Cross-entropy over rows of logits (N, V). Design notes:
// - Per row: m = max, lse = m + log(sum exp(x - m)), with exp in T and the sum in double;
//   loss = lse - x[target]; dlogits = grad_scale * (exp(x - lse) - onehot(target)).
// - Row losses land in a per-row array summed in row order afterwards, so the total does not
//   depend on the thread count.
// - Within a row, logits are fully read (max, sum, x[target]) before dlogits is written, so
//   dlogits may alias logits and a large vocabulary needs no second (N, V) buffer.
// - Ignored rows (target -100) get zero gradient and add nothing.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_kernels.h"

namespace tune::cpu {

namespace {
constexpr int64_t kIgnoreIndex = -100;
constexpr int64_t kParallelMin = 1 << 14;
}  // namespace

template <typename T, typename I>
double cross_entropy(T* dlogits, const T* logits, const I* targets, int64_t n, int64_t v,
                     double grad_scale) {
  std::vector<double> row_loss(static_cast<size_t>(n), 0.0);
#pragma omp parallel for schedule(static) if (n * v > kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    const T* x = logits + r * v;  // (V)
    const int64_t target = static_cast<int64_t>(targets[r]);
    if (target == kIgnoreIndex) {
      if (dlogits) std::fill(dlogits + r * v, dlogits + (r + 1) * v, T(0));
      continue;
    }
    const T m = *std::max_element(x, x + v);
    double sum = 0;
    for (int64_t j = 0; j < v; ++j) sum += static_cast<double>(std::exp(x[j] - m));
    const double lse = static_cast<double>(m) + std::log(sum);
    row_loss[static_cast<size_t>(r)] = lse - static_cast<double>(x[target]);
    if (!dlogits) continue;
    T* dx = dlogits + r * v;
    const T lse_t = static_cast<T>(lse), gs = static_cast<T>(grad_scale);
    for (int64_t j = 0; j < v; ++j) dx[j] = gs * std::exp(x[j] - lse_t);
    dx[target] -= gs;
  }
  double total = 0;
  for (double l : row_loss) total += l;
  return total;
}

#define TUNE_INSTANTIATE(T, I) \
  template double cross_entropy<T, I>(T*, const T*, const I*, int64_t, int64_t, double);
TUNE_INSTANTIATE(float, int32_t)
TUNE_INSTANTIATE(float, int64_t)
TUNE_INSTANTIATE(double, int32_t)
TUNE_INSTANTIATE(double, int64_t)
#undef TUNE_INSTANTIATE

}  // namespace tune::cpu
