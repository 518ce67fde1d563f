// Lab: the products of one Llama-3.1-8B LoRA layer (1 x 2048 tokens, r 16) as the engine issues
// them through cuBLASLt (src/backend/cuda/gemm.cu, nn::Linear's forward and backward), each
// timed with the algorithm cuBLASLt's heuristic puts first (what the engine runs) and with the
// fastest of its first 32 candidates, against the bytes the product must move.
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++20 dev/kernels/lora_gemm.cu \
//        -lcublasLt -o lora_gemm_lab
// Row-major C [m, n] = alpha op(A) op(B) + beta C as the engine describes it (A [m, k] or, with
// ta, [k, m]; the same for B), issued as cuBLASLt's column-major C^T = op(B)^T op(A)^T.
// Timed: median of 20 launches (events), after 3 warm-up launches.
// Found (H100, 2026-11-23): the adapters' products run at ~1 TB/s, a launch's worth each (~13 us
// whatever their size below ~16 MB): pairs of one shape (k|v, gate|up) as one strided batch of 2
// take about what one takes (k|v adapter y 26.2 -> 13.2 us, k|v dB 27.0 -> 13.3, gate|up dxa^T
// 67.0 -> 49.3; ~89 us per layer, ~2.8 ms per 8B step), which nn::Linear's groups now do
// (ops::matmul_pair). The heuristic's first choice is not always the fastest candidate: y_q
// ([2048, 4096] from k 16, a transposed) 77 us where another takes 20, the q and o projections
// 115 us where another takes 101. Choosing by timing at the first call (kept in a per-GPU file
// so that resumed runs choose alike) gained ~0.6% of the 8B step but moved the 300-step bf16
// loss curve (tests/e2e/cuda_loss_curve.py) to 3.8% off the f32 CPU run's, and to 1.0-1.5% with
// only f32 split-K reductions allowed, timed or not: that curve moves with any change of
// algorithm (0.41% before the pairs, 0.90% with them), and the choosing was dropped.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#define CK(x)                                                                        \
  do {                                                                               \
    cudaError_t e_ = (x);                                                            \
    if (e_ != cudaSuccess) {                                                         \
      std::printf("CUDA %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)
#define LT(x)                                                                             \
  do {                                                                                    \
    cublasStatus_t s_ = (x);                                                              \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                    \
      std::printf("cuBLAS %s at %s:%d\n", cublasLtGetStatusName(s_), __FILE__, __LINE__); \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

struct Product {
  const char* name;
  bool ta, tb;
  int64_t m, n, k;
  float beta;
  int count;  // how many of these one layer runs
};

constexpr int64_t N = 2048, D = 4096, KV = 1024, F = 14336, R = 16;
constexpr size_t kWorkspace = size_t{32} << 20;

cublasLtHandle_t handle;
void* workspace;

struct Setup {
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatmulPreference_t pref;
};

// batch > 1: a strided batch, each operand's members `stride_*` elements apart.
Setup describe(const Product& p, int batch = 1, int64_t stride_a = 0, int64_t stride_b = 0,
               int64_t stride_c = 0) {
  Setup s{};
  LT(cublasLtMatmulDescCreate(&s.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t first = p.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t second = p.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  LT(cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_TRANSA, &first, sizeof first));
  LT(cublasLtMatmulDescSetAttribute(s.op, CUBLASLT_MATMUL_DESC_TRANSB, &second, sizeof second));
  const uint64_t m = p.m, n = p.n, k = p.k;
  const uint64_t b_rows = !p.tb ? n : k, b_cols = !p.tb ? k : n;
  const uint64_t a_rows = !p.ta ? k : m, a_cols = !p.ta ? m : k;
  LT(cublasLtMatrixLayoutCreate(&s.a, CUDA_R_16BF, b_rows, b_cols, b_rows));
  LT(cublasLtMatrixLayoutCreate(&s.b, CUDA_R_16BF, a_rows, a_cols, a_rows));
  LT(cublasLtMatrixLayoutCreate(&s.c, CUDA_R_16BF, n, m, n));
  if (batch > 1) {
    for (auto [layout, stride] : {std::pair{s.a, stride_b}, {s.b, stride_a}, {s.c, stride_c}}) {
      LT(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                          sizeof batch));
      LT(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                          &stride, sizeof stride));
    }
  }
  LT(cublasLtMatmulPreferenceCreate(&s.pref));
  LT(cublasLtMatmulPreferenceSetAttribute(s.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                          &kWorkspace, sizeof kWorkspace));
  return s;
}

float time_algo(const Setup& s, const cublasLtMatmulAlgo_t& algo, const void* a, const void* b,
                void* c, float beta) {
  const float alpha = 1.f;
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int i = 0; i < 23; ++i) {
    CK(cudaEventRecord(e0));
    if (cublasLtMatmul(handle, s.op, &alpha, b, s.a, a, s.b, &beta, c, s.c, c, s.c, &algo,
                       workspace, kWorkspace, 0) != CUBLAS_STATUS_SUCCESS)
      return -1.f;
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float t = 0;
    CK(cudaEventElapsedTime(&t, e0, e1));
    if (i >= 3) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return ms[ms.size() / 2];
}

int main() {
  LT(cublasLtCreate(&handle));
  CK(cudaMalloc(&workspace, kWorkspace));
  // One layer, as nn::Linear issues it (linear.cpp): q|k|v and gate|up as groups sharing x A^T.
  const Product products[] = {
      // forward
      {"fwd qkv x.A_stack^T [48,N]", false, true, 3 * R, N, D, 0, 1},
      {"fwd q adapter y [N,4096] k16", true, true, N, D, R, 0, 1},
      {"fwd k|v adapter y [N,1024] k16", true, true, N, KV, R, 0, 2},
      {"fwd q|o base [N,4096]", false, true, N, D, D, 1, 2},
      {"fwd k|v base [N,1024]", false, true, N, KV, D, 1, 2},
      {"fwd o x.A^T [N,16]", false, true, N, R, D, 0, 1},
      {"fwd o|down adapter y [N,4096]", false, true, N, D, R, 0, 2},
      {"fwd gu x.A_stack^T [32,N]", false, true, 2 * R, N, D, 0, 1},
      {"fwd g|u adapter y [N,14336]", true, true, N, F, R, 0, 2},
      {"fwd g|u base [N,14336]", false, true, N, F, D, 1, 2},
      {"fwd down h.A^T [N,16] k14336", false, true, N, R, F, 0, 1},
      {"fwd down base [N,4096] k14336", false, true, N, D, F, 1, 1},
      // backward, single Linears (o: out 4096 in 4096; down: out 4096 in 14336)
      {"bwd o|down dB [4096,16] k=N", true, false, D, R, N, 1, 2},
      {"bwd o|down dxa [N,16] k4096", false, false, N, R, D, 0, 2},
      {"bwd o dA [16,4096] k=N", true, false, R, D, N, 1, 1},
      {"bwd down dA [16,14336] k=N", true, false, R, F, N, 1, 1},
      {"bwd o dx [N,4096] k16", false, false, N, D, R, 0, 1},
      {"bwd down dx [N,14336] k16", false, false, N, F, R, 0, 1},
      {"bwd o base dx [N,4096]", false, false, N, D, D, 1, 1},
      {"bwd down base dx [N,14336] k4096", false, false, N, F, D, 1, 1},
      // backward, groups
      {"bwd q dB [4096,16] k=N", true, true, D, R, N, 1, 1},
      {"bwd k|v dB [1024,16] k=N", true, true, KV, R, N, 1, 2},
      {"bwd g|u dB [14336,16] k=N", true, true, F, R, N, 1, 2},
      {"bwd q dxa^T [16,N] k4096", true, true, R, N, D, 0, 1},
      {"bwd k|v dxa^T [16,N] k1024", true, true, R, N, KV, 0, 2},
      {"bwd g|u dxa^T [16,N] k14336", true, true, R, N, F, 0, 2},
      {"bwd qkv dA_stack [48,4096] k=N", false, false, 3 * R, D, N, 0, 1},
      {"bwd gu dA_stack [32,4096] k=N", false, false, 2 * R, D, N, 0, 1},
      {"bwd qkv|gu dx [N,4096] k48|32", true, false, N, D, 3 * R, 0, 2},
      {"bwd q base dx k4096", false, false, N, D, D, 1, 1},
      {"bwd k|v base dx k1024", false, false, N, D, KV, 1, 2},
      {"bwd g|u base dx k14336", false, false, N, D, F, 1, 2},
  };
  const size_t big = size_t{N} * F;
  void *a, *b, *c;
  CK(cudaMalloc(&a, 2 * big * 2));
  CK(cudaMalloc(&b, 2 * size_t{F} * D * 2));
  CK(cudaMalloc(&c, 2 * big * 2));
  CK(cudaMemset(a, 0, 2 * big * 2));
  CK(cudaMemset(b, 0, 2 * size_t{F} * D * 2));
  CK(cudaMemset(c, 0, 2 * big * 2));
  std::printf("%-34s %3s %9s %9s %6s %8s %8s %7s\n", "product", "x", "engine_us", "best_us",
              "algos", "GB/s_eng", "TFLOP/s", "gain_us");
  double total_engine = 0, total_best = 0, adapter_engine = 0, adapter_best = 0;
  for (const Product& p : products) {
    Setup s = describe(p);
    cublasLtMatmulHeuristicResult_t results[32];
    int found = 0;
    LT(cublasLtMatmulAlgoGetHeuristic(handle, s.op, s.a, s.b, s.c, s.c, s.pref, 32, results,
                                      &found));
    const float engine = time_algo(s, results[0].algo, a, b, c, p.beta);
    float best = engine;
    for (int i = 1; i < found; ++i) {
      const float t = time_algo(s, results[i].algo, a, b, c, p.beta);
      if (t > 0 && t < best) best = t;
    }
    const double bytes = 2.0 * (p.m * p.k + p.k * p.n + p.m * p.n * (p.beta != 0 ? 2 : 1));
    const double flops = 2.0 * p.m * p.n * p.k;
    std::printf("%-34s %3d %9.1f %9.1f %6d %8.0f %8.1f %7.1f\n", p.name, p.count, engine * 1e3,
                best * 1e3, found, bytes / (engine * 1e-3) / 1e9, flops / (engine * 1e-3) / 1e12,
                (engine - best) * 1e3 * p.count);
    total_engine += engine * p.count;
    total_best += best * p.count;
    const bool adapter = p.m == R || p.n == R || p.k == R || p.m == 2 * R || p.m == 3 * R ||
                         p.k == 2 * R || p.k == 3 * R;
    if (adapter) {
      adapter_engine += engine * p.count;
      adapter_best += best * p.count;
    }
  }
  // The heuristic's first choice when split-K may add partial sums only in f32 (none|compute) or
  // not split at all (none), against its first choice with every reduction allowed (the engine),
  // and how that one splits: SPLITK_NUM, REDUCTION_SCHEME (1 in place, 2 f32, 4 output dtype).
  std::printf("\n%-34s %9s %6s %5s %9s %9s\n", "first choice by reductions", "all_us", "splitK",
              "red", "f32_us", "none_us");
  double by_mask[3] = {0, 0, 0};
  for (const Product& p : products) {
    float t[3];
    int splitk = 0, scheme = 0;
    const uint32_t masks[3] = {
        CUBLASLT_REDUCTION_SCHEME_MASK,
        CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE,
        CUBLASLT_REDUCTION_SCHEME_NONE};
    for (int v = 0; v < 3; ++v) {
      Setup s = describe(p);
      LT(cublasLtMatmulPreferenceSetAttribute(s.pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                              &masks[v], sizeof masks[v]));
      cublasLtMatmulHeuristicResult_t result;
      int found = 0;
      LT(cublasLtMatmulAlgoGetHeuristic(handle, s.op, s.a, s.b, s.c, s.c, s.pref, 1, &result,
                                        &found));
      t[v] = found ? time_algo(s, result.algo, a, b, c, p.beta) : -1.f;
      by_mask[v] += t[v] * p.count;
      if (v == 0) {
        size_t written = 0;
        cublasLtMatmulAlgoConfigGetAttribute(&result.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk,
                                             sizeof splitk, &written);
        cublasLtMatmulAlgoConfigGetAttribute(&result.algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
                                             &scheme, sizeof scheme, &written);
      }
    }
    std::printf("%-34s %9.1f %6d %5d %9.1f %9.1f\n", p.name, t[0] * 1e3, splitk, scheme, t[1] * 1e3,
                t[2] * 1e3);
  }
  std::printf("per layer by reductions allowed: all %.3f ms, f32 %.3f ms, none %.3f ms\n",
              by_mask[0], by_mask[1], by_mask[2]);

  // Pairs of same-shaped products (k|v, gate|up) as one strided batch of 2 against two calls.
  std::printf("\n%-34s %9s %9s %9s %9s\n", "pair", "2x_eng_us", "2x_best", "batch_eng",
              "batch_best");
  for (const Product& p : products) {
    if (p.count != 2 || p.name[0] == 'f' && p.beta != 0 && p.n == D) continue;
    const int64_t sa = p.m * p.k, sb = p.k * p.n, sc = p.m * p.n;
    float times[2][2];
    for (int batched = 0; batched < 2; ++batched) {
      Setup s = batched ? describe(p, 2, sa, sb, sc) : describe(p);
      cublasLtMatmulHeuristicResult_t results[32];
      int found = 0;
      LT(cublasLtMatmulAlgoGetHeuristic(handle, s.op, s.a, s.b, s.c, s.c, s.pref, 32, results,
                                        &found));
      const float scale = batched ? 1.f : 2.f;
      float best = time_algo(s, results[0].algo, a, b, c, p.beta);
      times[batched][0] = best * scale;
      for (int i = 1; i < found; ++i) {
        const float t = time_algo(s, results[i].algo, a, b, c, p.beta);
        if (t > 0 && t < best) best = t;
      }
      times[batched][1] = best * scale;
    }
    std::printf("%-34s %9.1f %9.1f %9.1f %9.1f\n", p.name, times[0][0] * 1e3, times[0][1] * 1e3,
                times[1][0] * 1e3, times[1][1] * 1e3);
  }
  std::printf(
      "per layer: all products %.3f ms (best algos %.3f); adapter products %.3f ms (%.3f)\n",
      total_engine, total_best, adapter_engine, adapter_best);
  std::printf("x 32 layers: %.1f ms (%.1f); adapters %.1f ms (%.1f)\n", 32 * total_engine,
              32 * total_best, 32 * adapter_engine, 32 * adapter_best);
  return 0;
}
