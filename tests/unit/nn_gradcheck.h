// Shared by the nn gradient checks (nn_gradcheck_test.cpp, nn_gradcheck_model_test.cpp): seeded
// parameter filling and the comparison of an analytic gradient with central finite differences
// of a scalar loss, all in f64 (DESIGN.md decision 1).
//
// The measure is ||analytic - numeric|| / ||numeric|| over one tensor (or over the elements of it
// that were perturbed), required below kGradTolerance. With f64 and a step of 1e-6 a central
// difference is off by ~1e-10 |L| from rounding and ~1e-12 from truncation, so gradients of norm
// above ~1e-3 |L| (which the parameter filling below ensures) stay near 1e-8, while a wrong factor
// anywhere (even 1.01, see NnGradHarness) fails by orders of magnitude. Set
// TUNE_GRADCHECK_VERBOSE=1 to print every comparison with the norm of its numeric gradient.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"
#include "tune/core/rng.h"
#include "tune/nn/params.h"

namespace tune::test {

constexpr double kFdStep = 1e-6;
constexpr double kGradTolerance = 1e-6;
// Tensors up to this size are checked element by element; larger ones at kFdSample elements.
constexpr int64_t kFdAllUpTo = 64;
constexpr int64_t kFdSample = 20;
// Check every element regardless of size.
constexpr int64_t kFdAll = -1;

// Every parameter (frozen ones too) gets scale * N(0, 1) from Philox (seed, stream = index),
// plus 1 for norm weights (named "...norm.weight", or GPT-2's "...ln_*.weight"), which start at
// ones and stay near them.
// Norm weights near zero would shrink every gradient behind them (through qk-norm, by the
// product of two) until the finite differences' rounding, ~1e-10 of the loss, dominates.
inline void fill_params(nn::ParamStore& params, uint64_t seed, double scale = 0.5) {
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    Tensor p = params.param(i);
    const std::string& name = params.info(i).name;
    const bool norm_weight = name.ends_with("norm.weight") ||
                             (name.find("ln_") != std::string::npos && name.ends_with(".weight"));
    const double offset = norm_weight ? 1.0 : 0.0;
    for (int64_t j = 0; j < p.numel(); ++j)
      p.data<double>()[j] =
          offset + scale * normal01(seed, static_cast<uint64_t>(i), static_cast<uint64_t>(j));
  }
}

// Which elements of a tensor of `numel` to perturb: all of them for small tensors (or when
// `sample` is kFdAll), else `sample` distinct indices spread over the whole tensor.
inline std::vector<int64_t> fd_indices(int64_t numel, int64_t sample) {
  std::vector<int64_t> idx;
  if (sample == kFdAll || numel <= std::max(kFdAllUpTo, sample)) {
    for (int64_t i = 0; i < numel; ++i) idx.push_back(i);
    return idx;
  }
  const int64_t stride = numel / sample;
  for (int64_t k = 0; k < sample; ++k) idx.push_back(k * stride + (k * 7 + 3) % stride);
  return idx;
}

struct FdComparison {
  double rel_error = 0;
  double numeric_norm = 0;
  int64_t checked = 0;
};

// Compares `analytic` (same shape as x) with central differences of `loss` with respect to the
// selected elements of the f64 tensor x, which is perturbed in place and restored.
inline FdComparison compare_with_fd(Tensor x, const Tensor& analytic,
                                    const std::function<double()>& loss, int64_t sample) {
  TUNE_ASSERT(x.dtype() == DType::f64 && analytic.numel() == x.numel(),
              "compare_with_fd: ", x.describe(), " vs ", analytic.describe());
  double* p = x.data<double>();
  double diff = 0, ref = 0;
  FdComparison c;
  for (int64_t i : fd_indices(x.numel(), sample)) {
    const double saved = p[i];
    p[i] = saved + kFdStep;
    const double plus = loss();
    p[i] = saved - kFdStep;
    const double minus = loss();
    p[i] = saved;
    const double numeric = (plus - minus) / (2 * kFdStep);
    const double d = analytic.item(i) - numeric;
    diff += d * d;
    ref += numeric * numeric;
    ++c.checked;
  }
  c.numeric_norm = std::sqrt(ref);
  c.rel_error = ref > 0 ? std::sqrt(diff / ref) : std::sqrt(diff);
  return c;
}

// EXPECTs the analytic gradient of `what` to match finite differences. A zero numeric gradient
// would make the comparison vacuous, so it fails too.
inline void expect_gradient(const std::string& what, Tensor x, const Tensor& analytic,
                            const std::function<double()>& loss, int64_t sample = kFdSample) {
  const FdComparison c = compare_with_fd(x, analytic, loss, sample);
  if (std::getenv("TUNE_GRADCHECK_VERBOSE"))
    std::printf("  %-60s %4lld elements  rel error %.2e norm %.2e\n", what.c_str(),
                static_cast<long long>(c.checked), c.rel_error, c.numeric_norm);
  EXPECT_LT(c.rel_error, kGradTolerance) << what << " (" << c.checked << " elements)";
  EXPECT_GT(c.numeric_norm, 0.0) << what << ": zero gradient, nothing checked";
}

// The gradient of trainable parameter i inside a snapshot of ParamStore::grads().
inline Tensor grad_in(const nn::ParamStore& params, const Tensor& grads, int i) {
  const nn::ParamInfo& p = params.info(i);
  return grads.narrow(p.offset, numel_of(p.shape)).view(p.shape);
}

// Checks every trainable parameter's gradient (from `grads`, a snapshot of params.grads() taken
// after backward) against finite differences of `loss`. Returns how many tensors were checked.
inline int expect_param_gradients(const nn::ParamStore& params, const Tensor& grads,
                                  const std::function<double()>& loss, int64_t sample = kFdSample) {
  int checked = 0;
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    if (params.info(i).role != nn::Role::trainable) continue;
    expect_gradient(params.info(i).name, params.param(i), grad_in(params, grads, i), loss, sample);
    ++checked;
  }
  return checked;
}

}  // namespace tune::test
