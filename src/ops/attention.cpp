// Causal self-attention with GQA/MQA, a sliding window, packed documents and a KV-cache offset,
// forward and backward.
#include <cstdint>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cuda/attention_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

namespace {

// Checks q (B, Tq, Hq, D) against k and v (B, Tk, Hkv, D) with Tk >= Tq; returns the shape.
cpu::AttentionShape check_qkv(const char* op, const Arg& q, const Arg& k, const Arg& v) {
  detail::check_rank(op, q, 4);
  detail::check_rank(op, k, 4);
  const Tensor& qt = q.tensor;
  const Tensor& kt = k.tensor;
  const cpu::AttentionShape s{qt.size(0), qt.size(1), kt.size(1),
                              qt.size(2), kt.size(2), qt.size(3)};
  detail::check_shape(op, k, {s.batch, s.kv_seq, s.kv_heads, s.head_dim}, q);
  detail::check_same_shape(op, v, k);
  if (s.kv_seq < s.q_seq) {
    detail::fail(op, str(q.name, " has shape ", shape_str(qt.shape()), " and ", k.name,
                         " has shape ", shape_str(kt.shape()), ": the ", s.q_seq,
                         " queries must be the last of the ", s.kv_seq, " keys (Tq <= Tk)"));
  }
  if (s.kv_heads == 0 || s.q_heads % s.kv_heads != 0) {
    detail::fail(op, str(q.name, " has shape ", shape_str(qt.shape()), " and ", k.name,
                         " has shape ", shape_str(kt.shape()), ": the ", s.q_heads,
                         " query heads must be a multiple of the ", s.kv_heads, " kv heads"));
  }
  return s;
}

// key_start (B, Tq) i64 (on the CPU: its values are read), each value in [0, Tk - Tq + i] so that
// every query sees at least itself.
void check_key_start(const char* op, const Arg& ks, const Arg& q, const cpu::AttentionShape& s) {
  detail::check_shape(op, ks, {s.batch, s.q_seq}, q);
  if (ks.tensor.dtype() != DType::i64) {
    detail::fail(op, str(ks.name, " has dtype ", dtype_name(ks.tensor.dtype()), "; expected i64"));
  }
  const int64_t* d = ks.tensor.data<int64_t>();
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t i = 0; i < s.q_seq; ++i) {
      const int64_t v = d[b * s.q_seq + i], last = s.kv_seq - s.q_seq + i;
      if (v < 0 || v > last) {
        detail::fail(op, str(ks.name, "[", b, ", ", i, "] = ", v, " is outside [0, ", last,
                             "]: a query's first visible key must not come after the query"));
      }
    }
  }
}

// The CUDA attention kernels read 16-byte packs: head dims a multiple of 8 up to 256, and
// tensors starting on 16-byte boundaries (views at odd offsets are refused, not misread).
void check_cuda_attention_layout(const char* op, int64_t head_dim,
                                 std::initializer_list<Arg> args) {
  if (head_dim % 8 != 0 || head_dim > 256 || head_dim == 0) {
    detail::fail(op, str("head dim ", head_dim,
                         " is not supported on CUDA: it must be a multiple of 8 up to 256"));
  }
  for (const Arg& a : args) {
    if (reinterpret_cast<uintptr_t>(a.tensor.raw()) % 16 != 0) {
      detail::fail(op, str(a.name, " (", a.tensor.describe(),
                           ") does not start on a 16-byte boundary; on CUDA pass a tensor "
                           "allocated on its own or a view at a multiple of 16 bytes"));
    }
  }
}

}  // namespace

void attention_forward(Tensor& out, Tensor& probs, const Tensor& q, const Tensor& k,
                       const Tensor& v, double scale, int64_t window, const Tensor& key_start) {
  constexpr const char* op = "attention_forward";
  const Arg oa{"out", out}, pa{"probs", probs}, qa{"q", q}, ka{"k", k}, va{"v", v},
      sa{"key_start", key_start};
  const cpu::AttentionShape s = check_qkv(op, qa, ka, va);
  detail::check_same_shape(op, oa, qa);
  const bool save = probs.defined();
  if (save) detail::check_shape(op, pa, {s.batch, s.q_heads, s.q_seq, s.kv_seq}, qa);
  if (window < 0) detail::fail(op, str("window = ", window, " must be >= 0 (0: no window)"));
  const Device dev = save ? detail::check_device(op, {oa, pa, qa, ka, va})
                          : detail::check_device(op, {oa, qa, ka, va});
  if (key_start.defined() && key_start.device() != dev) {
    detail::fail(op, str("q is ", q.describe(), " but key_start is ", key_start.describe(),
                         "; move them to one device"));
  }
  if (dev == Device::cuda) {
    if (save) {
      detail::fail(op,
                   "saving probs is not supported on CUDA: pass an undefined probs (inference); "
                   "to train, call attention_forward_lse and attention_backward_lse, which "
                   "save lse and recompute the probabilities");
    }
    const DType dt = detail::check_cuda_float(op, {oa, qa, ka, va});
    check_cuda_attention_layout(op, s.head_dim, {oa, qa, ka, va});
    if (key_start.defined()) {
      // The values stay on the device (not checked: ops.h's range is the caller's contract).
      detail::check_shape(op, sa, {s.batch, s.q_seq}, qa);
      if (key_start.dtype() != DType::i64) {
        detail::fail(op, str("key_start is ", key_start.describe(), "; expected i64"));
      }
    }
    for (const Arg& in : {qa, ka, va}) detail::check_no_overlap(op, oa, in);
    const cuda::DenseShape ds{s.batch, s.q_seq, s.kv_seq, s.q_heads, s.kv_heads, s.head_dim};
    cuda::attention_forward(dt, out.raw(), q.raw(), k.raw(), v.raw(),
                            key_start.defined() ? key_start.data<int64_t>() : nullptr, ds,
                            static_cast<float>(scale), window);
    return;
  }
  if (key_start.defined()) check_key_start(op, sa, qa, s);
  const DType dt = save ? detail::check_float(op, {oa, pa, qa, ka, va})
                        : detail::check_float(op, {oa, qa, ka, va});
  for (const Arg& in : {qa, ka, va}) {
    detail::check_no_overlap(op, oa, in);
    if (save) detail::check_no_overlap(op, pa, in);
  }
  const int64_t* ks = key_start.defined() ? key_start.data<int64_t>() : nullptr;
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_forward<T>(out.data<T>(), save ? probs.data<T>() : nullptr, q.data<T>(),
                              k.data<T>(), v.data<T>(), ks, s, scale, window);
  });
}

void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& probs, double scale) {
  constexpr const char* op = "attention_backward";
  const Arg dqa{"dq", dq}, dka{"dk", dk}, dva{"dv", dv}, doa{"dout", dout}, qa{"q", q}, ka{"k", k},
      va{"v", v}, pa{"probs", probs};
  const cpu::AttentionShape s = check_qkv(op, qa, ka, va);
  detail::check_same_shape(op, doa, qa);
  detail::check_defined(op, pa);
  detail::check_shape(op, pa, {s.batch, s.q_heads, s.q_seq, s.kv_seq}, qa);
  detail::check_same_shape(op, dqa, qa);
  detail::check_same_shape(op, dka, ka);
  detail::check_same_shape(op, dva, va);
  if (detail::check_device(op, {dqa, dka, dva, doa, qa, ka, va, pa}) == Device::cuda) {
    detail::no_cuda_kernel(op);
  }
  const DType dt = detail::check_float(op, {dqa, dka, dva, doa, qa, ka, va, pa});
  // dq, dk, dv are written while q, k, v, dout and probs are still being read.
  for (const Arg& grad : {dqa, dka, dva}) {
    for (const Arg& in : {doa, qa, ka, va, pa}) detail::check_no_overlap(op, grad, in);
  }
  detail::check_no_overlap(op, dqa, dka);
  detail::check_no_overlap(op, dqa, dva);
  detail::check_no_overlap(op, dka, dva);
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_backward<T>(dq.data<T>(), dk.data<T>(), dv.data<T>(), dout.data<T>(),
                               q.data<T>(), k.data<T>(), v.data<T>(), probs.data<T>(), s, scale);
  });
}

namespace {

// window >= 0; key_start defined: (B, Tq) i64 on q's device, its values checked on the CPU.
void check_window_and_key_start(const char* op, int64_t window, const Arg& sa, const Arg& qa,
                                const cpu::AttentionShape& s) {
  if (window < 0) detail::fail(op, str("window = ", window, " must be >= 0 (0: no window)"));
  const Tensor& ks = sa.tensor;
  if (!ks.defined()) return;
  if (ks.device() != qa.tensor.device()) {
    detail::fail(op, str("q is ", qa.tensor.describe(), " but key_start is ", ks.describe(),
                         "; move them to one device"));
  }
  if (ks.device() == Device::cuda) {
    // The values stay on the device (not checked: ops.h's range is the caller's contract).
    detail::check_shape(op, sa, {s.batch, s.q_seq}, qa);
    if (ks.dtype() != DType::i64) {
      detail::fail(op, str("key_start is ", ks.describe(), "; expected i64"));
    }
  } else {
    check_key_start(op, sa, qa, s);
  }
}

// lse (B, Hq, Tq): f32, or on the CPU also q's dtype.
void check_lse(const char* op, const Arg& la, const Arg& qa, const cpu::AttentionShape& s) {
  detail::check_defined(op, la);
  detail::check_shape(op, la, {s.batch, s.q_heads, s.q_seq}, qa);
  const DType dt = la.tensor.dtype();
  const bool cpu_same = la.tensor.device() == Device::cpu && dt == qa.tensor.dtype();
  if (dt != DType::f32 && !cpu_same) {
    detail::fail(op, str(la.name, " is ", la.tensor.describe(), "; expected f32 (on the CPU also ",
                         dtype_name(qa.tensor.dtype()), ", q's dtype)"));
  }
}

}  // namespace

void attention_forward_lse(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k,
                           const Tensor& v, double scale, int64_t window, const Tensor& key_start) {
  constexpr const char* op = "attention_forward_lse";
  const Arg oa{"out", out}, la{"lse", lse}, qa{"q", q}, ka{"k", k}, va{"v", v},
      sa{"key_start", key_start};
  const cpu::AttentionShape s = check_qkv(op, qa, ka, va);
  detail::check_same_shape(op, oa, qa);
  check_lse(op, la, qa, s);
  const Device dev = detail::check_device(op, {oa, la, qa, ka, va});
  check_window_and_key_start(op, window, sa, qa, s);
  for (const Arg& in : {qa, ka, va}) {
    detail::check_no_overlap(op, oa, in);
    detail::check_no_overlap(op, la, in);
  }
  detail::check_no_overlap(op, la, oa);
  const int64_t* ks = key_start.defined() ? key_start.data<int64_t>() : nullptr;
  if (dev == Device::cuda) {
    const DType dt = detail::check_cuda_float(op, {oa, qa, ka, va});
    check_cuda_attention_layout(op, s.head_dim, {oa, qa, ka, va});
    const cuda::DenseShape ds{s.batch, s.q_seq, s.kv_seq, s.q_heads, s.kv_heads, s.head_dim};
    cuda::attention_forward_lse(dt, out.raw(), lse.data<float>(), q.raw(), k.raw(), v.raw(), ks, ds,
                                static_cast<float>(scale), window);
    return;
  }
  const DType dt = detail::check_float(op, {oa, qa, ka, va});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    if (lse.dtype() == DType::f32) {
      cpu::attention_forward_lse<T, float>(out.data<T>(), lse.data<float>(), q.data<T>(),
                                           k.data<T>(), v.data<T>(), ks, s, scale, window);
    } else {
      cpu::attention_forward_lse<T, T>(out.data<T>(), lse.data<T>(), q.data<T>(), k.data<T>(),
                                       v.data<T>(), ks, s, scale, window);
    }
  });
}

void attention_backward_lse(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q,
                            const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                            double scale, int64_t window, const Tensor& key_start) {
  constexpr const char* op = "attention_backward_lse";
  const Arg dqa{"dq", dq}, dka{"dk", dk}, dva{"dv", dv}, doa{"dout", dout}, qa{"q", q}, ka{"k", k},
      va{"v", v}, oa{"out", out}, la{"lse", lse}, sa{"key_start", key_start};
  const cpu::AttentionShape s = check_qkv(op, qa, ka, va);
  detail::check_same_shape(op, doa, qa);
  detail::check_same_shape(op, oa, qa);
  check_lse(op, la, qa, s);
  detail::check_same_shape(op, dqa, qa);
  detail::check_same_shape(op, dka, ka);
  detail::check_same_shape(op, dva, va);
  const Device dev = detail::check_device(op, {dqa, dka, dva, doa, qa, ka, va, oa, la});
  check_window_and_key_start(op, window, sa, qa, s);
  // dq, dk, dv are written while the inputs are still being read.
  for (const Arg& grad : {dqa, dka, dva}) {
    for (const Arg& in : {doa, qa, ka, va, oa, la}) detail::check_no_overlap(op, grad, in);
  }
  detail::check_no_overlap(op, dqa, dka);
  detail::check_no_overlap(op, dqa, dva);
  detail::check_no_overlap(op, dka, dva);
  const int64_t* ks = key_start.defined() ? key_start.data<int64_t>() : nullptr;
  if (dev == Device::cuda) {
    const DType dt = detail::check_cuda_float(op, {dqa, dka, dva, doa, qa, ka, va, oa});
    check_cuda_attention_layout(op, s.head_dim, {dqa, dka, dva, doa, qa, ka, va, oa});
    if (s.q_seq != s.kv_seq) {
      detail::fail(
          op, str("q has shape ", shape_str(q.shape()), " and k has shape ", shape_str(k.shape()),
                  ": the CUDA backward needs Tq == Tk (training); "
                  "run a KV-cache offset (Tq < Tk) on the CPU"));
    }
    const cuda::DenseShape ds{s.batch, s.q_seq, s.kv_seq, s.q_heads, s.kv_heads, s.head_dim};
    cuda::attention_backward_lse(dt, dq.raw(), dk.raw(), dv.raw(), dout.raw(), q.raw(), k.raw(),
                                 v.raw(), out.raw(), lse.data<float>(), ks, ds,
                                 static_cast<float>(scale), window);
    return;
  }
  const DType dt = detail::check_float(op, {dqa, dka, dva, doa, qa, ka, va, oa});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    if (lse.dtype() == DType::f32) {
      cpu::attention_backward_lse<T, float>(dq.data<T>(), dk.data<T>(), dv.data<T>(),
                                            dout.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(),
                                            out.data<T>(), lse.data<float>(), ks, s, scale, window);
    } else {
      cpu::attention_backward_lse<T, T>(dq.data<T>(), dk.data<T>(), dv.data<T>(), dout.data<T>(),
                                        q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(),
                                        lse.data<T>(), ks, s, scale, window);
    }
  });
}

}  // namespace tune::ops
