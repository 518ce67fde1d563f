// The CUDA backend's embedding and rotary-embedding entry points for src/ops, in plain C++ types
// (no CUDA headers). Defined in src/backend/cuda/embedding.cu and rope.cu, or by
// no_cuda_embedding.cpp in builds without CUDA. Pointers are device pointers; work is queued on
// the calling thread's stream (cudaStreamPerThread).
//
// Index checks. Ids and positions live on the device, so a kernel cannot throw: it records the
// flat index of the first out-of-range id in a device word, the entry point reads that word back
// after the kernel (a 8-byte copy and a stream sync) and returns it, and src/ops throws naming
// the id. Inside CUDA graph capture nothing is read back (a sync would break the capture): the
// entry point returns -1 and rows with bad ids are written as zeros (forward) or skipped.
#pragma once

#include <cstdint>

#include "tune/core/dtype.h"

namespace tune::cuda {

// out [n, c] = table [vocab, c] rows at ids [n] (i32 or i64); dtype f32, bf16 or f16. Returns -1
// or the index into ids of the first id outside [0, vocab).
int64_t embedding_forward(DType dtype, DType id_type, void* out, const void* ids, const void* table,
                          int64_t n, int64_t c, int64_t vocab);

// dtable [vocab, c] += dout [n, c] scattered at ids. Deterministic, no atomics: the rows are
// sorted by id (a stable radix sort), and one block sums each id's rows in row order in f32 and
// adds the sum to dtable once. Returns as embedding_forward.
int64_t embedding_backward(DType dtype, DType id_type, void* dtable, const void* dout,
                           const void* ids, int64_t n, int64_t c, int64_t vocab);

enum class RopeDirection : uint8_t { forward, backward };

// x [b, t, h, d] rotated in place (HF rotate_half); cos, sin [p, d/2] of x's dtype; positions
// [b, t] (i32 or i64). Backward applies the transpose. Math in f32. With `check`, returns -1 or
// the flat index of the first position outside [0, p), which waits for the stream; without, -1
// (the caller checked them: rows of positions outside [0, p) are left as they are).
int64_t rope(DType dtype, DType pos_type, void* x, const void* cos, const void* sin,
             const void* positions, int64_t b, int64_t t, int64_t h, int64_t d, int64_t p,
             RopeDirection direction, bool check);

}  // namespace tune::cuda
