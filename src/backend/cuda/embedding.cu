// Embedding lookup and its deterministic scatter-add on the GPU; measured in
// dev/kernels/embedding.cu. Design notes:
// - Forward: one block per row, 16-byte copies when the row width and pointers allow it, scalar
//   otherwise. Ids are checked on the device (embedding_kernels.h).
// - Backward: block r handles row r only if no earlier row holds the same id (it scans ids[0, r)
//   with __syncthreads_or); the owning block then walks ids[r, n) in chunks, adds every matching
//   dout row to an f32 accumulator of the whole row in shared memory (each thread owns its
//   columns: no races), and finally dtable[id] += accumulator. The order of additions is row
//   order whatever the launch order, so dtable is bitwise reproducible and needs no atomics.
#include <algorithm>
#include <cstdint>

#include "backend/cuda/embedding_common.cuh"
#include "backend/cuda/embedding_kernels.h"

namespace tune::cuda {

namespace {

constexpr int kThreads = 256;

template <typename T, typename I, int V>
__global__ void embedding_forward_rows(T* out, const I* ids, const T* table, int64_t c,
                                       int64_t vocab, unsigned long long* bad) {
  const int64_t r = blockIdx.x;
  const int64_t id = static_cast<int64_t>(ids[r]);
  const bool ok = id >= 0 && id < vocab;
  if (!ok && threadIdx.x == 0) report_bad_index(bad, r);
  using P = Pack<T, V>;
  P* dst = reinterpret_cast<P*>(out + r * c);
  const P* src = reinterpret_cast<const P*>(table + (ok ? id : 0) * c);
  for (int64_t i = threadIdx.x; i < c / V; i += blockDim.x) {
    P v = src[i];
    if (!ok) {
      for (int e = 0; e < V; ++e) v.v[e] = from_f<T>(0.f);
    }
    dst[i] = v;
  }
}

template <typename T, typename I>
__global__ void embedding_backward_owned(T* dtable, const T* dout, const I* ids, int64_t n,
                                         int64_t c, int64_t vocab, unsigned long long* bad) {
  extern __shared__ float acc[];  // (c)
  __shared__ unsigned char hit[kThreads];
  const int64_t r = blockIdx.x;
  const I id = ids[r];
  if (static_cast<int64_t>(id) < 0 || static_cast<int64_t>(id) >= vocab) {
    if (threadIdx.x == 0) report_bad_index(bad, r);
    return;
  }
  for (int64_t m0 = 0; m0 < r; m0 += blockDim.x) {
    const int64_t m = m0 + threadIdx.x;
    if (__syncthreads_or(m < r && ids[m] == id)) return;  // an earlier row owns this id
  }
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) acc[j] = 0.f;
  for (int64_t m0 = r; m0 < n; m0 += blockDim.x) {
    const int64_t m = m0 + threadIdx.x;
    const bool h = m < n && ids[m] == id;
    hit[threadIdx.x] = h;
    if (!__syncthreads_or(h)) continue;
    const int count = static_cast<int>(std::min<int64_t>(blockDim.x, n - m0));
    for (int k = 0; k < count; ++k) {
      if (!hit[k]) continue;
      const T* src = dout + (m0 + k) * c;
      for (int64_t j = threadIdx.x; j < c; j += blockDim.x) acc[j] += to_f(src[j]);
    }
    __syncthreads();  // hit[] is rewritten next chunk
  }
  T* dst = dtable + static_cast<int64_t>(id) * c;
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) dst[j] = from_f<T>(to_f(dst[j]) + acc[j]);
}

template <typename F>
void dispatch_id(DType t, F&& f) {
  if (t == DType::i32) {
    f(int32_t{});
  } else {
    f(int64_t{});
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

int64_t embedding_forward(DType dtype, DType id_type, void* out, const void* ids, const void* table,
                          int64_t n, int64_t c, int64_t vocab) {
  if (n == 0 || c == 0) return -1;
  const IndexCheck check;
  dispatch_storage(dtype, [&](auto tag) {
    using T = decltype(tag);
    dispatch_id(id_type, [&](auto itag) {
      using I = decltype(itag);
      constexpr int V = 16 / sizeof(T);
      const int threads =
          static_cast<int>(std::clamp<int64_t>((c / V + 31) / 32 * 32, 32, kThreads));
      auto* o = static_cast<T*>(out);
      const auto* tb = static_cast<const T*>(table);
      const auto* id = static_cast<const I*>(ids);
      if (c % V == 0 && aligned16(out) && aligned16(table)) {
        embedding_forward_rows<T, I, V>
            <<<static_cast<unsigned>(n), threads, 0, cudaStreamPerThread>>>(o, id, tb, c, vocab,
                                                                            check.flag());
      } else {
        embedding_forward_rows<T, I, 1>
            <<<static_cast<unsigned>(n), kThreads, 0, cudaStreamPerThread>>>(o, id, tb, c, vocab,
                                                                             check.flag());
      }
    });
  });
  TUNE_CUDA_CHECK(cudaGetLastError());
  return check.first_bad();
}

int64_t embedding_backward(DType dtype, DType id_type, void* dtable, const void* dout,
                           const void* ids, int64_t n, int64_t c, int64_t vocab) {
  if (n == 0 || c == 0) return -1;
  const IndexCheck check;
  const size_t smem = static_cast<size_t>(c) * sizeof(float);
  if (smem > 200 * 1024) {
    throw Error(str("cuda::embedding_backward: rows of ", c,
                    " columns exceed the shared-memory accumulator (at most 51200 columns)"));
  }
  dispatch_storage(dtype, [&](auto tag) {
    using T = decltype(tag);
    dispatch_id(id_type, [&](auto itag) {
      using I = decltype(itag);
      auto kernel = embedding_backward_owned<T, I>;
      if (smem > 48 * 1024) {
        TUNE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(smem)));
      }
      kernel<<<static_cast<unsigned>(n), kThreads, smem, cudaStreamPerThread>>>(
          static_cast<T*>(dtable), static_cast<const T*>(dout), static_cast<const I*>(ids), n, c,
          vocab, check.flag());
    });
  });
  TUNE_CUDA_CHECK(cudaGetLastError());
  return check.first_bad();
}

}  // namespace tune::cuda
