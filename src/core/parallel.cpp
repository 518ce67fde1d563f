#include "tune/core/parallel.h"

#include <omp.h>

namespace tune {

int num_threads() {
  return omp_get_max_threads();
}

// OpenBLAS is the OpenMP build, so it follows omp_set_num_threads as well.
void set_num_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
}

}  // namespace tune
