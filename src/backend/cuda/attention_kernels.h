// The CUDA backend's attention entry points for src/ops, in plain C++ types (no CUDA headers).
// Defined in src/backend/cuda/attention.cu (tiles of queries on the tensor cores) and
// attention_decode.cu (few queries: keys split across blocks), or by no_cuda_attention.cpp in
// builds without CUDA. Pointers are device pointers, 16-byte aligned, head_dim a multiple of 8;
// work is queued on the calling thread's stream (cudaStreamPerThread) and never waited for.
#pragma once

#include <cstdint>

#include "tune/core/dtype.h"

namespace tune::cuda {

// The keys of one paged-attention call (ops::attention_decode): pages [P, page_size, Hkv, D].
struct PagedShape {
  int64_t seqs, q_heads, kv_heads, head_dim, page_size, max_pages;
};

// f32 elements of workspace attention_decode needs (0 when no sequence is split).
int64_t attention_decode_workspace_size(const PagedShape& s, int64_t window);

// out, q [N, Hq, D]; pages [P, S, Hkv, D]; block_table [N, max_pages], seq_lens [N] (i32, device).
// dtype f32, bf16 or f16, math in f32. workspace: at least attention_decode_workspace_size(s,
// window) f32 elements, or null, and then it is taken from the stream-ordered pool
// (cudaMallocAsync, which graph capture records as a memory node).
void attention_decode(DType dtype, void* out, const void* q, const void* k_pages,
                      const void* v_pages, const int32_t* block_table, const int32_t* seq_lens,
                      const PagedShape& s, float scale, int64_t window, float* workspace);

// The shape of ops::attention_forward: q [B, Tq, Hq, D], k, v [B, Tk, Hkv, D].
struct DenseShape {
  int64_t batch, q_seq, kv_seq, q_heads, kv_heads, head_dim;
};

// ops::attention_forward without saved probabilities: causal, bottom-right aligned, window,
// key_start [B, Tq] (i64, device) or null. bf16/f16 with enough queries run a flash-attention
// kernel on the tensor cores (wgmma on Hopper at D 64/128, else mma.sync; f32 accumulators);
// f32, and few queries per kv head
// (decoding against a contiguous cache), run the split-key kernel of attention_decode.cu.
void attention_forward(DType dtype, void* out, const void* q, const void* k, const void* v,
                       const int64_t* key_start, const DenseShape& s, float scale, int64_t window);

// attention_forward that also writes lse [B, Hq, Tq] (f32, natural log; -inf for a row that
// sees no key). bf16/f16: the flash kernel above with its row statistics written out; f32: a
// simple one-warp-per-row kernel (attention_backward.cu) meant for parity checks, not speed.
void attention_forward_lse(DType dtype, void* out, float* lse, const void* q, const void* k,
                           const void* v, const int64_t* key_start, const DenseShape& s,
                           float scale, int64_t window);

// The flash-attention backward (attention_backward.cu), Tq == Tk: dq, dk, dv written from dout,
// the forward's inputs, out and lse. Deterministic: a block owns each output tile (dK/dV of a key
// tile summed over its kv group's query heads; dQ of a query tile), no atomics. Scratch for
// D = rowsum(dout * out) (B * Hq * Tq f32) comes from the stream-ordered pool.
void attention_backward_lse(DType dtype, void* dq, void* dk, void* dv, const void* dout,
                            const void* q, const void* k, const void* v, const void* out,
                            const float* lse, const int64_t* key_start, const DenseShape& s,
                            float scale, int64_t window);

// attention_forward_lse for f32 (attention_backward.cu).
void attention_forward_lse_f32(void* out, float* lse, const void* q, const void* k, const void* v,
                               const int64_t* key_start, const DenseShape& s, float scale,
                               int64_t window);

// The split-key kernel on dense keys (attention_decode.cu), for attention_forward.
void attention_forward_split(DType dtype, void* out, const void* q, const void* k, const void* v,
                             const int64_t* key_start, const DenseShape& s, float scale,
                             int64_t window);

}  // namespace tune::cuda
