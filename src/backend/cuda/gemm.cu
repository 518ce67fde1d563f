// GEMMs through cuBLASLt. cuBLASLt is column-major and tune's tensors are row-major: a row-major
// (r, c) matrix with row stride ld is, read column-major, its (c, r) transpose with the same ld.
// So row-major C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T: the same
// call with the operands swapped and every matrix described by its transposed shape.
#include <cublasLt.h>

#include <algorithm>
#include <memory>
#include <unordered_map>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/elementwise_kernels.h"
#include "backend/cuda/gemv_kernels.h"

namespace tune::cuda {

namespace {

#define TUNE_CUBLAS_CHECK(stmt)                                                             \
  do {                                                                                      \
    cublasStatus_t tune_status_ = (stmt);                                                   \
    if (tune_status_ != CUBLAS_STATUS_SUCCESS)                                              \
      throw ::tune::Error(::tune::str("cuBLAS error ", cublasLtGetStatusName(tune_status_), \
                                      " in ", #stmt, " at ", __FILE__, ":", __LINE__));     \
  } while (0)

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // what cuBLASLt asks for on Hopper

// One cuBLASLt handle and workspace per thread, as the stream is per thread.
struct Lt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  Lt() {
    TUNE_CUBLAS_CHECK(cublasLtCreate(&handle));
    TUNE_CUDA_CHECK(cudaMalloc(&workspace, kWorkspaceBytes));
  }
  ~Lt() {
    cudaFree(workspace);
    cublasLtDestroy(handle);
  }
};

Lt& lt() {
  thread_local Lt instance;
  return instance;
}

cudaDataType_t data_type(DType t) {
  switch (t) {
    case DType::f32:
      return CUDA_R_32F;
    case DType::bf16:
      return CUDA_R_16BF;
    case DType::f16:
      return CUDA_R_16F;
    default:
      break;
  }
  throw Error(str("cuda::gemm: ", dtype_name(t), " is not supported (f32, bf16, f16)"));
}

// Owns the descriptors of one call.
struct Descriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Descriptors() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// The largest power of two (up to 256) dividing the address: cuBLASLt's heuristics assume
// 256-byte aligned operands unless told otherwise, and views into larger buffers often are not.
uint32_t alignment(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && address % a != 0) a /= 2;
  return a;
}

}  // namespace

namespace {

// What cuBLASLt's heuristic depends on: asked once per distinct product, then remembered (a
// training step runs the same few hundred products every step, and the query costs tens of
// microseconds of host time each).
struct Key {
  DType dtype, c_dtype;
  Trans ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  uint32_t align_a, align_b, align_c;
  bool bias;
  Epilogue epilogue;
  int batch;  // a strided batch's members (1: one product) and their strides
  int64_t stride_a, stride_b, stride_c;
  bool operator==(const Key&) const = default;
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 0;
    for (int64_t v :
         {int64_t(k.dtype), int64_t(k.c_dtype), int64_t(k.ta), int64_t(k.tb), k.m, k.n, k.k, k.lda,
          k.ldb, k.ldc, int64_t(k.align_a), int64_t(k.align_b), int64_t(k.align_c), int64_t(k.bias),
          int64_t(k.epilogue), int64_t(k.batch), k.stride_a, k.stride_b, k.stride_c})
      h = h * 1000003u ^ std::hash<int64_t>()(v);
    return h;
  }
};

// One product's descriptors and its chosen algorithm, kept for every later call of the same key.
struct Plan {
  Descriptors d;
  cublasLtMatmulAlgo_t algo{};
};

std::shared_ptr<Plan> make_plan(const Key& key) {
  auto plan = std::make_shared<Plan>();
  Descriptors& d = plan->d;
  const cudaDataType_t type = data_type(key.dtype), c_type = data_type(key.c_dtype);
  TUNE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  // Column-major: C^T (n, m) = op(B)^T (n, k) @ op(A)^T (k, m); first operand b, second a.
  const cublasOperation_t op_first = key.tb == Trans::yes ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = key.ta == Trans::yes ? CUBLAS_OP_T : CUBLAS_OP_N;
  TUNE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                                   sizeof op_first));
  TUNE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                                   sizeof op_second));
  // The bias runs along the rows of the column-major C^T (n, m): one value per column of c; aux
  // is laid out as C^T, (n, m) with leading dimension n.
  cublasLtEpilogue_t epilogue = key.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  if (key.epilogue == Epilogue::gelu)
    epilogue = key.bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
  if (key.epilogue == Epilogue::dgelu) epilogue = CUBLASLT_EPILOGUE_DGELU;
  TUNE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                   sizeof epilogue));
  if (key.bias) {
    TUNE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                     &c_type, sizeof c_type));
  }
  if (key.epilogue != Epilogue::none) {
    const auto aux_ld = static_cast<int64_t>(key.n);
    TUNE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        d.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, &c_type, sizeof c_type));
    TUNE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                     &aux_ld, sizeof aux_ld));
  }
  const auto m = static_cast<uint64_t>(key.m), n = static_cast<uint64_t>(key.n),
             k = static_cast<uint64_t>(key.k);
  // Stored shapes, read column-major: b is (k, n) or, transposed, (n, k) row-major.
  const uint64_t b_rows = key.tb == Trans::no ? n : k, b_cols = key.tb == Trans::no ? k : n;
  const uint64_t a_rows = key.ta == Trans::no ? k : m, a_cols = key.ta == Trans::no ? m : k;
  TUNE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.a, type, b_rows, b_cols, key.ldb));
  TUNE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.b, type, a_rows, a_cols, key.lda));
  TUNE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.c, c_type, n, m, key.ldc));
  if (key.batch > 1) {  // d.a describes b and d.b describes a (the swap above)
    for (const auto& [layout, stride] :
         {std::pair{d.a, key.stride_b}, {d.b, key.stride_a}, {d.c, key.stride_c}}) {
      TUNE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                         &key.batch, sizeof key.batch));
      TUNE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
          layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
    }
  }

  TUNE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d.pref));
  TUNE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &kWorkspaceBytes, sizeof kWorkspaceBytes));
  for (const auto& [attribute, value] :
       {std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.align_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.align_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.align_c},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.align_c}}) {
    TUNE_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(d.pref, attribute, value, sizeof(uint32_t)));
  }
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  TUNE_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt().handle, d.op, d.a, d.b, d.c, d.c, d.pref, 1,
                                                   &heuristic, &found));
  TUNE_CHECK(found > 0, "cuda::gemm: cuBLASLt has no algorithm for ", dtype_name(key.dtype), " -> ",
             dtype_name(key.c_dtype), " (", key.m, " x ", key.k, ") @ (", key.k, " x ", key.n, ")");
  plan->algo = heuristic.algo;
  return plan;
}

// The product through cuBLASLt, its plan made once per key.
void lt_matmul(DType dtype, DType c_dtype, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
               float alpha, const void* a, int64_t lda, const void* b, int64_t ldb, float beta,
               void* c, int64_t ldc, const void* bias, Epilogue epilogue, void* aux,
               const Batch& batch, const void* c_in) {
  if (!c_in) c_in = c;
  // A batch's members are described by the first one's alignment and the second's (the stride).
  auto aligned = [&](const void* p, int64_t stride, DType t) {
    const void* second = static_cast<const char*>(p) + stride * dtype_size(t);
    return std::min(alignment(p), batch.count > 1 ? alignment(second) : 256u);
  };
  const bool batched = batch.count > 1;
  const uint32_t align_c =
      std::min(aligned(c, batch.stride_c, c_dtype), aligned(c_in, batch.stride_c, c_dtype));
  const Key key{dtype,
                c_dtype,
                ta,
                tb,
                m,
                n,
                k,
                lda,
                ldb,
                ldc,
                aligned(a, batch.stride_a, dtype),
                aligned(b, batch.stride_b, dtype),
                align_c,
                bias != nullptr,
                epilogue,
                batch.count,
                batched ? batch.stride_a : 0,
                batched ? batch.stride_b : 0,
                batched ? batch.stride_c : 0};
  thread_local std::unordered_map<Key, std::shared_ptr<Plan>, KeyHash> plans;
  if (plans.size() > 4096) plans.clear();  // shapes that keep changing (serving's prefills)
  std::shared_ptr<Plan>& plan = plans[key];
  if (!plan) plan = make_plan(key);
  Descriptors& d = plan->d;
  Lt& h = lt();
  if (bias) {
    TUNE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                     sizeof bias));
  }
  if (epilogue != Epilogue::none) {
    TUNE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        d.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
  }
  // k == 0 is a valid product (C = beta C); cuBLASLt handles it.
  TUNE_CUBLAS_CHECK(cublasLtMatmul(h.handle, d.op, &alpha, b, d.a, a, d.b, &beta, c_in, d.c, c, d.c,
                                   &plan->algo, h.workspace, kWorkspaceBytes, cudaStreamPerThread));
}

}  // namespace

void gemm(DType dtype, DType c_dtype, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
          float alpha, const void* a, int64_t lda, const void* b, int64_t ldb, float beta, void* c,
          int64_t ldc, const void* bias, Epilogue epilogue, void* aux, const void* c_in) {
  if (m == 0 || n == 0) return;
  TUNE_CHECK(!c_in || epilogue == Epilogue::none, "cuda::gemm: c_in takes no epilogue");
  TUNE_CHECK(epilogue == Epilogue::none || (beta == 0.f && ldc == n && aux),
             "cuda::gemm: an epilogue needs beta 0, an unstrided c and aux");
  TUNE_CHECK(epilogue != Epilogue::dgelu || !bias, "cuda::gemm: dgelu takes no bias");
  // A few rows times a Linear's weight (b = W [n, k], transposed): decoding's products, bound by
  // reading W, go to the warp-per-column kernel. cuBLASLt wants the bias and aux 16-byte aligned
  // (and aux rows a multiple of 8 elements).
  const bool gemv_rows =
      c_dtype == dtype && m <= kGemvMaxRows && ta == Trans::no && tb == Trans::yes && k > 0;
  const bool fused = !gemv_rows && (!bias || alignment(bias) >= 16) &&
                     (epilogue == Epilogue::none || (alignment(aux) >= 16 && n % 8 == 0));
  if (!fused) {               // the product, then the bias and the epilogue as passes of their own
    if (c_in && c_in != c) {  // c_in into c first: what follows reads c
      const size_t row = static_cast<size_t>(n) * dtype_size(c_dtype);
      TUNE_CUDA_CHECK(cudaMemcpy2DAsync(c, static_cast<size_t>(ldc) * dtype_size(c_dtype), c_in,
                                        static_cast<size_t>(ldc) * dtype_size(c_dtype), row,
                                        static_cast<size_t>(m), cudaMemcpyDeviceToDevice,
                                        cudaStreamPerThread));
    }
    void* product = epilogue == Epilogue::gelu ? aux : c;
    if (gemv_rows)
      gemv(dtype, m, n, k, alpha, a, lda, b, ldb, beta, product, ldc);
    else
      gemm(dtype, c_dtype, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, product, ldc);
    if (bias) {
      TUNE_CHECK(ldc == n, "cuda::gemm: a bias on a strided c");
      add_bias(c_dtype, product, bias, m, n);
    }
    if (epilogue == Epilogue::gelu) gelu_tanh_forward(c_dtype, c, aux, m * n);
    if (epilogue == Epilogue::dgelu) gelu_tanh_backward(c_dtype, c, c, aux, m * n);
    return;
  }
  lt_matmul(dtype, c_dtype, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, epilogue,
            aux, Batch{}, c_in);
}

void gemm_batched(DType dtype, DType c_dtype, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k,
                  float alpha, const void* a, int64_t lda, const void* b, int64_t ldb, float beta,
                  void* c, int64_t ldc, const Batch& batch) {
  TUNE_CHECK(batch.count == 1 || (batch.count > 1 && batch.stride_a >= 0 && batch.stride_b >= 0 &&
                                  batch.stride_c > 0),
             "cuda::gemm_batched: ", batch.count, " members with strides ", batch.stride_a, ", ",
             batch.stride_b, ", ", batch.stride_c, " (a count >= 1, strides >= 0, c's > 0)");
  if (m == 0 || n == 0) return;
  const bool gemv_rows =
      c_dtype == dtype && m <= kGemvMaxRows && ta == Trans::no && tb == Trans::yes;
  if (batch.count == 1 || gemv_rows) {  // decoding's few rows: the gemv kernel, member by member
    const size_t size = dtype_size(dtype), c_size = dtype_size(c_dtype);
    for (int64_t i = 0; i < batch.count; ++i) {
      gemm(dtype, c_dtype, ta, tb, m, n, k, alpha,
           static_cast<const char*>(a) + i * batch.stride_a * size, lda,
           static_cast<const char*>(b) + i * batch.stride_b * size, ldb, beta,
           static_cast<char*>(c) + i * batch.stride_c * c_size, ldc);
    }
    return;
  }
  lt_matmul(dtype, c_dtype, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nullptr,
            Epilogue::none, nullptr, batch, nullptr);
}

}  // namespace tune::cuda
