// `tune env`: how this binary was built and what it sees, for bug reports and CI logs.
#include <cstdio>

#include "cli/commands.h"
#include "tune/core/device.h"
#include "tune/core/error.h"
#include "tune/core/parallel.h"
#include "tune/version.h"

namespace tune::cli {

int env_command(const Args& args) {
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: tune env\n\nPrints the version, compiler, build type, BLAS, CPU threads "
          "(OMP_NUM_THREADS sets them) and CUDA: built or not, and the devices seen.\n");
      return 0;
    }
    throw Error(str("env takes no arguments, got \"", a, "\""));
  }
  BuildInfo b = build_info();
  std::printf("tune      %s\n", b.version.c_str());
  std::printf("compiler  %s\n", b.compiler.c_str());
  std::printf("build     %s\n", b.build_type.c_str());
  std::printf("blas      %s\n", b.blas.c_str());
  std::printf("threads   %d\n", num_threads());
  std::printf("cuda      %s\n", b.cuda ? "yes" : "no");
  if (b.cuda) std::printf("devices   %s\n", cuda_describe().c_str());
  return 0;
}

}  // namespace tune::cli
