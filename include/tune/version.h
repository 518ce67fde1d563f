// What this build is: version and the facts `tune env` prints.
#pragma once

#include <string>

namespace tune {

const char* version();

struct BuildInfo {
  std::string version, compiler, build_type, blas;
  bool cuda = false;
};
BuildInfo build_info();

}  // namespace tune
