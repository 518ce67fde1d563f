// The CPU's row argmax (the reference of the CUDA kernel).
#pragma once

#include <cstdint>

namespace tune::cpu {

// out[r] = the first column of the largest value of row r of x [n, c]; NaNs are never chosen (a
// row of NaNs gives 0).
template <typename T>
void argmax_rows(int64_t* out, const T* x, int64_t n, int64_t c);

}  // namespace tune::cpu
