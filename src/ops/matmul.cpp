// matmul: c = alpha * op(a) @ op(b) + beta * c (+ bias) on 2-D tensors; BLAS does the work. And
// the products with GELU after them (GPT-2's MLP), fused into the product on CUDA.
#include <climits>
#include <cstddef>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cuda/cuda_kernels.h"
#include "ops/op_checks.h"
#include "tune/ops/ops.h"

namespace tune::ops {

using detail::Arg;

namespace {

constexpr const char* kMatmul = "matmul";

cpu::Trans to_cpu(Transpose t) {
  return t == Transpose::yes ? cpu::Trans::yes : cpu::Trans::no;
}

// matmul's checks and dispatch, with op naming the caller. An epilogue (CUDA only: on the CPU the
// callers run it as its op) writes or reads aux, as cuda::gemm says.
// A batch (CUDA only) runs more products of c's shape, as cuda::gemm_batched says.
// On CUDA a defined c_in (matmul_add's src) is what beta multiplies instead of c.
void product(const char* op, Tensor& c, const Tensor& a, Transpose ta, const Tensor& b,
             Transpose tb, double alpha, double beta, const Tensor& bias,
             cuda::Epilogue epilogue = cuda::Epilogue::none, const Tensor& aux = Tensor(),
             const cuda::Batch& batch = {}, const Tensor& c_in = Tensor()) {
  const Arg ca{"c", c}, aa{"a", a}, ba{"b", b};
  detail::check_rank(op, aa, 2);
  detail::check_rank(op, ba, 2);
  detail::check_rank(op, ca, 2);
  // op(a) is (m, k), op(b) is (k, n).
  const char* op_a = ta == Transpose::yes ? "a^T" : "a";
  const char* op_b = tb == Transpose::yes ? "b^T" : "b";
  const int64_t m = ta == Transpose::no ? a.size(0) : a.size(1);
  const int64_t k = ta == Transpose::no ? a.size(1) : a.size(0);
  const int64_t kb = tb == Transpose::no ? b.size(0) : b.size(1);
  const int64_t n = tb == Transpose::no ? b.size(1) : b.size(0);
  if (k != kb) {
    detail::fail(op, str("inner dimensions differ: ", op_a, " is ", shape_str({m, k}),
                         " (a has shape ", shape_str(a.shape()), ") but ", op_b, " is ",
                         shape_str({kb, n}), " (b has shape ", shape_str(b.shape()), ")"));
  }
  if (c.shape() != Shape{m, n}) {
    detail::fail(op, str("c has shape ", shape_str(c.shape()), " but ", op_a, " @ ", op_b,
                         " has shape ", shape_str({m, n}), " (a has shape ", shape_str(a.shape()),
                         ", b has shape ", shape_str(b.shape()), ")"));
  }
  for (int64_t d : {m, n, k}) {
    if (d > INT_MAX) {
      detail::fail(op, str("dimension ", d, " exceeds the BLAS limit of ", INT_MAX,
                           " (a has shape ", shape_str(a.shape()), ", b has shape ",
                           shape_str(b.shape()), "); split the product"));
    }
  }
  const bool on_cuda = detail::check_device(op, {ca, aa, ba}) == Device::cuda;
  detail::check_no_overlap(op, ca, aa);
  detail::check_no_overlap(op, ca, ba);
  if (bias.defined()) {
    const Arg bias_arg{"bias", bias};
    detail::check_shape(op, bias_arg, {n}, ca);
    detail::check_device(op, {ca, bias_arg});
    if (bias.dtype() != c.dtype()) {
      detail::fail(op, str("bias is ", dtype_name(bias.dtype()), " but c is ",
                           dtype_name(c.dtype()), "; the bias takes c's dtype"));
    }
  }
  if (aux.defined()) {
    const Arg xa{"aux", aux};
    detail::check_no_overlap(op, xa, aa);
    detail::check_no_overlap(op, xa, ba);
  }
  if (on_cuda) {
    // c may be f32 when a and b are bf16 or f16: full-precision results of low-precision inputs.
    const DType ab = detail::check_cuda_float(op, {aa, ba});
    if (c.dtype() != DType::f32 || ab == DType::f32) detail::check_cuda_float(op, {ca, aa, ba});
    const cuda::Trans cta = ta == Transpose::yes ? cuda::Trans::yes : cuda::Trans::no;
    const cuda::Trans ctb = tb == Transpose::yes ? cuda::Trans::yes : cuda::Trans::no;
    if (batch.count > 1) {
      cuda::gemm_batched(ab, c.dtype(), cta, ctb, m, n, k, static_cast<float>(alpha), a.raw(),
                         a.size(1), b.raw(), b.size(1), static_cast<float>(beta), c.raw(), n,
                         batch);
      return;
    }
    cuda::gemm(ab, c.dtype(), cta, ctb, m, n, k, static_cast<float>(alpha), a.raw(), a.size(1),
               b.raw(), b.size(1), static_cast<float>(beta), c.raw(), n,
               bias.defined() ? bias.raw() : nullptr, epilogue, aux.defined() ? aux.raw() : nullptr,
               c_in.defined() ? c_in.raw() : nullptr);
    return;
  }
  TUNE_ASSERT(epilogue == cuda::Epilogue::none && batch.count == 1 && !c_in.defined(), op,
              ": the CPU runs epilogues as ops, batches product by product and adds to c");
  const DType dt = detail::check_float(op, {ca, aa, ba});
  detail::dispatch_float(dt, [&](auto tag) {
    using T = decltype(tag);
    cpu::gemm<T>(to_cpu(ta), to_cpu(tb), m, n, k, static_cast<T>(alpha), a.data<T>(), a.size(1),
                 b.data<T>(), b.size(1), static_cast<T>(beta), c.data<T>(), n);
    if (bias.defined()) cpu::add_bias<T>(c.data<T>(), bias.data<T>(), m, n);
  });
}

// matmul_gelu's and its backward's result next to pre: same shape, apart, and on CUDA (where
// pre is the epilogue's aux) the same dtype. Returns whether they are on CUDA.
bool check_beside_pre(const char* op, const Arg& out, const Arg& pre) {
  detail::check_same_shape(op, out, pre);
  detail::check_no_overlap(op, out, pre);
  const bool cuda = detail::check_device(op, {out, pre}) == Device::cuda;
  if (cuda && out.tensor.dtype() != pre.tensor.dtype()) {
    detail::fail(op, str(out.name, " is ", dtype_name(out.tensor.dtype()), " but ", pre.name,
                         " is ", dtype_name(pre.tensor.dtype())));
  }
  return cuda;
}

}  // namespace

void matmul(Tensor& c, const Tensor& a, Transpose ta, const Tensor& b, Transpose tb, double alpha,
            double beta, const Tensor& bias) {
  product(kMatmul, c, a, ta, b, tb, alpha, beta, bias);
}

void matmul_add(Tensor& c, const Tensor& a, Transpose ta, const Tensor& b, Transpose tb,
                const Tensor& src, double alpha, const Tensor& bias) {
  constexpr const char* op = "matmul_add";
  const Arg ca{"c", c}, sa{"src", src};
  detail::check_same_shape(op, sa, ca);
  if (src.dtype() != c.dtype()) {
    detail::fail(op, str("src is ", dtype_name(src.dtype()), " but c is ", dtype_name(c.dtype()),
                         "; the sum takes c's dtype"));
  }
  const bool same = src.raw() == c.raw();
  if (!same) detail::check_no_overlap(op, ca, sa);
  if (detail::check_device(op, {ca, sa}) == Device::cuda && !same) {
    product(op, c, a, ta, b, tb, alpha, 1.0, bias, cuda::Epilogue::none, Tensor(), {}, src);
    return;
  }
  if (!same) copy(c, src);
  product(op, c, a, ta, b, tb, alpha, 1.0, bias);
}

void matmul_pair(Tensor& c0, Tensor& c1, const Tensor& a0, const Tensor& a1, Transpose ta,
                 const Tensor& b0, const Tensor& b1, Transpose tb, double alpha, double beta) {
  constexpr const char* op = "matmul_pair";
  const Arg c0a{"c0", c0}, c1a{"c1", c1}, a0a{"a0", a0}, a1a{"a1", a1}, b0a{"b0", b0},
      b1a{"b1", b1};
  detail::check_same_shape(op, a0a, a1a);
  detail::check_same_shape(op, b0a, b1a);
  detail::check_same_shape(op, c0a, c1a);
  detail::check_no_overlap(op, c1a, c0a);
  for (const Arg* in : {&a0a, &b0a, &a1a, &b1a}) detail::check_no_overlap(op, c1a, *in);
  for (const Arg* in : {&a1a, &b1a}) detail::check_no_overlap(op, c0a, *in);
  // One launch when the second member of each operand lies a whole number of elements past the
  // first (or is the first): the strided batch's one stride per operand.
  auto stride = [](const Tensor& x0, const Tensor& x1) -> int64_t {
    const auto d = static_cast<const char*>(x1.raw()) - static_cast<const char*>(x0.raw());
    const auto size = static_cast<std::ptrdiff_t>(dtype_size(x0.dtype()));
    return d >= 0 && d % size == 0 ? d / size : -1;
  };
  const cuda::Batch batch{2, stride(a0, a1), stride(b0, b1), stride(c0, c1)};
  bool batched = a0.dtype() == a1.dtype() && b0.dtype() == b1.dtype() && c0.dtype() == c1.dtype() &&
                 batch.stride_a >= 0 && batch.stride_b >= 0 && batch.stride_c > 0;
  for (const Arg* t : {&a0a, &a1a, &b0a, &b1a, &c0a, &c1a})
    batched = batched && t->tensor.device() == Device::cuda;
  if (!batched) {
    product(op, c0, a0, ta, b0, tb, alpha, beta, Tensor());
    product(op, c1, a1, ta, b1, tb, alpha, beta, Tensor());
    return;
  }
  product(op, c0, a0, ta, b0, tb, alpha, beta, Tensor(), cuda::Epilogue::none, Tensor(), batch);
}

void matmul_gelu(Tensor& h, Tensor& pre, const Tensor& a, Transpose ta, const Tensor& b,
                 Transpose tb, const Tensor& bias) {
  constexpr const char* op = "matmul_gelu";
  if (check_beside_pre(op, {"h", h}, {"pre", pre})) {
    product(op, h, a, ta, b, tb, 1.0, 0.0, bias, cuda::Epilogue::gelu, pre);
    return;
  }
  product(op, pre, a, ta, b, tb, 1.0, 0.0, bias);
  gelu_tanh_forward(h, pre);
}

void matmul_gelu_backward(Tensor& dpre, const Tensor& a, Transpose ta, const Tensor& b,
                          Transpose tb, const Tensor& pre) {
  constexpr const char* op = "matmul_gelu_backward";
  if (check_beside_pre(op, {"dpre", dpre}, {"pre", pre})) {
    product(op, dpre, a, ta, b, tb, 1.0, 0.0, Tensor(), cuda::Epilogue::dgelu, pre);
    return;
  }
  product(op, dpre, a, ta, b, tb, 1.0, 0.0, Tensor());
  gelu_tanh_backward(dpre, dpre, pre);
}

}  // namespace tune::ops
