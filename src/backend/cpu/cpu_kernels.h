// CPU kernels behind include/tune/ops/ops.h. Internal to libtune: src/ops checks arguments and
// unpacks shapes, then calls these with raw pointers, so a kernel never re-validates and never
// throws from inside a parallel region (an exception cannot leave an OpenMP region).
//
// Every kernel is templated on its element type T (float or double; double exists for the
// finite-difference tests) and, where it reads indices, on the index type I (int32_t or int64_t).
// Conventions follow ops.h: outputs are written (=), parameter gradients accumulated (+=).
// Results are deterministic for a given thread count: reductions run in a fixed order, never
// with atomics.
#pragma once

#include <cstdint>

namespace tune::cpu {

// The backend mirrors ops::Transpose rather than including the op layer above it.
enum class Trans : uint8_t { no, yes };

// ---- matmul.cpp ----
// c (M, N) = alpha * op(a) (M, K) @ op(b) (K, N) + beta * c, row-major with leading dimensions.
// beta == 0 never reads c.
template <typename T>
void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// ---- elementwise.cpp ----
template <typename T>
void fill(T* x, int64_t n, T value);
template <typename T>
void copy(T* dst, const T* src, int64_t n);
template <typename T>
void add(T* out, const T* a, const T* b, int64_t n);
template <typename T>
void add_inplace(T* y, const T* x, int64_t n, T alpha);
template <typename T>
void scale_inplace(T* y, int64_t n, T alpha);
// y (rows, cols) += b (cols) on every row.
template <typename T>
void add_bias(T* y, const T* b, int64_t rows, int64_t cols);
// db (cols) += column sums of dy (rows, cols).
template <typename T>
void bias_backward(T* db, const T* dy, int64_t rows, int64_t cols);
// dst (rows, cols) with leading dimension ld_dst = src (rows, cols) with leading dimension ld_src.
template <typename T>
void copy_2d(T* dst, int64_t ld_dst, const T* src, int64_t ld_src, int64_t rows, int64_t cols);
template <typename T>
double sum_squares(const T* x, int64_t n);
// out = x * keep(i) / (1 - p), keep(i) = uniform01(seed, stream, i) >= p. p < 1.
template <typename T>
void dropout(T* out, const T* x, int64_t n, double p, uint64_t seed, uint64_t stream);

// ---- embedding.cpp ---- (ids already checked to lie in [0, V))
// out (N, C) = table (V, C) rows at ids (N).
template <typename T, typename I>
void embedding_forward(T* out, const I* ids, const T* table, int64_t n, int64_t c);
// dtable (V, C) += dout (N, C) scattered at ids (N).
template <typename T, typename I>
void embedding_backward(T* dtable, const T* dout, const I* ids, int64_t n, int64_t c);

// ---- norm.cpp ----
// y, x (N, C); w (C); rstd (N).
template <typename T>
void rms_norm_forward(T* y, T* rstd, const T* x, const T* w, int64_t n, int64_t c, double eps);
// dx (N, C) written, may alias dy; dw (C) accumulated, skipped when null. With residual (N, C)
// not null, dx += residual after dx is rounded to T (residual must not alias dx).
template <typename T>
void rms_norm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd,
                       const T* residual, int64_t n, int64_t c);
// h = x + a (N, C), then rms_norm_forward(y, rstd, h, w) on each row.
template <typename T>
void add_rms_norm_forward(T* h, T* y, T* rstd, const T* x, const T* a, const T* w, int64_t n,
                          int64_t c, double eps);

// y, x (N, C); w, b (C); mean, rstd (N).
template <typename T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t n,
                        int64_t c, double eps);
// dx (N, C) written, may alias dy; dw, db (C) accumulated, each skipped when null. With residual
// (N, C) not null, dx += residual after dx is rounded to T (residual must not alias dx).
template <typename T>
void layer_norm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* mean,
                         const T* rstd, const T* residual, int64_t n, int64_t c);
// h = x + a (N, C), then layer_norm_forward(y, mean, rstd, h, w, b) on each row.
template <typename T>
void add_layer_norm_forward(T* h, T* y, T* mean, T* rstd, const T* x, const T* a, const T* w,
                            const T* b, int64_t n, int64_t c, double eps);

// ---- rope.cpp ---- (positions already checked to lie in [0, P))
enum class RopeDirection : uint8_t { forward, backward };
// x (B, T, H, D) rotated in place; cos, sin (P, D/2); positions (B, T).
template <typename T, typename I>
void rope(T* x, const T* cos, const T* sin, const I* positions, int64_t b, int64_t t, int64_t h,
          int64_t d, RopeDirection direction);

// ---- attention.cpp ----
// Queries are the last q_seq of kv_seq positions (q_seq <= kv_seq; equal in training).
struct AttentionShape {
  int64_t batch, q_seq, kv_seq, q_heads, kv_heads, head_dim;
};
// q (B, Tq, Hq, D), k and v (B, Tk, Hkv, D), out (B, Tq, Hq, D), probs (B, Hq, Tq, Tk) or null
// (nothing saved), key_start (B, Tq) or null: each query's first visible key (packed documents).
template <typename T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v,
                       const int64_t* key_start, const AttentionShape& s, double scale,
                       int64_t window);
// dq, dk, dv written; probs from attention_forward.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                        const T* probs, const AttentionShape& s, double scale);
// attention_forward that saves lse (B, Hq, Tq) in L (float, or T) instead of probs: the natural
// log of each row's sum of exp(scaled score), -inf for a row that sees no key.
template <typename T, typename L>
void attention_forward_lse(T* out, L* lse, const T* q, const T* k, const T* v,
                           const int64_t* key_start, const AttentionShape& s, double scale,
                           int64_t window);
// dq, dk, dv written; the probabilities recomputed from q, k and lse with the forward's masks,
// D_i = rowsum(dout * out).
template <typename T, typename L>
void attention_backward_lse(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                            const T* out, const L* lse, const int64_t* key_start,
                            const AttentionShape& s, double scale, int64_t window);

// ---- activation.cpp ---- SwiGLU over (n) elements.
template <typename T>
void swiglu_forward(T* h, const T* gate, const T* up, int64_t n);
template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dh, const T* gate, const T* up, int64_t n);
// y = gelu_tanh(x); dx = dy * gelu_tanh'(x) (dx may alias dy), n elements.
template <typename T>
void gelu_tanh_forward(T* y, const T* x, int64_t n);
template <typename T>
void gelu_tanh_backward(T* dx, const T* dy, const T* x, int64_t n);

// ---- loss.cpp ---- (targets already checked: -100 or in [0, V))
// Returns the summed loss over counted rows; dlogits (N, V) written when not null, may alias
// logits.
template <typename T, typename I>
double cross_entropy(T* dlogits, const T* logits, const I* targets, int64_t n, int64_t v,
                     double grad_scale);

}  // namespace tune::cpu
