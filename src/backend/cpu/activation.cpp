// SwiGLU (Llama's MLP): h = silu(gate) * up, silu(g) = g * sigmoid(g). Design notes:
// - Backward, with s = sigmoid(g):  dup = dh * g * s,  dgate = dh * up * s * (1 + g * (1 - s)).
//   Each element is read before it is written, so dgate may alias gate and dup may alias up.
// - sigmoid as 1 / (1 + exp(-g)) saturates cleanly: exp overflows to inf and s becomes 0.
//   exp is vector_math::exp (within an ulp of expf for float, std::exp for double), so the
//   float loops vectorize.
// - GELU, tanh approximation (GPT-2's gelu_new): y = 0.5 x (1 + t), t = tanh(k (x + a x^3)),
//   k = sqrt(2/pi), a = 0.044715;  dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 a x^2).
//   Computed in T like torch's NewGELUActivation; tanh from <cmath>.
#include <cmath>

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

namespace {
template <typename T>
constexpr T kGeluK = static_cast<T>(0.7978845608028654);  // sqrt(2 / pi)
template <typename T>
constexpr T kGeluA = static_cast<T>(0.044715);
}  // namespace

template <typename T>
void gelu_tanh_forward(T* y, const T* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    y[i] = T(0.5) * v * (T(1) + std::tanh(kGeluK<T> * (v + kGeluA<T> * v * v * v)));
  }
}

template <typename T>
void gelu_tanh_backward(T* dx, const T* dy, const T* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i], t = std::tanh(kGeluK<T> * (v + kGeluA<T> * v * v * v));
    const T grad = T(0.5) * (T(1) + t) +
                   T(0.5) * v * (T(1) - t * t) * kGeluK<T> * (T(1) + T(3) * kGeluA<T> * v * v);
    dx[i] = dy[i] * grad;
  }
}

#define TUNE_INSTANTIATE(T)                                                        \
  template void swiglu_forward<T>(T*, const T*, const T*, int64_t);                \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t); \
  template void gelu_tanh_forward<T>(T*, const T*, int64_t);                       \
  template void gelu_tanh_backward<T>(T*, const T*, const T*, int64_t);
TUNE_INSTANTIATE(float)
TUNE_INSTANTIATE(double)
#undef TUNE_INSTANTIATE

}  // namespace tune::cpu
