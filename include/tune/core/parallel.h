// Thread count for CPU kernels (OpenMP and OpenBLAS share it). Results are deterministic for a
// given thread count: reductions split work by a fixed rule, never by timing.
#pragma once

namespace tune {

int num_threads();
void set_num_threads(int n);

}  // namespace tune
