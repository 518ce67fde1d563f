// Mixed-precision AdamW, the kernel lab (llm.c dev/cuda style). Standalone:
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 --expt-relaxed-constexpr \
//        -I include -I src dev/kernels/adamw.cu -o build/lab/adamw
//   build/lab/adamw [n]     (an extra timing size; the default set is below)
// The trainer's CUDA step (ops::adamw_update_mixed -> tune::cuda::adamw_update_mixed in
// src/backend/cuda/optim.cu, compiled in here): master, m, v f32; weight w and gradient bf16.
// PyTorch's AdamW (torch/optim/adamw.py, single tensor) at step t, gradient g = grad_scale * grad:
//   master *= 1 - lr * wd;   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
//   master -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps);   w = bf16(master)
// Checks, per variant:
//   - against a CPU reference of that formula in double (from the same f32/bf16 inputs): master,
//     m, v within 2e-6 relative (master's error over |master| + |its update| + lr, m's over
//     |m| + |g|, v's over |v| + g^2: the f32 rounding is ~1e-7; a missing weight decay is 1e-4);
//   - bit for bit against the engine's CPU kernel formula (backend/cpu/optim_kernels.cpp's
//     adamw_element on g = f32(grad) * f32(grad_scale), mirrored here in f32 with std::fma where
//     torch fuses; the mirror was checked on the host against tune::cpu::adamw_update<float>
//     itself, 0 differing elements), which optim.cu promises to equal: master, m, v and w;
//   - w == bf16(master), rounded to nearest even, bit for bit.
// At steps 1, 10 and 1000, beta1 0.9 and 0.3 (torch's lerp switches formula at weight 0.5),
// weight decay 0.1 and 0, grad_scale 1 and a clip factor; sizes 1, 7, 33, 4097, 2^20 + 3 (and
// 42M once), also through views one element in (the trainer narrows the flat buffers at each
// decay run's begin, so the pointers need not be aligned).
//
// Variants:
//   1: the engine: adamw_mixed_kernel, one element per thread (grid-stride), scalar accesses.
//   2: 4 elements per thread: 16-byte loads and stores of master, m, v and 8-byte ones of w and
//      grad, the engine's adamw_element on each (so the bits equal variant 1's); the scalar loop
//      when a pointer is not aligned for that, and for the n % 4 tail.
// Timed at 1.24e9 / 16 parameters (one of 16 shards of a 1.24e9-parameter model), 42M and 4097.
// GB/s is printed two ways: over a full read-modify-write of every buffer (read w, grad, master,
// m, v; write w, master, m, v: 30 B per parameter) and over the bytes the kernel must move (it
// never reads w: 28 B).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../../src/backend/cuda/optim.cu"

// The one libtune function optim.cu names (in its unsupported-dtype messages); the lab has no
// libtune to link.
const char* tune::dtype_name(tune::DType) {
  return "dtype";
}

#define CHECK(stmt)                                                        \
  do {                                                                     \
    cudaError_t e_ = (stmt);                                               \
    if (e_ != cudaSuccess) {                                               \
      std::fprintf(stderr, "%s at %s:%d: %s\n", #stmt, __FILE__, __LINE__, \
                   cudaGetErrorString(e_));                                \
      std::exit(1);                                                        \
    }                                                                      \
  } while (0)

namespace lab {

using bf16 = __nv_bfloat16;

struct Hyper {
  double lr, beta1, beta2, eps, wd;
  int64_t step;
  double grad_scale;
};

// backend/cpu/optim_kernels.cpp's adamw_scalars, line for line (torch/optim/adamw.py's order).
tune::cpu::AdamWScalars scalars(const Hyper& h) {
  const double bias_correction1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double bias_correction2 = 1.0 - std::pow(h.beta2, static_cast<double>(h.step));
  const double step_size = h.lr / bias_correction1;
  return tune::cpu::AdamWScalars{
      .decay = 1.0 - h.lr * h.wd,
      .m_weight = 1.0 - h.beta1,
      .beta2 = h.beta2,
      .v_weight = 1.0 - h.beta2,
      .bias_correction2_sqrt = std::sqrt(bias_correction2),
      .eps = h.eps,
      .neg_step_size = -step_size,
  };
}

const Hyper kConfigs[] = {
    {1e-3, 0.9, 0.999, 1e-8, 0.1, 1, 1.0},     // step 1: the largest bias correction
    {1e-3, 0.9, 0.95, 1e-8, 0.1, 10, 0.37},    // a clip factor
    {3e-4, 0.3, 0.999, 1e-6, 0.0, 1000, 2.0},  // m_weight 0.7: torch's other lerp formula
    {6e-4, 0.9, 0.95, 1e-8, 0.1, 1000, 1.0 / 1024},
};

constexpr int kThreads = 256;
cudaStream_t g_stream = cudaStreamPerThread;  // the engine's stream; events are recorded on it

// ---- variant 2: 4 elements per thread ----
struct alignas(8) Bf4 {
  bf16 v[4];
};

__global__ void adamw_mixed4(float* __restrict__ master, bf16* __restrict__ param,
                             const bf16* __restrict__ grad, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, int64_t quads, tune::cuda::Coeffs c,
                             float grad_scale) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t q = tid; q < quads; q += stride) {
    float4 p4 = reinterpret_cast<const float4*>(master)[q];
    float4 m4 = reinterpret_cast<const float4*>(m)[q];
    float4 v4 = reinterpret_cast<const float4*>(v)[q];
    const Bf4 g4 = reinterpret_cast<const Bf4*>(grad)[q];
    float* pp = &p4.x;
    float* mp = &m4.x;
    float* vp = &v4.x;
    Bf4 w4;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float g = __fmul_rn(__bfloat162float(g4.v[j]), grad_scale);
      pp[j] = tune::cuda::adamw_element(pp[j], g, mp[j], vp[j], c);
      w4.v[j] = __float2bfloat16(pp[j]);
    }
    reinterpret_cast<float4*>(master)[q] = p4;
    reinterpret_cast<float4*>(m)[q] = m4;
    reinterpret_cast<float4*>(v)[q] = v4;
    reinterpret_cast<Bf4*>(param)[q] = w4;
  }
  for (int64_t i = quads * 4 + tid; i < n; i += stride) {
    float mi = m[i], vi = v[i];
    const float g = __fmul_rn(__bfloat162float(grad[i]), grad_scale);
    const float p = tune::cuda::adamw_element(master[i], g, mi, vi, c);
    master[i] = p;
    param[i] = __float2bfloat16(p);
    m[i] = mi;
    v[i] = vi;
  }
}

bool aligned(const void* p, int bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

void update(int variant, float* master, bf16* w, const bf16* grad, float* m, float* v, int64_t n,
            const Hyper& h) {
  const tune::cpu::AdamWScalars s = scalars(h);
  const auto scale = static_cast<float>(h.grad_scale);  // as ops::adamw_update_mixed casts it
  if (variant == 1) {
    tune::cuda::adamw_update_mixed(tune::DType::bf16, master, w, grad, m, v, n, s, scale);
  } else if (n > 0) {
    const bool vec = aligned(master, 16) && aligned(m, 16) && aligned(v, 16) && aligned(w, 8) &&
                     aligned(grad, 8);
    const int64_t quads = vec ? n / 4 : 0;
    const int64_t work = quads + (n - quads * 4);
    const auto blocks =
        static_cast<unsigned>(std::min<int64_t>((work + kThreads - 1) / kThreads, 65535 * 8));
    adamw_mixed4<<<blocks, kThreads, 0, g_stream>>>(master, w, grad, m, v, n, quads,
                                                    tune::cuda::coeffs(s), scale);
  }
  CHECK(cudaGetLastError());
}
constexpr int kVariants = 2;

// ---- host side ----
uint16_t bits_of(bf16 x) {
  uint16_t h;
  std::memcpy(&h, &x, 2);
  return h;
}
bf16 bf16_of(float f) {
  const uint16_t h = tune::f32_to_bf16(f);
  bf16 x;
  std::memcpy(&x, &h, 2);
  return x;
}
float f32_of(bf16 x) {
  return tune::bf16_to_f32(bits_of(x));
}
uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// The engine CPU kernel's per-element step in f32 (backend/cpu/optim_kernels.cpp: adamw_element
// with its AdamWCoeffs<float>), on g = f32(grad) * f32(grad_scale) as ops::adamw_update_mixed
// forms it on the CPU. The host compiler targets baseline x86-64 here (no FMA instruction to
// contract into), so every operation below rounds where it is written; std::fma rounds once.
void cpu_formula(float& p, float& m, float& v, float g, const tune::cpu::AdamWScalars& s) {
  const auto m_weight = static_cast<float>(s.m_weight);
  const bool small_weight = std::abs(m_weight) < 0.5f;
  const float decay = static_cast<float>(s.decay);
  const float lerp_coeff = small_weight ? m_weight : m_weight - 1.0f;
  const float v_weight = static_cast<float>(s.v_weight), beta2 = static_cast<float>(s.beta2);
  const float bc2_sqrt = static_cast<float>(s.bias_correction2_sqrt);
  const float eps = static_cast<float>(s.eps), neg_step = static_cast<float>(s.neg_step_size);
  volatile float pv = p * decay;  // volatile: one rounding per statement, whatever the flags
  const float mi = std::fma(lerp_coeff, g - m, small_weight ? m : g);
  volatile float vw = v_weight * g;
  volatile float vb = v * beta2;
  const float vi = std::fma(float(vw), g, float(vb));
  volatile float root = std::sqrt(vi);
  volatile float q = float(root) / bc2_sqrt;
  volatile float denom = float(q) + eps;
  volatile float num = neg_step * mi;
  volatile float upd = float(num) / float(denom);
  m = mi;
  v = vi;
  p = float(pv) + float(upd);
}

int g_failures = 0;

// One validation case: the inputs, and the two references computed from them on the host.
struct Case {
  int64_t n;
  std::vector<float> master, m, v;
  std::vector<bf16> grad, w0;
  std::vector<double> rp, rm, rv, sp, sm, sv;  // double reference and each error's scale
  std::vector<float> fp, fm, fv;               // the CPU kernel's f32 bits
};

Case make_case(int64_t n, const Hyper& h, unsigned salt) {
  Case k;
  k.n = n;
  std::mt19937 rng(unsigned(n * 31 + h.step * 7 + int(h.beta1 * 10)) + salt);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.5f, 1.5f);
  k.master.resize(n), k.m.resize(n), k.v.resize(n), k.grad.resize(n), k.w0.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    // Gradients over many magnitudes; moments of the same scale, as after some steps.
    const float sigma = std::pow(10.0f, -float(i % 7));
    k.master[i] = 0.05f * nd(rng);
    k.w0[i] = bf16_of(k.master[i]);
    k.grad[i] = bf16_of(sigma * nd(rng));
    k.m[i] = 0.5f * sigma * nd(rng);
    k.v[i] = sigma * sigma * ud(rng);
    if (i % 61 == 3) k.grad[i] = bf16_of(0.f), k.m[i] = 0.f, k.v[i] = 0.f;  // eps path: no step
  }
  const tune::cpu::AdamWScalars s = scalars(h);
  const float scale = static_cast<float>(h.grad_scale);
  k.rp.resize(n), k.rm.resize(n), k.rv.resize(n), k.sp.resize(n), k.sm.resize(n), k.sv.resize(n);
  k.fp = k.master, k.fm = k.m, k.fv = k.v;
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.step)),
               bc2 = 1.0 - std::pow(h.beta2, double(h.step));
  for (int64_t i = 0; i < n; ++i) {
    const double g = double(f32_of(k.grad[i])) * h.grad_scale;
    const double p0 = k.master[i], m0 = k.m[i], v0 = k.v[i];
    const double mi = h.beta1 * m0 + (1.0 - h.beta1) * g;
    const double vi = h.beta2 * v0 + (1.0 - h.beta2) * g * g;
    const double upd = h.lr / bc1 * mi / (std::sqrt(vi) / std::sqrt(bc2) + h.eps);
    k.rp[i] = p0 * (1.0 - h.lr * h.wd) - upd;
    k.rm[i] = mi;
    k.rv[i] = vi;
    k.sp[i] = std::abs(p0) + std::abs(upd) + h.lr;
    k.sm[i] = std::abs(m0) + std::abs(g) + 1e-30;
    k.sv[i] = std::abs(v0) + g * g + 1e-30;
    cpu_formula(k.fp[i], k.fm[i], k.fv[i], f32_of(k.grad[i]) * scale, s);
  }
  return k;
}

struct Errors {
  double master = 0, m = 0, v = 0;  // worst scaled error against the double reference
  size_t cpu_bits = 0, w_bits = 0;  // elements not the CPU kernel's bits; w != bf16(master)
};
constexpr double kTol = 2e-6;

Errors compare(const Case& k, const std::vector<float>& gp, const std::vector<float>& gm,
               const std::vector<float>& gv, const std::vector<bf16>& gw) {
  Errors e;
  for (int64_t i = 0; i < k.n; ++i) {
    const double a = std::abs(gp[i] - k.rp[i]) / k.sp[i], b = std::abs(gm[i] - k.rm[i]) / k.sm[i],
                 c = std::abs(gv[i] - k.rv[i]) / k.sv[i];
    if (!(a <= e.master)) e.master = a;  // NaN sticks
    if (!(b <= e.m)) e.m = b;
    if (!(c <= e.v)) e.v = c;
    e.cpu_bits += bits_of(gp[i]) != bits_of(k.fp[i]) || bits_of(gm[i]) != bits_of(k.fm[i]) ||
                  bits_of(gv[i]) != bits_of(k.fv[i]) || bits_of(gw[i]) != bits_of(bf16_of(k.fp[i]));
    e.w_bits += bits_of(gw[i]) != bits_of(bf16_of(gp[i]));
  }
  return e;
}

bool passes(const Errors& e) {
  return e.master <= kTol && e.m <= kTol && e.v <= kTol && e.cpu_bits == 0 && e.w_bits == 0;
}

void validate(int64_t n, const Hyper& h, int offset) {
  const Case k = make_case(n, h, unsigned(offset));
  float *dmaster, *dm, *dv;
  bf16 *dw, *dg;
  const size_t bytes4 = (n + 8) * sizeof(float), bytes2 = (n + 8) * sizeof(bf16);
  CHECK(cudaMalloc(&dmaster, bytes4));
  CHECK(cudaMalloc(&dm, bytes4));
  CHECK(cudaMalloc(&dv, bytes4));
  CHECK(cudaMalloc(&dw, bytes2));
  CHECK(cudaMalloc(&dg, bytes2));
  for (int var = 1; var <= kVariants; ++var) {
    CHECK(cudaMemcpy(dmaster + offset, k.master.data(), n * 4, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dm + offset, k.m.data(), n * 4, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dv + offset, k.v.data(), n * 4, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dw + offset, k.w0.data(), n * 2, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dg + offset, k.grad.data(), n * 2, cudaMemcpyHostToDevice));
    update(var, dmaster + offset, dw + offset, dg + offset, dm + offset, dv + offset, n, h);
    CHECK(cudaDeviceSynchronize());
    std::vector<float> gp(n), gm(n), gv(n);
    std::vector<bf16> gw(n);
    CHECK(cudaMemcpy(gp.data(), dmaster + offset, n * 4, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(gm.data(), dm + offset, n * 4, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(gv.data(), dv + offset, n * 4, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(gw.data(), dw + offset, n * 2, cudaMemcpyDeviceToHost));
    const Errors e = compare(k, gp, gm, gv, gw);
    if (!passes(e)) {
      std::printf(
          "FAIL variant %d n=%lld offset %d step %lld beta1 %.1f wd %.1f scale %.3g: master %.3g "
          "m %.3g v %.3g (tol %.0e); %zu elements not the CPU kernel's bits; %zu w != "
          "bf16(master)\n",
          var, (long long)n, offset, (long long)h.step, h.beta1, h.wd, h.grad_scale, e.master, e.m,
          e.v, kTol, e.cpu_bits, e.w_bits);
      ++g_failures;
    }
  }
  cudaFree(dmaster), cudaFree(dm), cudaFree(dv), cudaFree(dw), cudaFree(dg);
}

// Deterministic device values from a hash of the index: u in [0, 1).
__device__ float hash01(int64_t i, uint32_t salt) {
  uint32_t h = uint32_t(i) * 0x9E3779B1u ^ salt;
  h ^= h >> 16, h *= 0x85EBCA6Bu, h ^= h >> 13, h *= 0xC2B2AE35u, h ^= h >> 16;
  return float(h >> 8) * (1.0f / 16777216.0f);
}
__global__ void fill_state(float* master, bf16* w, bf16* grad, float* m, float* v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    master[i] = 0.1f * (hash01(i, 1) - 0.5f);
    w[i] = __float2bfloat16(master[i]);
    grad[i] = __float2bfloat16(1e-3f * (hash01(i, 2) - 0.5f));
    m[i] = 1e-4f * (hash01(i, 3) - 0.5f);
    v[i] = 1e-7f * hash01(i, 4);
  }
}

template <typename F>
float time_ms(F&& f, int reps = 20) {
  for (int i = 0; i < 3; ++i) f();
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  CHECK(cudaEventRecord(a, g_stream));
  for (int i = 0; i < reps; ++i) f();
  CHECK(cudaEventRecord(b, g_stream));
  CHECK(cudaEventSynchronize(b));
  float ms;
  CHECK(cudaEventElapsedTime(&ms, a, b));
  CHECK(cudaGetLastError());
  cudaEventDestroy(a), cudaEventDestroy(b);
  return ms / reps;
}

void bench(int64_t n) {
  float *master, *m, *v;
  bf16 *w, *grad;
  CHECK(cudaMalloc(&master, n * 4));
  CHECK(cudaMalloc(&m, n * 4));
  CHECK(cudaMalloc(&v, n * 4));
  CHECK(cudaMalloc(&w, n * 2));
  CHECK(cudaMalloc(&grad, n * 2));
  fill_state<<<4096, 256, 0, g_stream>>>(master, w, grad, m, v, n);
  CHECK(cudaStreamSynchronize(g_stream));
  const double counted = 30.0 * n, moved = 28.0 * n;
  for (int var = 1; var <= kVariants; ++var) {
    Hyper h{3e-4, 0.9, 0.95, 1e-8, 0.1, 1000, 0.5};
    const float ms = time_ms([&] {
      update(var, master, w, grad, m, v, n, h);
      ++h.step;
    });
    std::printf(
        "bf16 n=%11lld variant %d: %9.2f us  %6.0f GB/s (30 B/param, w read counted)  %6.0f "
        "GB/s (28 B/param moved)\n",
        (long long)n, var, ms * 1e3, counted / (ms * 1e6), moved / (ms * 1e6));
  }
  cudaFree(master), cudaFree(m), cudaFree(v), cudaFree(w), cudaFree(grad);
}

}  // namespace lab

int main(int argc, char** argv) {
  using namespace lab;
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs\n", prop.name, prop.multiProcessorCount);
  for (const Hyper& h : kConfigs)
    for (int64_t n : {1, 7, 33, 4097, (1 << 20) + 3})
      for (int offset : {0, 1}) validate(n, h, offset);
  validate(42'000'000, kConfigs[1], 0);
  std::printf("validation: %s\n", g_failures ? "FAILED"
                                             : "every variant matches the double reference and "
                                               "the CPU kernel's bits");
  bench(int64_t(1.24e9 / 16));
  bench(42'000'000);
  bench(4097);
  if (argc > 1) bench(std::atoll(argv[1]));
  return g_failures ? 1 : 0;
}
