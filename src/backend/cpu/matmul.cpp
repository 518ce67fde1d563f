// GEMM through CBLAS (OpenBLAS, OpenMP build). Design notes:
// - Row-major with explicit leading dimensions, so callers can multiply strided slices in
//   place: attention reads one head of a (B, T, H, D) tensor as a (T, D) matrix with row stride
//   H * D, without copies or transposes.
// - OpenBLAS splits a GEMM over its output, never over K, so its result is deterministic for a
//   given thread count. Called inside an OpenMP parallel region it runs on one thread.
// - Degenerate shapes are handled here: BLAS rejects a leading dimension of 0 (K == 0) and a
//   zero-sized product still owes c = beta * c.
#include <cblas.h>

#include <algorithm>
#include <climits>

#include "backend/cpu/cpu_kernels.h"

namespace tune::cpu {

namespace {

CBLAS_TRANSPOSE to_cblas(Trans t) {
  return t == Trans::yes ? CblasTrans : CblasNoTrans;
}

blasint to_blasint(int64_t v) {
  return static_cast<blasint>(std::max<int64_t>(v, 1));
}

// c = beta * c for an (m, n) block with row stride ldc; beta == 0 writes zeros without reading.
template <typename T>
void scale_block(T* c, int64_t m, int64_t n, int64_t ldc, T beta) {
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    if (beta == T(0)) {
      std::fill(row, row + n, T(0));
    } else {
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
  }
}

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, float alpha,
               const float* a, blasint lda, const float* b, blasint ldb, float beta, float* c,
               blasint ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k,
               double alpha, const double* a, blasint lda, const double* b, blasint ldb,
               double beta, double* c, blasint ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace

template <typename T>
void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == T(0)) {
    if (beta != T(1)) scale_block(c, m, n, ldc, beta);
    return;
  }
  blas_gemm(to_cblas(ta), to_cblas(tb), to_blasint(m), to_blasint(n), to_blasint(k), alpha, a,
            to_blasint(lda), b, to_blasint(ldb), beta, c, to_blasint(ldc));
}

template void gemm<float>(Trans, Trans, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(Trans, Trans, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace tune::cpu
