// Writing new keys and values into the paged cache: one block per row, the row's Hkv * D elements
// copied as 16-byte words when the row size and pointers allow it (4-byte words otherwise, then
// bytes). Slots are read on the device; a row whose slot is out of range is skipped.
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kv_cache_kernels.h"

namespace tune::cuda {

namespace {

template <typename W, typename I>
__global__ void write_rows(char* k_pages, char* v_pages, const char* k, const char* v,
                           const I* slots, int64_t row_bytes, int64_t total_slots) {
  const int64_t r = blockIdx.x;
  const int64_t slot = static_cast<int64_t>(slots[r]);
  if (slot < 0 || slot >= total_slots) return;
  const int64_t words = row_bytes / static_cast<int64_t>(sizeof(W));
  const W* ks = reinterpret_cast<const W*>(k + r * row_bytes);
  const W* vs = reinterpret_cast<const W*>(v + r * row_bytes);
  W* kd = reinterpret_cast<W*>(k_pages + slot * row_bytes);
  W* vd = reinterpret_cast<W*>(v_pages + slot * row_bytes);
  for (int64_t i = threadIdx.x; i < words; i += blockDim.x) {
    kd[i] = ks[i];
    vd[i] = vs[i];
  }
}

template <typename W, typename I>
void launch(void* kp, void* vp, const void* k, const void* v, const void* slots, int64_t n,
            int64_t row_bytes, int64_t total_slots) {
  const int64_t words = row_bytes / static_cast<int64_t>(sizeof(W));
  const int threads = words >= 256 ? 256 : static_cast<int>((words + 31) / 32 * 32);
  write_rows<W, I><<<static_cast<unsigned>(n), threads, 0, cudaStreamPerThread>>>(
      static_cast<char*>(kp), static_cast<char*>(vp), static_cast<const char*>(k),
      static_cast<const char*>(v), static_cast<const I*>(slots), row_bytes, total_slots);
}

}  // namespace

void kv_cache_write(void* k_pages, void* v_pages, const void* k, const void* v, const void* slots,
                    DType slot_type, int64_t n, int64_t row_bytes, int64_t total_slots) {
  if (n == 0 || row_bytes == 0) return;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(k_pages) |
                         reinterpret_cast<uintptr_t>(v_pages) | reinterpret_cast<uintptr_t>(k) |
                         reinterpret_cast<uintptr_t>(v) | static_cast<uintptr_t>(row_bytes);
  auto go = [&](auto itag) {
    using I = decltype(itag);
    if (addr % 16 == 0) {
      launch<int4, I>(k_pages, v_pages, k, v, slots, n, row_bytes, total_slots);
    } else if (addr % 4 == 0) {
      launch<int, I>(k_pages, v_pages, k, v, slots, n, row_bytes, total_slots);
    } else {
      launch<char, I>(k_pages, v_pages, k, v, slots, n, row_bytes, total_slots);
    }
  };
  if (slot_type == DType::i32) {
    go(int32_t{});
  } else {
    go(int64_t{});
  }
  TUNE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace tune::cuda
