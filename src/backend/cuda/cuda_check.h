// TUNE_CUDA_CHECK: a failing CUDA call becomes a tune::Error carrying the statement, the error
// name and the source location.
#pragma once

#include <cuda_runtime.h>

#include "tune/core/error.h"

#define TUNE_CUDA_CHECK(stmt)                                                                     \
  do {                                                                                            \
    cudaError_t tune_cuda_err_ = (stmt);                                                          \
    if (tune_cuda_err_ != cudaSuccess)                                                            \
      throw ::tune::Error(::tune::str("CUDA error ", cudaGetErrorName(tune_cuda_err_), " (",      \
                                      cudaGetErrorString(tune_cuda_err_), ") in ", #stmt, " at ", \
                                      __FILE__, ":", __LINE__));                                  \
  } while (0)
