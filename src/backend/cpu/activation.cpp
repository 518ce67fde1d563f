// SwiGLU (Llama's MLP): h = silu(gate) * up, silu(g) = g * sigmoid(g). Design notes:
// - Backward, with s = sigmoid(g):  dup = dh * g * s,  dgate = dh * up * s * (1 + g * (1 - s)).
//   Each element is read before it is written, so dgate may alias gate and dup may alias up.
// - sigmoid as 1 / (1 + exp(-g)) saturates cleanly: exp overflows to inf and s becomes 0.
//   exp is vector_math::exp (within an ulp of expf for float, std::exp for double), so the
//   float loops vectorize.
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/vector_math.h"

namespace tune::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 14;

template <typename T>
T sigmoid(T g) {
  return T(1) / (T(1) + vector_math::exp(-g));
}
}  // namespace

template <typename T>
void swiglu_forward(T* h, const T* gate, const T* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i];
    h[i] = g * sigmoid(g) * up[i];
  }
}

template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dh, const T* gate, const T* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i], u = up[i], d = dh[i], s = sigmoid(g);
    dgate[i] = d * u * s * (T(1) + g * (T(1) - s));
    dup[i] = d * g * s;
  }
}

#define TUNE_INSTANTIATE(T)                                         \
  template void swiglu_forward<T>(T*, const T*, const T*, int64_t); \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t);
TUNE_INSTANTIATE(float)
TUNE_INSTANTIATE(double)
#undef TUNE_INSTANTIATE

}  // namespace tune::cpu
