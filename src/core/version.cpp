#include "tune/version.h"

#include "build_config.h"

namespace tune {

const char* version() {
  return TUNE_VERSION;
}

BuildInfo build_info() {
#ifdef TUNE_HAVE_CUDA
  constexpr bool kCuda = true;
#else
  constexpr bool kCuda = false;
#endif
  return {TUNE_VERSION, TUNE_COMPILER, TUNE_BUILD_TYPE, TUNE_BLAS, kCuda};
}

}  // namespace tune
