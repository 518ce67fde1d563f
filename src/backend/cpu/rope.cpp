// Rotary position embedding in Hugging Face's rotate_half layout: element i of a head pairs with
// element i + D/2 (not with i + 1 as in the original paper's interleaved layout). Design notes:
// - In place on (B, T, H, D); one task per (b, t) row, whose H heads share one cos/sin row.
// - Backward applies the transposed rotation (s -> -s); rotations are orthogonal, so this is
//   also the inverse.
// - positions were range-checked by src/ops.
#include "backend/cpu/cpu_kernels.h"

namespace tune::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 14;
}  // namespace

template <typename T, typename I>
void rope(T* x, const T* cos, const T* sin, const I* positions, int64_t b, int64_t t, int64_t h,
          int64_t d, RopeDirection direction) {
  const int64_t half = d / 2;
  const T sign = direction == RopeDirection::forward ? T(1) : T(-1);
#pragma omp parallel for schedule(static) if (b * t * h * d > kParallelMin)
  for (int64_t bt = 0; bt < b * t; ++bt) {
    const int64_t pos = static_cast<int64_t>(positions[bt]);
    const T* cr = cos + pos * half;  // (D/2)
    const T* sr = sin + pos * half;
    for (int64_t head = 0; head < h; ++head) {
      T* xh = x + (bt * h + head) * d;  // (D)
      for (int64_t i = 0; i < half; ++i) {
        const T x1 = xh[i], x2 = xh[i + half], c = cr[i], s = sign * sr[i];
        xh[i] = x1 * c - x2 * s;
        xh[i + half] = x2 * c + x1 * s;
      }
    }
  }
}

#define TUNE_INSTANTIATE(T, I)                                                                   \
  template void rope<T, I>(T*, const T*, const T*, const I*, int64_t, int64_t, int64_t, int64_t, \
                           RopeDirection);
TUNE_INSTANTIATE(float, int32_t)
TUNE_INSTANTIATE(float, int64_t)
TUNE_INSTANTIATE(double, int32_t)
TUNE_INSTANTIATE(double, int64_t)
#undef TUNE_INSTANTIATE

}  // namespace tune::cpu
