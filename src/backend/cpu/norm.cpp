// RMSNorm (Llama): y = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps) per row; the fused
// block forms add the residual before the norm (h = x + a) or after its backward (dx += residual),
// each as its own loop over the row so the results match the separate add bit for bit.
// Design notes:
// - Row reductions accumulate in double; the row's elementwise work stays in T.
// - Backward, with xhat = x * rstd and g = w * dy:
//     dx = rstd * (g - xhat * mean(g * xhat)),   dw += sum over rows of dy * xhat.
//   dw is summed first, by threads that own column blocks and walk rows in order (no races,
//   no atomics, same order at any thread count); dx then goes row by row reading each dy
//   element before writing it, so dx may alias dy.
// LayerNorm (GPT-2): y = (x - mean) * rstd * w + b, the variance taken about the mean in a
// second pass (as torch does, no E[x^2] - mean^2 cancellation), with the same fused block forms
// as RMSNorm. Backward, with xhat = (x - mean) * rstd and g = w * dy:
//     dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dw += sum dy * xhat,  db += sum dy,
//   the parameter sums first by column blocks as for RMSNorm, so dx may alias dy here too.
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_kernels.h"

namespace tune::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 14;
constexpr int64_t kColumnBlock = 64;

template <typename T>
void rms_norm_row(T* yr, T* rstd, const T* xr, const T* w, int64_t c, double eps) {
  double ss = 0;
  for (int64_t j = 0; j < c; ++j) ss += static_cast<double>(xr[j]) * xr[j];
  const T rs = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(c) + eps));
  *rstd = rs;
  for (int64_t j = 0; j < c; ++j) yr[j] = xr[j] * rs * w[j];
}

}  // namespace

template <typename T>
void rms_norm_forward(T* y, T* rstd, const T* x, const T* w, int64_t n, int64_t c, double eps) {
#pragma omp parallel for schedule(static) if (n * c > kParallelMin)
  for (int64_t r = 0; r < n; ++r) rms_norm_row(y + r * c, rstd + r, x + r * c, w, c, eps);
}

template <typename T>
void add_rms_norm_forward(T* h, T* y, T* rstd, const T* x, const T* a, const T* w, int64_t n,
                          int64_t c, double eps) {
#pragma omp parallel for schedule(static) if (n * c > kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    T* hr = h + r * c;
    for (int64_t j = 0; j < c; ++j) hr[j] = x[r * c + j] + a[r * c + j];
    rms_norm_row(y + r * c, rstd + r, hr, w, c, eps);
  }
}

template <typename T>
void rms_norm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd,
                       const T* residual, int64_t n, int64_t c) {
  if (dw) {
    const int64_t blocks = (c + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (n * c > kParallelMin)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t c0 = blk * kColumnBlock, width = std::min(kColumnBlock, c - c0);
      double acc[kColumnBlock] = {};
      for (int64_t r = 0; r < n; ++r) {
        const T* dyr = dy + r * c + c0;
        const T* xr = x + r * c + c0;
        const double rs = rstd[r];
        for (int64_t j = 0; j < width; ++j) acc[j] += static_cast<double>(dyr[j]) * xr[j] * rs;
      }
      for (int64_t j = 0; j < width; ++j) dw[c0 + j] += static_cast<T>(acc[j]);
    }
  }
#pragma omp parallel for schedule(static) if (n * c > kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    const T* dyr = dy + r * c;
    const T* xr = x + r * c;
    T* dxr = dx + r * c;
    const T rs = rstd[r];
    double dot = 0;  // sum of g * xhat
    for (int64_t j = 0; j < c; ++j) dot += static_cast<double>(w[j]) * dyr[j] * xr[j] * rs;
    const T mean_dot = static_cast<T>(dot / static_cast<double>(c));
    for (int64_t j = 0; j < c; ++j) dxr[j] = rs * (w[j] * dyr[j] - xr[j] * rs * mean_dot);
    // A second loop, as add_inplace after the norm would be: the sum never fuses into the
    // product above.
    if (residual) {
      const T* res = residual + r * c;
      for (int64_t j = 0; j < c; ++j) dxr[j] += res[j];
    }
  }
}

namespace {

// One row of layer_norm_forward.
template <typename T>
void layer_norm_row(T* yr, T* mean, T* rstd, const T* xr, const T* w, const T* b, int64_t c,
                    double eps) {
  double sum = 0;
  for (int64_t j = 0; j < c; ++j) sum += static_cast<double>(xr[j]);
  const double mu = sum / static_cast<double>(c);
  double ss = 0;
  for (int64_t j = 0; j < c; ++j) {
    const double d = static_cast<double>(xr[j]) - mu;
    ss += d * d;
  }
  const T m = static_cast<T>(mu);
  const T rs = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(c) + eps));
  *mean = m;
  *rstd = rs;
  for (int64_t j = 0; j < c; ++j) yr[j] = (xr[j] - m) * rs * w[j] + b[j];
}

}  // namespace

template <typename T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t n,
                        int64_t c, double eps) {
#pragma omp parallel for schedule(static) if (n * c > kParallelMin)
  for (int64_t r = 0; r < n; ++r)
    layer_norm_row(y + r * c, mean + r, rstd + r, x + r * c, w, b, c, eps);
}

template <typename T>
void add_layer_norm_forward(T* h, T* y, T* mean, T* rstd, const T* x, const T* a, const T* w,
                            const T* b, int64_t n, int64_t c, double eps) {
#pragma omp parallel for schedule(static) if (n * c > kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    T* hr = h + r * c;
    for (int64_t j = 0; j < c; ++j) hr[j] = x[r * c + j] + a[r * c + j];
    layer_norm_row(y + r * c, mean + r, rstd + r, hr, w, b, c, eps);
  }
}

template <typename T>
void layer_norm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* mean,
                         const T* rstd, const T* residual, int64_t n, int64_t c) {
  if (dw || db) {
    const int64_t blocks = (c + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (n * c > kParallelMin)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t c0 = blk * kColumnBlock, width = std::min(kColumnBlock, c - c0);
      double acc_w[kColumnBlock] = {}, acc_b[kColumnBlock] = {};
      for (int64_t r = 0; r < n; ++r) {
        const T* dyr = dy + r * c + c0;
        const T* xr = x + r * c + c0;
        const double m = mean[r], rs = rstd[r];
        for (int64_t j = 0; j < width; ++j) {
          acc_w[j] += static_cast<double>(dyr[j]) * ((static_cast<double>(xr[j]) - m) * rs);
          acc_b[j] += static_cast<double>(dyr[j]);
        }
      }
      for (int64_t j = 0; j < width; ++j) {
        if (dw) dw[c0 + j] += static_cast<T>(acc_w[j]);
        if (db) db[c0 + j] += static_cast<T>(acc_b[j]);
      }
    }
  }
#pragma omp parallel for schedule(static) if (n * c > kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    const T* dyr = dy + r * c;
    const T* xr = x + r * c;
    T* dxr = dx + r * c;
    const T m = mean[r], rs = rstd[r];
    double sum_g = 0, sum_gx = 0;  // sums of g and g * xhat
    for (int64_t j = 0; j < c; ++j) {
      const double g = static_cast<double>(w[j]) * dyr[j];
      sum_g += g;
      sum_gx += g * ((static_cast<double>(xr[j]) - mean[r]) * rstd[r]);
    }
    const T mean_g = static_cast<T>(sum_g / static_cast<double>(c));
    const T mean_gx = static_cast<T>(sum_gx / static_cast<double>(c));
    for (int64_t j = 0; j < c; ++j)
      dxr[j] = rs * (w[j] * dyr[j] - mean_g - (xr[j] - m) * rs * mean_gx);
    if (residual) {  // a second loop, as for RMSNorm
      const T* res = residual + r * c;
      for (int64_t j = 0; j < c; ++j) dxr[j] += res[j];
    }
  }
}

#define TUNE_INSTANTIATE(T)                                                                       \
  template void rms_norm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, double);        \
  template void rms_norm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*,    \
                                     int64_t, int64_t);                                           \
  template void add_rms_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t,        \
                                        int64_t, double);                                         \
  template void layer_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                      double);                                                    \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,        \
                                       const T*, const T*, int64_t, int64_t);                     \
  template void add_layer_norm_forward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, \
                                          int64_t, int64_t, double);
TUNE_INSTANTIATE(float)
TUNE_INSTANTIATE(double)
#undef TUNE_INSTANTIATE

}  // namespace tune::cpu
