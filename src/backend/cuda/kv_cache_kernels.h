// The CUDA backend's paged-KV-cache write for src/ops, in plain C++ types. Defined in
// src/backend/cuda/kv_cache.cu, or by no_cuda_attention.cpp in builds without CUDA.
#pragma once

#include <cstdint>

#include "tune/core/dtype.h"

namespace tune::cuda {

// k_pages, v_pages [P, S, Hkv, D] at flat slot slots[r] = rows r of k, v [n, row_elems] (any
// 2- or 4-byte float dtype, copied as bytes); slots i32 or i64 on the device. A slot outside
// [0, total_slots) skips its row (negative ones are padding; ops.h says why none is reported).
void kv_cache_write(void* k_pages, void* v_pages, const void* k, const void* v, const void* slots,
                    DType slot_type, int64_t n, int64_t row_bytes, int64_t total_slots);

}  // namespace tune::cuda
