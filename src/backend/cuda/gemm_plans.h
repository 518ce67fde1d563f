// Which of cuBLASLt's candidate algorithms each distinct product runs (gemm.cu times them at the
// product's first call), kept in a plan file per GPU kind and cuBLASLt version so that later
// processes make the same choices: a resumed run rounds as the run it resumes did. Host code only
// (gemm_plans.cpp: nvcc's front end does not take <filesystem>).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "backend/cuda/cuda_kernels.h"

namespace tune::cuda {

// What cuBLASLt's heuristic depends on: one plan per distinct key.
struct GemmKey {
  DType dtype, c_dtype;
  Trans ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  uint32_t align_a, align_b, align_c;
  bool bias;
  Epilogue epilogue;
  int batch;  // a strided batch's members (1: a single product) and their strides
  int64_t stride_a, stride_b, stride_c;
  bool operator==(const GemmKey&) const = default;
};
struct GemmKeyHash {
  size_t operator()(const GemmKey& k) const;
};

// False when TUNE_GEMM_TUNING=0: every product keeps the heuristic's first choice.
bool gemm_tuning_enabled();

// The choices made on one GPU. The file (~/.cache/tune/gemm/<GPU>-sm<cc>-<SMs>sms-cublasLt<v>.txt;
// none without $HOME) is read on first use and appended to, one line per choice with O_APPEND,
// so that processes sharing it do not tear each other's lines; a torn line of a killed process is
// skipped when read, and of two lines for one key the later wins. A file that cannot be written
// leaves the choices to this process.
class GemmPlanFile {
 public:
  struct Choice {
    int candidates = 0;  // how many the heuristic offered: a different count, a stale choice
    int chosen = 0;
  };

  static GemmPlanFile& of_current_device();
  explicit GemmPlanFile(int device);

  // The recorded choice for the key, if it was made among `candidates`.
  bool find(const GemmKey& key, int candidates, int& chosen);
  void record(const GemmKey& key, Choice choice);
  const std::string& path() const { return path_; }

 private:
  std::mutex mu_;
  std::unordered_map<GemmKey, Choice, GemmKeyHash> choices_;
  std::string path_;
  bool unwritable_ = false;
};

}  // namespace tune::cuda
