// Cross-entropy over rows of logits (N, V). Design notes:
// - Per row: m = max, e_j = exp(x_j - m), sum = sum_j e_j (e in T, the sum in double);
//   loss = m + log(sum) - x[target]; dlogits = grad_scale * (e_j / sum - onehot(target)).
// - One exp per logit: the sum pass writes e_j into dlogits (or, for the loss alone, into a row
//   of scratch per thread) and the gradient pass scales it there. exp, max and the sum come from
//   vector_math.h, so every pass vectorizes, and the sum's order is fixed by the code.
// - Row losses land in a per-row array summed in row order afterwards, so the total does not
//   depend on the thread count.
// - Within a row, logits are fully read (max, x[target], then each x_j just before e_j is
//   written over it), so dlogits may alias logits and a large vocabulary needs no second (N, V)
//   buffer.
// - Ignored rows (target -100) get zero gradient and add nothing.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/vector_math.h"

namespace tune::cpu {

namespace {
constexpr int64_t kIgnoreIndex = -100;
constexpr int64_t kParallelMin = 1 << 14;
}  // namespace

template <typename T, typename I>
double cross_entropy(T* dlogits, const T* logits, const I* targets, int64_t n, int64_t v,
                     double grad_scale) {
  std::vector<double> row_loss(static_cast<size_t>(n), 0.0);
#pragma omp parallel if (n * v > kParallelMin)
  {
    std::vector<T> scratch(dlogits ? 0 : static_cast<size_t>(v));  // (V)
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      const T* x = logits + r * v;                        // (V)
      T* e = dlogits ? dlogits + r * v : scratch.data();  // (V)
      const int64_t target = static_cast<int64_t>(targets[r]);
      if (target == kIgnoreIndex) {
        if (dlogits) std::fill(e, e + v, T(0));
        continue;
      }
      const T m = vector_math::max(x, v);
      const double x_target = static_cast<double>(x[target]);
      for (int64_t j = 0; j < v; ++j) e[j] = vector_math::exp(x[j] - m);
      const double sum = vector_math::sum<double>(e, v);
      row_loss[static_cast<size_t>(r)] = static_cast<double>(m) + std::log(sum) - x_target;
      if (!dlogits) continue;
      const T scale = static_cast<T>(grad_scale / sum);
      for (int64_t j = 0; j < v; ++j) e[j] *= scale;
      e[target] -= static_cast<T>(grad_scale);
    }
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
