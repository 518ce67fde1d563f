// Embedding lookup and its deterministic scatter-add on the GPU; measured in
// dev/kernels/embedding.cu. Design notes:
// - Forward: one block per row, 16-byte copies when the row width and pointers allow it, scalar
//   otherwise. Ids are checked on the device (embedding_kernels.h).
// - Backward, in three steps on the calling thread's stream; O(n c) for the rows plus
//   O(n log vocab) for the sort, where the per-row ownership scan it replaced was O(n^2):
//   1. A key per row: its id as u32, or vocab for an id outside [0, vocab) (reported, and sorted
//      past every real id so that its segment is skipped); the row index as the value.
//   2. CUB's radix sort of (key, row) pairs on the key's low bit_width(vocab) bits. Radix sort is
//      stable, so within one id the rows stay in ascending order.
//   3. One block per sorted position; a position whose key equals the previous one exits at once,
//      so each run of equal keys (a segment) is summed by exactly one block. Each thread owns
//      columns (16-byte packs when the width and pointers allow), sums the segment's dout rows
//      into f32 registers in row order (kRowsInFlight loads issued before their additions), and
//      writes dtable[id] = from_f(to_f(dtable[id]) + sum) once. The additions are those of a
//      serial loop over rows, whatever the launch order: bitwise reproducible, no atomics. A long
//      segment (a padding id on every other row) is summed by its one block, serially.
//   Keys, rows and CUB's scratch come from the stream-ordered pool (cudaMallocAsync), which graph
//   capture records as memory nodes, and nothing here waits for the device, so the backward can
//   be captured (today only inference captures graphs, and it never calls it).
#include <algorithm>
#include <bit>
#include <climits>
#include <cstdint>

#include <cub/cub.cuh>

#include "backend/cuda/embedding_common.cuh"
#include "backend/cuda/embedding_kernels.h"

namespace tune::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRowsInFlight = 8;

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

// keys [n] = ids as u32, or vocab where an id is outside [0, vocab); rows [n] = 0 .. n-1.
template <typename I>
__global__ void embedding_backward_keys(uint32_t* keys, int32_t* rows, const I* ids, int64_t n,
                                        int64_t vocab, unsigned long long* bad) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const int64_t id = static_cast<int64_t>(ids[r]);
  const bool ok = id >= 0 && id < vocab;
  if (!ok) report_bad_index(bad, r);
  keys[r] = static_cast<uint32_t>(ok ? id : vocab);
  rows[r] = static_cast<int32_t>(r);
}

// keys [n] sorted, rows [n] their rows (ascending within a key); block p sums the segment that
// starts at sorted position p, if one does, into dtable [vocab, c].
template <typename T, int V>
__global__ void embedding_backward_segments(T* __restrict__ dtable, const T* __restrict__ dout,
                                            const uint32_t* keys, const int32_t* rows, int64_t n,
                                            int64_t c, uint32_t vocab) {
  const int64_t p = blockIdx.x;
  const uint32_t key = keys[p];
  if (key >= vocab || (p > 0 && keys[p - 1] == key)) return;
  using P = Pack<T, V>;
  const int64_t packs = c / V;
  P* dst = reinterpret_cast<P*>(dtable + static_cast<int64_t>(key) * c);
  for (int64_t i = threadIdx.x; i < packs; i += blockDim.x) {
    float acc[V];
#pragma unroll
    for (int e = 0; e < V; ++e) acc[e] = 0.f;
    // The segment is a prefix of [q, n) in each step: once a key differs, every later one does.
    // Keys and rows are read whether or not they belong to it (clamped to n - 1), so that all
    // 2 kRowsInFlight reads are in flight at once and the dout reads wait on them only once.
    for (int64_t q = p;; q += kRowsInFlight) {
      int32_t row[kRowsInFlight];
#pragma unroll
      for (int k = 0; k < kRowsInFlight; ++k) {
        const int64_t s = min64(q + k, n - 1);
        const uint32_t kk = keys[s];
        const int32_t rr = rows[s];
        row[k] = q + k < n && kk == key ? rr : -1;
      }
      P v[kRowsInFlight];
#pragma unroll
      for (int k = 0; k < kRowsInFlight; ++k) {
        if (row[k] >= 0)
          v[k] = reinterpret_cast<const P*>(dout + static_cast<int64_t>(row[k]) * c)[i];
      }
#pragma unroll
      for (int k = 0; k < kRowsInFlight; ++k) {
        if (row[k] >= 0) {
#pragma unroll
          for (int e = 0; e < V; ++e) acc[e] += to_f(v[k].v[e]);
        }
      }
      if (row[kRowsInFlight - 1] < 0) break;
    }
    P d = dst[i];
#pragma unroll
    for (int e = 0; e < V; ++e) d.v[e] = from_f<T>(to_f(d.v[e]) + acc[e]);
    dst[i] = d;
  }
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

size_t round256(size_t b) {
  return (b + 255) / 256 * 256;
}

// Steps 1-3 of the backward (the notes above); `bad` may be null (no check). Requires
// 0 < n <= INT32_MAX and vocab < UINT32_MAX (the entry point checks).
template <typename T, typename I>
void embedding_backward_sorted(T* dtable, const T* dout, const I* ids, int64_t n, int64_t c,
                               int64_t vocab, unsigned long long* bad) {
  const int items = static_cast<int>(n);
  // The bits of key vocab; at least one, as with none CUB takes a copy path of its own.
  const int end_bit = std::max(1, static_cast<int>(std::bit_width(static_cast<uint32_t>(vocab))));
  size_t sort_bytes = 0;
  TUNE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), items, 0, end_bit,
      cudaStreamPerThread));
  const size_t words = round256(static_cast<size_t>(n) * 4);
  char* scratch = nullptr;
  TUNE_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&scratch), 4 * words + sort_bytes,
                                  cudaStreamPerThread));
  auto* keys_in = reinterpret_cast<uint32_t*>(scratch);
  auto* keys = reinterpret_cast<uint32_t*>(scratch + words);
  auto* rows_in = reinterpret_cast<int32_t*>(scratch + 2 * words);
  auto* rows = reinterpret_cast<int32_t*>(scratch + 3 * words);
  embedding_backward_keys<I>
      <<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0, cudaStreamPerThread>>>(
          keys_in, rows_in, ids, n, vocab, bad);
  TUNE_CUDA_CHECK(cudaGetLastError());
  TUNE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch + 4 * words, sort_bytes, keys_in, keys,
                                                  rows_in, rows, items, 0, end_bit,
                                                  cudaStreamPerThread));
  constexpr int V = 16 / sizeof(T);
  const auto grid = static_cast<unsigned>(n);
  const auto v = static_cast<uint32_t>(vocab);
  if (c % V == 0 && aligned16(dtable) && aligned16(dout)) {
    const int threads = static_cast<int>(std::clamp<int64_t>((c / V + 31) / 32 * 32, 32, kThreads));
    embedding_backward_segments<T, V>
        <<<grid, threads, 0, cudaStreamPerThread>>>(dtable, dout, keys, rows, n, c, v);
  } else {
    const int threads = static_cast<int>(std::clamp<int64_t>((c + 31) / 32 * 32, 32, kThreads));
    embedding_backward_segments<T, 1>
        <<<grid, threads, 0, cudaStreamPerThread>>>(dtable, dout, keys, rows, n, c, v);
  }
  TUNE_CUDA_CHECK(cudaGetLastError());
  TUNE_CUDA_CHECK(cudaFreeAsync(scratch, cudaStreamPerThread));
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
  if (n > INT32_MAX || vocab >= UINT32_MAX) {
    throw Error(str("cuda::embedding_backward: ", n, " rows over a vocabulary of ", vocab,
                    " exceed the sort's 32-bit rows and keys (at most ", INT32_MAX, " rows and ",
                    UINT32_MAX - 1, " ids)"));
  }
  const IndexCheck check;
  dispatch_storage(dtype, [&](auto tag) {
    using T = decltype(tag);
    dispatch_id(id_type, [&](auto itag) {
      using I = decltype(itag);
      embedding_backward_sorted<T, I>(static_cast<T*>(dtable), static_cast<const T*>(dout),
                                      static_cast<const I*>(ids), n, c, vocab, check.flag());
    });
  });
  return check.first_bad();
}

}  // namespace tune::cuda
