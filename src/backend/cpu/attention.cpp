// Causal self-attention with GQA/MQA, an optional sliding window, packed documents and a KV-cache
// offset, on (B, T, H, D) tensors as they come out of the projection GEMMs. Design notes:
// - One task per (batch, head) in forward and per (batch, kv head) in backward. A head of a
//   (B, T, H, D) tensor is a (T, D) matrix with row stride H * D, which BLAS reads directly
//   through its leading dimension: no transposes, no copies.
// - Queries are the last Tq of Tk positions (bottom-right aligned, as after appending to a KV
//   cache): query i sits at absolute index a = Tk - Tq + i. In training Tq = Tk and a = i.
// - Queries go in blocks of kRowBlock rows. Rows [i0, i1) can only see keys [j0, a(i1)), with j0
//   the smallest first visible key of the block's rows (0 for full causal attention, a - window
//   + 1 with a window, the document's start in a packed row), so the GEMMs skip the masked upper
//   triangle, everything left of the window, and earlier documents once a block is past them.
// - probs (B, Hq, Tq, Tk) holds the softmax (in T, max subtracted) with zeros where masked; the
//   backward reads the mask from those zeros (scanning them for each block's first key) and
//   needs neither the window nor the document starts. Without probs (inference) each task
//   computes its scores in a scratch block.
// - Backward per kv head g, over its query heads h in order, with P = probs[b, h]:
//     dP = dO V^T,  dS = P * (dP - rowsum(dP * P)),  dQ = scale dS K,
//     dK += scale dS^T Q,  dV += P^T dO.
//   dK and dV of (b, g) are zeroed by the task that owns them, then accumulate over the
//   group's query heads and row blocks in a fixed order: no races, no atomics.
// - With fewer tasks than threads the task loop runs serially and OpenBLAS threads each GEMM
//   instead (it splits outputs, not K, so this stays deterministic for a thread count). Tiny
//   problems run serially throughout.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/vector_math.h"

namespace tune::cpu {

namespace {

constexpr int64_t kRowBlock = 64;
// Below this many multiply-adds per GEMM sweep (B * H * Tq * Tk * D) waking threads costs more
// than it saves, most of all on a loaded machine where a barrier waits for a descheduled thread.
constexpr int64_t kParallelMinWork = 1 << 20;

// Parallel over tasks only when every thread gets one and the work pays for the wake-up.
bool parallel_over_tasks(int64_t tasks, const AttentionShape& s) {
  return tasks >= omp_get_max_threads() &&
         s.batch * s.q_heads * s.q_seq * s.kv_seq * s.head_dim >= kParallelMinWork;
}

// First key visible to query row i of batch b (absolute index a = offset + i).
int64_t first_key(int64_t a, int64_t window, const int64_t* key_start_row, int64_t i) {
  int64_t lo = window > 0 ? std::max<int64_t>(0, a - window + 1) : 0;
  if (key_start_row) lo = std::max(lo, key_start_row[i]);
  return lo;
}

// Softmax of a score row (Tk) in place over keys [lo, a]; zero elsewhere. The max, exp and sum
// come from vector_math.h, so each pass vectorizes.
template <typename T>
void masked_softmax_row(T* row, int64_t a, int64_t lo, int64_t kv_seq) {
  T* x = row + lo;  // (len), the visible keys
  const int64_t len = a - lo + 1;
  const T m = vector_math::max(x, len);
  for (int64_t j = 0; j < len; ++j) x[j] = vector_math::exp(x[j] - m);
  const T inv = T(1) / vector_math::sum<T>(x, len);
  for (int64_t j = 0; j < len; ++j) x[j] *= inv;
  std::fill(row, row + lo, T(0));
  std::fill(row + a + 1, row + kv_seq, T(0));
}

// The forward of both pairs: probs (Tq, Tk per head) saved when not null, lse (one per row)
// when not null; with neither, each task computes its scores in a scratch block.
template <typename T, typename L>
void forward(T* out, T* probs, L* lse, const T* q, const T* k, const T* v, const int64_t* key_start,
             const AttentionShape& s, double scale, int64_t window) {
  const int64_t tq = s.q_seq, tk = s.kv_seq, offset = tk - tq, dim = s.head_dim;
  const int64_t group = s.q_heads / s.kv_heads;
  const int64_t ldq = s.q_heads * dim, ldk = s.kv_heads * dim;  // row strides of one head
  const int64_t tasks = s.batch * s.q_heads;
#pragma omp parallel for schedule(static) if (parallel_over_tasks(tasks, s))
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t b = task / s.q_heads, h = task % s.q_heads, g = h / group;
    const T* qh = q + b * tq * ldq + h * dim;  // (Tq, D), stride ldq
    const T* kh = k + b * tk * ldk + g * dim;  // (Tk, D), stride ldk
    const T* vh = v + b * tk * ldk + g * dim;
    T* oh = out + b * tq * ldq + h * dim;
    L* lh = lse ? lse + task * tq : nullptr;                       // (Tq)
    const int64_t* ks = key_start ? key_start + b * tq : nullptr;  // (Tq)
    // Scores: the saved probs (Tq, Tk), or one row block of scratch when they are not saved.
    std::vector<T> scratch(probs ? 0 : static_cast<size_t>(std::min(tq, kRowBlock) * tk));
    for (int64_t i0 = 0; i0 < tq; i0 += kRowBlock) {
      const int64_t i1 = std::min(tq, i0 + kRowBlock), rows = i1 - i0;
      int64_t j0 = offset + i0;
      for (int64_t i = i0; i < i1; ++i) j0 = std::min(j0, first_key(offset + i, window, ks, i));
      const int64_t keys = offset + i1 - j0;
      T* p = probs ? probs + (task * tq + i0) * tk : scratch.data();  // (rows, Tk)
      gemm(Trans::no, Trans::yes, rows, keys, dim, static_cast<T>(scale), qh + i0 * ldq, ldq,
           kh + j0 * ldk, ldk, T(0), p + j0, tk);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t a = offset + i, lo = first_key(a, window, ks, i);
        T* row = p + (i - i0) * tk;
        if (lh) {
          if (lo > a) {  // sees no key (key_start past the query: outside the contract)
            std::fill(row, row + tk, T(0));
            lh[i] = static_cast<L>(-INFINITY);
            continue;
          }
          const T m = vector_math::max(row + lo, a - lo + 1);
          T sum = 0;
          for (int64_t j = lo; j <= a; ++j) sum += std::exp(row[j] - m);
          lh[i] = static_cast<L>(m + std::log(sum));
        }
        masked_softmax_row(row, a, lo, tk);
      }
      gemm(Trans::no, Trans::no, rows, dim, keys, T(1), p + j0, tk, vh + j0 * ldk, ldk, T(0),
           oh + i0 * ldq, ldq);
    }
  }
}

// The backward of both pairs, with P = the saved probs when probs is not null (the mask read
// from their zeros, D_i = rowsum(dP * P)), else rebuilt per row block as exp(scale q.k - lse)
// over the visible keys (D_i = dout_i . out_i).
template <typename T, typename L>
void backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
              const T* probs, const T* out, const L* lse, const int64_t* key_start,
              const AttentionShape& s, double scale, int64_t window) {
  const int64_t tq = s.q_seq, tk = s.kv_seq, offset = tk - tq, dim = s.head_dim;
  const int64_t group = s.q_heads / s.kv_heads;
  const int64_t ldq = s.q_heads * dim, ldk = s.kv_heads * dim;
  const int64_t tasks = s.batch * s.kv_heads;
  const T sc = static_cast<T>(scale);
#pragma omp parallel for schedule(static) if (parallel_over_tasks(tasks, s))
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t b = task / s.kv_heads, g = task % s.kv_heads;
    const T* kh = k + b * tk * ldk + g * dim;  // (Tk, D), stride ldk
    const T* vh = v + b * tk * ldk + g * dim;
    T* dkh = dk + b * tk * ldk + g * dim;
    T* dvh = dv + b * tk * ldk + g * dim;
    const int64_t* ks = key_start ? key_start + b * tq : nullptr;
    for (int64_t t = 0; t < tk; ++t) {
      std::fill(dkh + t * ldk, dkh + t * ldk + dim, T(0));
      std::fill(dvh + t * ldk, dvh + t * ldk + dim, T(0));
    }
    const size_t block = static_cast<size_t>(std::min(tq, kRowBlock) * tk);
    std::vector<T> p_buf(probs ? 0 : block), ds_buf(block);
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      const T* qh = q + b * tq * ldq + h * dim;  // (Tq, D), stride ldq
      const T* doh = dout + b * tq * ldq + h * dim;
      T* dqh = dq + b * tq * ldq + h * dim;
      for (int64_t i0 = 0; i0 < tq; i0 += kRowBlock) {
        const int64_t i1 = std::min(tq, i0 + kRowBlock), rows = i1 - i0;
        int64_t j0 = offset + i0;
        const T* pb = nullptr;  // (rows, keys), stride ldp
        int64_t ldp = 0;
        if (probs) {
          const T* ph = probs + (b * s.q_heads + h) * tq * tk;  // (Tq, Tk)
          // Keys left of every row's first nonzero probability add nothing; the block needs
          // [j0, offset + i1). Scanning each row (not only the first) stays exact when a visible
          // key's probability underflowed to zero in one row but not in the next.
          for (int64_t i = i0; i < i1; ++i) {
            int64_t j = 0;
            while (j < j0 && ph[i * tk + j] == T(0)) ++j;
            j0 = std::min(j0, j);
          }
          pb = ph + i0 * tk + j0;
          ldp = tk;
        } else {
          for (int64_t i = i0; i < i1; ++i) j0 = std::min(j0, first_key(offset + i, window, ks, i));
        }
        const int64_t keys = offset + i1 - j0;
        T* ds = ds_buf.data();  // (rows, keys), stride keys
        if (!probs) {
          T* p = p_buf.data();
          gemm(Trans::no, Trans::yes, rows, keys, dim, sc, qh + i0 * ldq, ldq, kh + j0 * ldk, ldk,
               T(0), p, keys);
          pb = p;
          ldp = keys;
        }
        gemm(Trans::no, Trans::yes, rows, keys, dim, T(1), doh + i0 * ldq, ldq, vh + j0 * ldk, ldk,
             T(0), ds, keys);
        for (int64_t r = 0; r < rows; ++r) {
          T* dsr = ds + r * keys;
          if (probs) {
            const T* pr = pb + r * ldp;
            T dot = 0;
            for (int64_t j = 0; j < keys; ++j) dot += dsr[j] * pr[j];
            for (int64_t j = 0; j < keys; ++j) dsr[j] = pr[j] * (dsr[j] - dot);
            continue;
          }
          const int64_t i = i0 + r, a = offset + i, lo = first_key(a, window, ks, i);
          const T l = static_cast<T>(lse[(b * s.q_heads + h) * tq + i]);
          const T* oh = out + b * tq * ldq + h * dim;
          T d_i = 0;  // D_i = dout_i . out_i = sum_j P_ij dP_ij
          for (int64_t c = 0; c < dim; ++c) d_i += doh[i * ldq + c] * oh[i * ldq + c];
          T* pr = p_buf.data() + r * keys;
          for (int64_t jj = 0; jj < keys; ++jj) {
            const int64_t j = j0 + jj;
            pr[jj] = j >= lo && j <= a ? std::exp(pr[jj] - l) : T(0);
            dsr[jj] = pr[jj] * (dsr[jj] - d_i);
          }
        }
        gemm(Trans::no, Trans::no, rows, dim, keys, sc, ds, keys, kh + j0 * ldk, ldk, T(0),
             dqh + i0 * ldq, ldq);
        gemm(Trans::yes, Trans::no, keys, dim, rows, sc, ds, keys, qh + i0 * ldq, ldq, T(1),
             dkh + j0 * ldk, ldk);
        gemm(Trans::yes, Trans::no, keys, dim, rows, T(1), pb, ldp, doh + i0 * ldq, ldq, T(1),
             dvh + j0 * ldk, ldk);
      }
    }
  }
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* probs, const T* q, const T* k, const T* v,
                       const int64_t* key_start, const AttentionShape& s, double scale,
                       int64_t window) {
  forward<T, T>(out, probs, nullptr, q, k, v, key_start, s, scale, window);
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                        const T* probs, const AttentionShape& s, double scale) {
  backward<T, T>(dq, dk, dv, dout, q, k, v, probs, nullptr, nullptr, nullptr, s, scale, 0);
}

// The lse pair (training without saved probabilities): the forward keeps one number per row,
// the backward rebuilds each row block's probabilities from it.
template <typename T, typename L>
void attention_forward_lse(T* out, L* lse, const T* q, const T* k, const T* v,
                           const int64_t* key_start, const AttentionShape& s, double scale,
                           int64_t window) {
  forward<T, L>(out, nullptr, lse, q, k, v, key_start, s, scale, window);
}

template <typename T, typename L>
void attention_backward_lse(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                            const T* out, const L* lse, const int64_t* key_start,
                            const AttentionShape& s, double scale, int64_t window) {
  backward<T, L>(dq, dk, dv, dout, q, k, v, nullptr, out, lse, key_start, s, scale, window);
}

#define TUNE_INSTANTIATE(T)                                                                \
  template void attention_forward<T>(T*, T*, const T*, const T*, const T*, const int64_t*, \
                                     const AttentionShape&, double, int64_t);              \
  template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,  \
                                      const T*, const AttentionShape&, double);
TUNE_INSTANTIATE(float)
TUNE_INSTANTIATE(double)
#undef TUNE_INSTANTIATE

#define TUNE_INSTANTIATE_LSE(T, L)                                                                \
  template void attention_forward_lse<T, L>(T*, L*, const T*, const T*, const T*, const int64_t*, \
                                            const AttentionShape&, double, int64_t);              \
  template void attention_backward_lse<T, L>(T*, T*, T*, const T*, const T*, const T*, const T*,  \
                                             const T*, const L*, const int64_t*,                  \
                                             const AttentionShape&, double, int64_t);
TUNE_INSTANTIATE_LSE(float, float)
TUNE_INSTANTIATE_LSE(double, float)
TUNE_INSTANTIATE_LSE(double, double)
#undef TUNE_INSTANTIATE_LSE

}  // namespace tune::cpu
