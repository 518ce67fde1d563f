#include "backend/cpu/argmax_kernels.h"

namespace tune::cpu {

template <typename T>
void argmax_rows(int64_t* out, const T* x, int64_t n, int64_t c) {
  for (int64_t r = 0; r < n; ++r) {
    const T* row = x + r * c;
    int64_t at = -1;
    for (int64_t j = 0; j < c; ++j)
      if (row[j] == row[j] && (at < 0 || row[j] > row[at])) at = j;  // row[j] == row[j]: not NaN
    out[r] = at < 0 ? 0 : at;
  }
}

template void argmax_rows<float>(int64_t*, const float*, int64_t, int64_t);
template void argmax_rows<double>(int64_t*, const double*, int64_t, int64_t);

}  // namespace tune::cpu
