// The paged KV cache: writing new keys and values into their slots, and one-query-per-sequence
// attention over the pages (ops.h says what the layout is).
#include <algorithm>
#include <cstdint>

#include "backend/cpu/kv_cache_kernels.h"
#include "backend/cuda/attention_kernels.h"
#include "backend/cuda/kv_cache_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

namespace {

// k_pages (P, S, Hkv, D), with v_pages the same shape and dtype.
void check_pages(const char* op, const Arg& kp, const Arg& vp) {
  detail::check_rank(op, kp, 4);
  detail::check_same_shape(op, vp, kp);
  if (vp.tensor.dtype() != kp.tensor.dtype()) {
    detail::fail(op, str(kp.name, " is ", kp.tensor.describe(), " but ", vp.name, " is ",
                         vp.tensor.describe(), "; the two caches share one dtype"));
  }
}

void check_i32(const char* op, const Arg& a) {
  if (a.tensor.dtype() != DType::i32) {
    detail::fail(op, str(a.name, " is ", a.tensor.describe(), "; expected i32"));
  }
}

struct DecodeArgs {
  cpu::DecodeShape shape;
  int64_t pages;
};

// q (N, Hq, D) against pages (P, S, Hkv, D) and block_table (N, max_pages).
DecodeArgs check_decode_shapes(const char* op, const Arg& qa, const Arg& kp, const Arg& bt) {
  detail::check_rank(op, qa, 3);
  detail::check_rank(op, kp, 4);
  detail::check_rank(op, bt, 2);
  const Tensor& q = qa.tensor;
  const Tensor& k = kp.tensor;
  const cpu::DecodeShape s{q.size(0), q.size(1), k.size(2),
                           q.size(2), k.size(1), bt.tensor.size(1)};
  if (k.size(3) != s.head_dim) {
    detail::fail(op, str(qa.name, " has shape ", shape_str(q.shape()), " but ", kp.name,
                         " has shape ", shape_str(k.shape()), "; expected head dims to match"));
  }
  if (s.kv_heads == 0 || s.q_heads % s.kv_heads != 0) {
    detail::fail(op, str(qa.name, " has shape ", shape_str(q.shape()), " and ", kp.name,
                         " has shape ", shape_str(k.shape()), ": the ", s.q_heads,
                         " query heads must be a multiple of the ", s.kv_heads, " kv heads"));
  }
  detail::check_shape(op, bt, {s.seqs, s.max_pages}, qa);
  return {s, k.size(0)};
}

// CPU only: every length in [1, max_pages * S], every page a sequence uses in [0, P).
void check_decode_values(const char* op, const DecodeArgs& a, const Tensor& block_table,
                         const Tensor& seq_lens) {
  const cpu::DecodeShape& s = a.shape;
  const int32_t* lens = seq_lens.data<int32_t>();
  const int32_t* table = block_table.data<int32_t>();
  const int64_t capacity = s.max_pages * s.page_size;
  for (int64_t n = 0; n < s.seqs; ++n) {
    if (lens[n] < 1 || lens[n] > capacity) {
      detail::fail(op, str("seq_lens[", n, "] = ", lens[n], " is outside [1, ", capacity,
                           "]: block_table holds ", s.max_pages, " pages of ", s.page_size,
                           " positions per sequence, and the query's own key must be cached"));
    }
    const int64_t used = (lens[n] + s.page_size - 1) / s.page_size;
    for (int64_t p = 0; p < used; ++p) {
      const int32_t page = table[n * s.max_pages + p];
      if (page < 0 || page >= a.pages) {
        detail::fail(op, str("block_table[", n, ", ", p, "] = ", page, " is outside [0, ", a.pages,
                             "): the cache has ", a.pages, " pages"));
      }
    }
  }
}

cuda::PagedShape paged_shape(const cpu::DecodeShape& s) {
  return {s.seqs, s.q_heads, s.kv_heads, s.head_dim, s.page_size, s.max_pages};
}

// The CUDA kernel reads 16-byte packs: head dims a multiple of 8 up to 256, 16-byte aligned starts.
void check_cuda_layout(const char* op, int64_t head_dim, std::initializer_list<Arg> args) {
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

void kv_cache_write(Tensor& k_pages, Tensor& v_pages, const Tensor& k, const Tensor& v,
                    const Tensor& slots) {
  constexpr const char* op = "kv_cache_write";
  const Arg kpa{"k_pages", k_pages}, vpa{"v_pages", v_pages}, ka{"k", k}, va{"v", v},
      sa{"slots", slots};
  check_pages(op, kpa, vpa);
  detail::check_rank(op, ka, 3);
  detail::check_shape(op, ka, {k.size(0), k_pages.size(2), k_pages.size(3)}, kpa);
  detail::check_same_shape(op, va, ka);
  detail::check_rank(op, sa, 1);
  detail::check_shape(op, sa, {k.size(0)}, ka);
  detail::check_index(op, sa);
  for (const Arg* a : {&ka, &va}) {
    if (a->tensor.dtype() != k_pages.dtype()) {
      detail::fail(op, str(a->name, " is ", a->tensor.describe(), " but k_pages is ",
                           k_pages.describe(), "; rows are stored in the cache's dtype"));
    }
  }
  const Device dev = detail::check_device(op, {kpa, vpa, ka, va, sa});
  for (const Arg* in : {&ka, &va}) {
    detail::check_no_overlap(op, kpa, *in);
    detail::check_no_overlap(op, vpa, *in);
  }
  const int64_t n = k.size(0), slots_total = k_pages.size(0) * k_pages.size(1);
  const int64_t row_bytes = k.size(1) * k.size(2) * static_cast<int64_t>(dtype_size(k.dtype()));
  if (dev == Device::cuda) {
    cuda::kv_cache_write(k_pages.raw(), v_pages.raw(), k.raw(), v.raw(), slots.raw(), slots.dtype(),
                         n, row_bytes, slots_total);
    return;
  }
  detail::dispatch_index(slots.dtype(), [&](auto tag) {
    using I = decltype(tag);
    const I* sl = slots.data<I>();
    for (int64_t r = 0; r < n; ++r) {
      if (static_cast<int64_t>(sl[r]) >= slots_total) {
        detail::fail(op, str("slots[", r, "] = ", static_cast<int64_t>(sl[r]),
                             " is outside the cache: k_pages ", shape_str(k_pages.shape()),
                             " holds ", slots_total, " slots (negative skips a row)"));
      }
    }
    cpu::kv_cache_write<I>(k_pages.raw(), v_pages.raw(), k.raw(), v.raw(), sl, n, row_bytes);
  });
}

void attention_decode(Tensor& out, const Tensor& q, const Tensor& k_pages, const Tensor& v_pages,
                      const Tensor& block_table, const Tensor& seq_lens, double scale,
                      int64_t window, const Tensor& workspace) {
  constexpr const char* op = "attention_decode";
  const Arg oa{"out", out}, qa{"q", q}, kpa{"k_pages", k_pages}, vpa{"v_pages", v_pages},
      ba{"block_table", block_table}, la{"seq_lens", seq_lens};
  check_pages(op, kpa, vpa);
  const DecodeArgs a = check_decode_shapes(op, qa, kpa, ba);
  detail::check_same_shape(op, oa, qa);
  detail::check_shape(op, la, {a.shape.seqs}, qa);
  check_i32(op, ba);
  check_i32(op, la);
  if (window < 0) detail::fail(op, str("window = ", window, " must be >= 0 (0: no window)"));
  const Device dev = detail::check_device(op, {oa, qa, kpa, vpa, ba, la});
  for (const Arg* in : {&qa, &kpa, &vpa}) detail::check_no_overlap(op, oa, *in);
  if (dev == Device::cuda) {
    const DType dt = detail::check_cuda_float(op, {oa, qa, kpa, vpa});
    check_cuda_layout(op, a.shape.head_dim, {oa, qa, kpa, vpa});
    const cuda::PagedShape ps = paged_shape(a.shape);
    float* ws = nullptr;
    if (workspace.defined()) {
      const int64_t need = cuda::attention_decode_workspace_size(ps, window);
      if (workspace.device() != Device::cuda || workspace.dtype() != DType::f32 ||
          workspace.numel() < need) {
        detail::fail(op, str("workspace is ", workspace.describe(), "; expected at least ", need,
                             " f32 elements on CUDA (attention_decode_workspace_size)"));
      }
      ws = workspace.data<float>();
    }
    cuda::attention_decode(dt, out.raw(), q.raw(), k_pages.raw(), v_pages.raw(),
                           block_table.data<int32_t>(), seq_lens.data<int32_t>(), ps,
                           static_cast<float>(scale), window, ws);
    return;
  }
  const DType dt = detail::check_float(op, {oa, qa, kpa, vpa});
  check_decode_values(op, a, block_table, seq_lens);
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_decode<T>(out.data<T>(), q.data<T>(), k_pages.data<T>(), v_pages.data<T>(),
                             block_table.data<int32_t>(), seq_lens.data<int32_t>(), a.shape, scale,
                             window);
  });
}

int64_t attention_decode_workspace_size(const Tensor& q, const Tensor& k_pages,
                                        const Tensor& block_table, int64_t window) {
  constexpr const char* op = "attention_decode_workspace_size";
  const Arg qa{"q", q}, kpa{"k_pages", k_pages}, ba{"block_table", block_table};
  const DecodeArgs a = check_decode_shapes(op, qa, kpa, ba);
  if (window < 0) detail::fail(op, str("window = ", window, " must be >= 0 (0: no window)"));
  if (detail::check_device(op, {qa, kpa, ba}) == Device::cpu) return 0;
  return cuda::attention_decode_workspace_size(paged_shape(a.shape), window);
}

}  // namespace tune::ops
