// CPU kernels for the paged KV cache ops (ops::kv_cache_write, ops::attention_decode), kept apart
// from cpu_kernels.h because they belong to inference alone. Arguments were checked by
// src/ops/kv_cache.cpp: slots, page ids and lengths are in range when these run.
#pragma once

#include <cstdint>

namespace tune::cpu {

// Shapes of one paged-attention call: N sequences, Hq query heads over Hkv kv heads of dim D,
// pages of `page_size` positions, `max_pages` entries in each block-table row.
struct DecodeShape {
  int64_t seqs, q_heads, kv_heads, head_dim, page_size, max_pages;
};

// k_pages, v_pages (P, S, Hkv, D) at flat slot slots[n] = row n of k, v (N, Hkv, D); rows with
// a negative slot are skipped. `row_bytes` = Hkv * D * element size: a plain byte copy, so any
// dtype works.
template <typename I>
void kv_cache_write(void* k_pages, void* v_pages, const void* k, const void* v, const I* slots,
                    int64_t n, int64_t row_bytes);

// out, q (N, Hq, D); k_pages, v_pages (P, S, Hkv, D); block_table (N, max_pages); seq_lens (N).
// Sequence n attends to its positions [lo, len) with len = seq_lens[n] and lo = len - window when
// window > 0 (else 0), softmax in T.
template <typename T>
void attention_decode(T* out, const T* q, const T* k_pages, const T* v_pages,
                      const int32_t* block_table, const int32_t* seq_lens, const DecodeShape& s,
                      double scale, int64_t window);

}  // namespace tune::cpu
