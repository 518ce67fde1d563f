// The one op API. Each op checks its arguments (the message names the op and the shapes), then
// dispatches on device and dtype to a backend kernel. Forward and backward of an op sit side by
// side. Conventions, as in llm.c: outputs are written (=), parameter gradients are accumulated
// (+=), and where an op accumulates into an activation gradient its comment says so.
//
// Layouts: activations are row-major [rows, features]; attention tensors are [B, T, H, D]
// (straight out of the projection GEMMs, no transposes); Linear weights are [out, in] as in
// Hugging Face. CPU kernels run in f32 and f64 (f64 for finite-difference tests); all float
// tensors passed to one op share one dtype. Index tensors are i64 or i32.
#pragma once

#include <cstdint>

#include "tune/core/tensor.h"

namespace tune::ops {

enum class Transpose : uint8_t { no, yes };

// c = alpha * op(a) @ op(b) + beta * c (+ bias on every row), for 2-D a, b, c (pass views for
// higher ranks). beta = 0 overwrites c (NaNs in c are not propagated); beta = 1 accumulates. One
// dtype for all three, except on CUDA, where c may be f32 for bf16/f16 a and b (f32 accumulation
// either way). A defined bias [n] has c's dtype; CUDA adds it in the product's epilogue (before
// c is rounded), the CPU after.
void matmul(Tensor& c, const Tensor& a, Transpose ta, const Tensor& b, Transpose tb,
            double alpha = 1.0, double beta = 0.0, const Tensor& bias = Tensor());
// c = alpha * op(a) @ op(b) + src (+ bias): a product added to another tensor of c's shape,
// dtype and device (a residual stream), which CUDA reads in the product's epilogue instead of
// adding it in a pass of its own. src may be c itself (matmul with beta 1) but no other part of c.
void matmul_add(Tensor& c, const Tensor& a, Transpose ta, const Tensor& b, Transpose tb,
                const Tensor& src, double alpha = 1.0, const Tensor& bias = Tensor());
// Two products of one shape: c0 = alpha op(a0) @ op(b0) + beta c0 and c1 likewise from a1, b1
// (LoRA's k|v and gate|up adapters). CUDA runs them in one launch where it can (each operand's
// second member a whole number of elements past its first, or the same tensor): a product that
// small costs about as much to launch as to compute. Otherwise, and on the CPU, one after the
// other, as two matmuls.
void matmul_pair(Tensor& c0, Tensor& c1, const Tensor& a0, const Tensor& a1, Transpose ta,
                 const Tensor& b0, const Tensor& b1, Transpose tb, double alpha = 1.0,
                 double beta = 0.0);
// A product with GELU-tanh after it (GPT-2's MLP; CUDA runs the activation in the product's
// epilogue): pre = op(a) @ op(b) + bias (bias optional; pre is what backward needs), h =
// gelu_tanh(pre) — as matmul then gelu_tanh_forward.
void matmul_gelu(Tensor& h, Tensor& pre, const Tensor& a, Transpose ta, const Tensor& b,
                 Transpose tb, const Tensor& bias = Tensor());
// Its backward through the product after the activation: dpre = (op(a) @ op(b)) *
// gelu_tanh'(pre) — as matmul then gelu_tanh_backward.
void matmul_gelu_backward(Tensor& dpre, const Tensor& a, Transpose ta, const Tensor& b,
                          Transpose tb, const Tensor& pre);

// ---- elementwise and reductions ----
void fill(Tensor& x, double value);
void copy(Tensor& dst, const Tensor& src);                         // dst = src
void add(Tensor& out, const Tensor& a, const Tensor& b);           // out = a + b
void add_inplace(Tensor& y, const Tensor& x, double alpha = 1.0);  // y += alpha * x
void scale_inplace(Tensor& y, double alpha);                       // y *= alpha
// y [N, C] += b [C] on every row.
void add_bias(Tensor& y, const Tensor& b);
// db [C] += sum over rows of dy [N, C].
void bias_backward(Tensor& db, const Tensor& dy);
// Column blocks of 2-D row-major tensors (GPT-2's fused q|k|v projection):
// out [N, w] = x[:, start : start + w] for x [N, W].
void slice_columns(Tensor& out, const Tensor& x, int64_t start);
// out[:, start : start + w] = x [N, w] for out [N, W]; the other columns are left as they are.
void write_columns(Tensor& out, int64_t start, const Tensor& x);
// Sum of squares accumulated in double; the grad-norm building block. On CUDA (f32, bf16, f16)
// a fixed two-pass reduction, deterministic, that waits for its result.
double sum_squares(const Tensor& x);

// ---- embedding ----
// out [N, C] = table [V, C] rows at ids [N]. An id outside [0, V) throws, naming the id (on
// CUDA after the kernel, which reads the check back: one small copy and a sync; inside CUDA graph
// capture nothing is read back and the row is written as zeros).
void embedding_forward(Tensor& out, const Tensor& ids, const Tensor& table);
// dtable [V, C] += scatter of dout [N, C] at ids. Deterministic on both devices (no atomics).
void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids);

// ---- RMSNorm over the last dimension (Llama: y = x * rsqrt(mean(x^2) + eps) * w) ----
// x, y [N, C]; w [C]; rstd [N] saved for backward.
void rms_norm_forward(Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& w, double eps);
// dx [N, C] = ...; dw [C] += ... (skipped when dw is undefined, e.g. a frozen weight).
// With residual [N, C] defined, dx = ... + residual: a block's residual gradient, added in the
// same pass (the norm's result is rounded to dx's dtype first, so dx equals rms_norm_backward
// then add_inplace(dx, residual) bit for bit). dx may alias dy, not residual.
void rms_norm_backward(Tensor& dx, Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                       const Tensor& rstd, const Tensor& residual = Tensor());
// A block's residual add and the RMSNorm after it, in one pass: h = x + a, then y and rstd as
// rms_norm_forward(y, rstd, h, w, eps). x, a, h, y [N, C]. h is rounded to its dtype before the
// norm reads it, so h, y and rstd equal add then rms_norm_forward bit for bit.
void add_rms_norm_forward(Tensor& h, Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& a,
                          const Tensor& w, double eps);

// RMSNorm then a product, for decoding: y [N, n] = alpha * rms_norm(x; norm_w, eps) @ w^T +
// beta * y with x [N, C], norm_w [C], w [n, C] (a Linear's weight). On CUDA with N <= 4 it is one
// kernel that never writes the normalised rows (they stay in f32); otherwise rms_norm_forward,
// then matmul.
void rms_norm_matmul(Tensor& y, const Tensor& x, const Tensor& norm_w, double eps, const Tensor& w,
                     double alpha = 1.0, double beta = 0.0);

// ---- LayerNorm over the last dimension (GPT-2): y = (x - mean) * rstd * w + b with
// rstd = 1 / sqrt(var + eps), var the biased variance of the row ----
// x, y [N, C]; w, b [C]; mean, rstd [N] saved for backward (f32 on CUDA, where x may also be
// bf16 or f16; math in f32).
void layer_norm_forward(Tensor& y, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& w,
                        const Tensor& b, double eps);
// dx [N, C] written (may alias dy); dw, db [C] accumulated (+=), each skipped when undefined
// (a frozen weight or bias). On CUDA dw and db are deterministic (no atomics). With residual
// [N, C] defined, dx = ... + residual in the same pass, as for rms_norm_backward (bit for bit
// layer_norm_backward then add_inplace(dx, residual); dx may alias dy, not residual).
void layer_norm_backward(Tensor& dx, Tensor& dw, Tensor& db, const Tensor& dy, const Tensor& x,
                         const Tensor& w, const Tensor& mean, const Tensor& rstd,
                         const Tensor& residual = Tensor());
// GPT-2's residual add and the LayerNorm after it, in one pass: h = x + a, then y, mean and rstd
// as layer_norm_forward(y, mean, rstd, h, w, b, eps). x, a, h, y [N, C]. h is rounded to its
// dtype before the norm reads it, so every output equals add then layer_norm_forward bit for bit.
void add_layer_norm_forward(Tensor& h, Tensor& y, Tensor& mean, Tensor& rstd, const Tensor& x,
                            const Tensor& a, const Tensor& w, const Tensor& b, double eps);

// ---- rotary position embedding, Hugging Face's rotate_half convention ----
// x [B, T, H, D] rotated in place: for i < D/2, with c = cos[pos, i], s = sin[pos, i]:
//   x1' = x1 * c - x2 * s,  x2' = x2 * c + x1 * s   where x1 = x[..., i], x2 = x[..., i + D/2].
// cos, sin [P, D/2] (P >= max position + 1); positions [B, T] (i64 or i32). On CUDA they are
// checked on the device as embedding's ids are, which waits for the stream to read the result:
// a caller that checked them on the host, once for many calls (CausalLM, for every layer's
// rotations), passes Checked::yes and nothing waits (a position outside the tables then leaves
// its row as it is). On the CPU they are always checked.
enum class Checked : uint8_t { no, yes };
void rope_forward(Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& positions,
                  Checked positions_checked = Checked::no);
// The transpose of the rotation, in place on dx [B, T, H, D].
void rope_backward(Tensor& dx, const Tensor& cos, const Tensor& sin, const Tensor& positions,
                   Checked positions_checked = Checked::no);

// ---- causal self-attention with GQA/MQA, a sliding window, packed documents and a KV cache ----
// q [B, Tq, Hq, D], k and v [B, Tk, Hkv, D] with Tq <= Tk and Hq % Hkv == 0 (query head h reads
// kv head h / (Hq / Hkv)); out [B, Tq, Hq, D]. The queries are the last Tq of the Tk positions
// (bottom-right aligned, as flash-attention does): query i sits at a = Tk - Tq + i, so training
// passes Tq = Tk and generation passes the new tokens against the whole KV cache. Key j is
// visible to query i when j <= a; with window > 0, when also a - j < window (Mistral's sliding
// window); with key_start [B, Tq] (i64, optional) defined, when also j >= key_start[b, i] — the
// first key of query i's document in a packed row (each value in [0, a]).
// probs [B, Hq, Tq, Tk] is saved for backward (row i holds softmax over keys j, zero where
// masked); pass an undefined probs when no backward follows (inference) and nothing is saved.
// scale multiplies q.k (usually D^-0.5).
// On CUDA (f32, bf16, f16; head dims a multiple of 8 up to 256; 16-byte aligned tensors) probs
// must be undefined (inference: flash attention, nothing saved; training calls
// attention_forward_lse below), and key_start stays on the
// device unchecked (its range above is the caller's contract).
void attention_forward(Tensor& out, Tensor& probs, const Tensor& q, const Tensor& k,
                       const Tensor& v, double scale, int64_t window,
                       const Tensor& key_start = Tensor());
// dq, dk, dv are written (=), same shapes as q, k, v. The mask comes from the zeros of probs, so
// window and key_start need not be passed again.
void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& probs, double scale);

// Training attention without the probabilities (flash-attention's way: O(T) saved, not O(T^2)).
// The forward writes out as attention_forward does and lse [B, Hq, Tq]: the natural-log logsumexp
// of each query row's scaled, masked scores (-inf for a row that sees no key). The backward
// recomputes the probabilities from q, k and lse, with the same masks (causal bottom-right,
// window, key_start), so it takes window and key_start again. lse is f32 (on the CPU it may also
// be the dtype of q, e.g. f64 for exact gradient checks). Dtypes: f32/f64 on the CPU; f32, bf16,
// f16 on CUDA (bf16/f16 on the tensor cores, f32 on a simple kernel meant for parity checks).
void attention_forward_lse(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k,
                           const Tensor& v, double scale, int64_t window,
                           const Tensor& key_start = Tensor());
// dq, dk, dv are written (=), same shapes as q, k, v; dk and dv sum over the query heads of each
// kv group (GQA/MQA) without repeating k and v. out and lse are the forward's (out gives
// D_i = rowsum(dout * out)). On CUDA Tq must equal Tk, the backward is deterministic (no atomics),
// its scratch (B * Hq * Tq f32) comes from the stream-ordered pool and nothing waits for the host.
void attention_backward_lse(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q,
                            const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                            double scale, int64_t window, const Tensor& key_start = Tensor());

// ---- paged KV cache (inference): vLLM's layout ----
// One layer's cache is two tensors k_pages, v_pages [P, S, Hkv, D]: P pages of S positions. A
// sequence's positions live in the pages its block-table row lists, in order: position t of
// sequence n sits at page block_table[n, t / S], offset t % S, i.e. at flat slot
// block_table[n, t / S] * S + t % S. Pages, k, v, q and out share one dtype: bf16 or f16 (or f32)
// on CUDA; on the CPU any float dtype for kv_cache_write and f32/f64 for attention_decode.
//
// k_pages, v_pages [flat slot slots[n]] = k, v [n] for rows n of k, v [N, Hkv, D]; slots [N]
// (i32 or i64). A negative slot skips its row (padding rows of a fixed-size, graph-captured
// batch). A slot >= P * S throws on the CPU; on CUDA the slots stay on the device unread by the
// host (so the call can be captured in a graph) and such a row is skipped.
void kv_cache_write(Tensor& k_pages, Tensor& v_pages, const Tensor& k, const Tensor& v,
                    const Tensor& slots);
// One new query per sequence against the sequence's cached keys (the query's own key and value
// already written): q, out [N, Hq, D] with Hq % Hkv == 0 (query head h reads kv head
// h / (Hq / Hkv)); block_table [N, max_pages] i32; seq_lens [N] i32, each in [1, max_pages * S]:
// sequence n sees positions [0, len), or the last `window` of them when window > 0. Equal to
// attention_forward on the gathered contiguous keys with Tq = 1. scale multiplies q.k.
// On the CPU the block table and lengths are checked. On CUDA they stay on the device (not
// checked; lengths are clamped to max_pages * S), nothing is allocated when `workspace` is given
// and nothing waits for the host, so the call can be captured in a CUDA graph. Long sequences
// are split across blocks (flash-decoding); the partial results need
// attention_decode_workspace_size(...) f32 elements of scratch: pass `workspace` (f32, at least
// that many elements, on the device) to reuse one buffer, or leave it undefined and the call
// takes one from CUDA's stream-ordered pool (cudaMallocAsync; a graph capture records it as a
// memory node). Ignored on the CPU. CUDA needs head dims a multiple of 8 up to 256 and 16-byte
// aligned tensors.
void attention_decode(Tensor& out, const Tensor& q, const Tensor& k_pages, const Tensor& v_pages,
                      const Tensor& block_table, const Tensor& seq_lens, double scale,
                      int64_t window, const Tensor& workspace = Tensor());
// f32 elements of workspace attention_decode needs for these shapes on the current device (0 on
// the CPU, or when no sequence is split). Depends on shapes and the device alone, not on values.
int64_t attention_decode_workspace_size(const Tensor& q, const Tensor& k_pages,
                                        const Tensor& block_table, int64_t window);

// ---- greedy choice: out [N] (i64) = the first column of each row's largest value of x [N, V]
// (torch.argmax); NaNs are never chosen (a row of NaNs gives 0). On CUDA nothing waits for the
// host, so a decode step can choose its tokens without copying the logits. ----
void argmax_rows(Tensor& out, const Tensor& x);

// ---- SwiGLU: h = silu(gate) * up, all [N, F] ----
void swiglu_forward(Tensor& h, const Tensor& gate, const Tensor& up);
void swiglu_backward(Tensor& dgate, Tensor& dup, const Tensor& dh, const Tensor& gate,
                     const Tensor& up);

// ---- GELU, tanh approximation (GPT-2's "gelu_new"), elementwise on any shape:
// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ----
void gelu_tanh_forward(Tensor& y, const Tensor& x);
// dx = dy * gelu'(x), written; dx may alias dy.
void gelu_tanh_backward(Tensor& dx, const Tensor& dy, const Tensor& x);

// ---- dropout with a counter-based mask: element i is kept when
// uniform01(seed, stream, i) >= p, and kept values are scaled by 1 / (1 - p). The mask is a pure
// function of (seed, stream, i), so backward is the same call on dy and nothing is stored; CUDA
// draws the same mask as the CPU, bit for bit. ----
void dropout(Tensor& out, const Tensor& x, double p, uint64_t seed, uint64_t stream);

// ---- cross-entropy over rows of logits [N, V] with integer targets [N]; target -100 is
// ignored. Returns the sum of -log softmax(logits)[target] over counted rows (in double). When
// dlogits is defined it is written: grad_scale * (softmax - onehot(target)) on counted rows, 0
// on ignored rows; dlogits may be logits itself (in place, to save an (N, V) buffer). A target
// outside [0, V) other than -100 throws, naming row and value. On CUDA (f32, bf16, f16 logits;
// math in f32) targets stay on the device, the loss is summed there in a fixed order, and the call
// waits for it (one sync); f32 logits may have a bf16 or f16 dlogits (not in place). ----
double cross_entropy(Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                     double grad_scale);
// Number of targets that are not -100 (on CUDA the targets are copied to the host).
int64_t count_targets(const Tensor& targets);

// ---- optimizer updates, elementwise over flat buffers (same numel; f32 or f64 on the CPU, f32
// on CUDA, where AdamW and SGD equal the CPU's update to the bit) ----
// torch.optim.AdamW, step >= 1:
//   p -= lr * weight_decay * p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, double lr, double beta1,
                  double beta2, double eps, double weight_decay, int64_t step);
// torch.optim.SGD (dampening 0, not Nesterov), step >= 1: g' = g + wd * p;
// buf = step == 1 ? g' : momentum * buf + g';  p -= lr * buf. With momentum 0, p -= lr * g' and
// buf is not touched (may be undefined).
void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, double lr, double momentum,
                double weight_decay, int64_t step);
// Mixed precision: master (f32) and the moments m, v (f32) follow torch.optim.AdamW exactly as
// adamw_update does, on g = grad_scale * grad (grad in the compute dtype: f32, bf16 or f16;
// grad_scale folds the gradient-clipping factor and f16's loss-scale unscaling into the same pass);
// then param (the compute copy: bf16, f16 or f32, grad's dtype) = master rounded to nearest.
// step >= 1. With grad and param f32 and grad_scale 1, master, m and v equal adamw_update's to the
// bit. On either device; no two tensors may share memory.
void adamw_update_mixed(Tensor& master, Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                        double lr, double beta1, double beta2, double eps, double weight_decay,
                        int64_t step, double grad_scale);

}  // namespace tune::ops
