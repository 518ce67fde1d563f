// Small helpers shared by the unit tests: seeded random tensors, error measures, central
// finite differences and error-message matching. Header-only, and it needs nothing beyond core
// and GoogleTest.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tune/core/error.h"
#include "tune/core/rng.h"
#include "tune/core/tensor.h"

namespace tune::test {

// Standard normal values (times `scale`) from Philox stream `seed`: the same tensor on every run
// and every machine. dtype f32 or f64.
inline Tensor randn(const Shape& shape, DType dtype, uint64_t seed, double scale = 1.0) {
  Tensor t = Tensor::empty(shape, dtype);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double v = scale * normal01(seed, 0, static_cast<uint64_t>(i));
    if (dtype == DType::f64) {
      t.data<double>()[i] = v;
    } else {
      t.data<float>()[i] = static_cast<float>(v);
    }
  }
  return t;
}

// Uniform integers in [0, limit) as an i64 tensor, from Philox stream `seed`.
inline Tensor randint(const Shape& shape, int64_t limit, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::i64);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const auto r = static_cast<int64_t>(uniform01(seed, 1, static_cast<uint64_t>(i)) * limit);
    t.data<int64_t>()[i] = r < limit ? r : limit - 1;
  }
  return t;
}

// A tensor of `value` everywhere (f32 or f64), e.g. NaN to show that an output is overwritten.
inline Tensor full(const Shape& shape, DType dtype, double value) {
  Tensor t = Tensor::empty(shape, dtype);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (dtype == DType::f64) {
      t.data<double>()[i] = value;
    } else {
      t.data<float>()[i] = static_cast<float>(value);
    }
  }
  return t;
}

// Euclidean norm of a - b over the norm of b; the absolute norm when b is zero.
inline double rel_error(const Tensor& a, const Tensor& b) {
  TUNE_ASSERT(a.numel() == b.numel(), "rel_error: ", a.describe(), " vs ", b.describe());
  double diff = 0, ref = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = a.item(i) - b.item(i);
    diff += d * d;
    ref += b.item(i) * b.item(i);
  }
  return ref > 0 ? std::sqrt(diff / ref) : std::sqrt(diff);
}

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  TUNE_ASSERT(a.numel() == b.numel(), "max_abs_diff: ", a.describe(), " vs ", b.describe());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a.item(i) - b.item(i)));
  return m;
}

// sum(a * b) in double: the scalar loss <dy, y> whose gradient a backward pass computes.
inline double dot(const Tensor& a, const Tensor& b) {
  TUNE_ASSERT(a.numel() == b.numel(), "dot: ", a.describe(), " vs ", b.describe());
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += a.item(i) * b.item(i);
  return s;
}

// Central finite differences of the scalar `loss` with respect to every element of the f64
// tensor x: (loss(x + h e_i) - loss(x - h e_i)) / 2h. x is perturbed in place and restored.
inline Tensor fd_gradient(Tensor& x, const std::function<double()>& loss, double h = 1e-6) {
  TUNE_ASSERT(x.dtype() == DType::f64, "fd_gradient needs an f64 tensor, got ", x.describe());
  Tensor grad = Tensor::zeros(x.shape(), DType::f64);
  double* p = x.data<double>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double saved = p[i];
    p[i] = saved + h;
    const double plus = loss();
    p[i] = saved - h;
    const double minus = loss();
    p[i] = saved;
    grad.data<double>()[i] = (plus - minus) / (2 * h);
  }
  return grad;
}

// A fresh directory under GoogleTest's temporary folder, removed with the object.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) {
    namespace fs = std::filesystem;
    path = (fs::path(testing::TempDir()) / str("tune_", name, "_", ::getpid())).string();
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const {
    return (std::filesystem::path(path) / name).string();
  }
  // File names in the directory, sorted.
  std::vector<std::string> listing() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path))
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

// The message of the tune::Error that f throws, or "" when it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// EXPECT_TRUE(contains(message, "[op] x has shape")) prints the whole message on failure.
inline ::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

}  // namespace tune::test
