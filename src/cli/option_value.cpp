#include "cli/commands.h"
#include "tune/core/error.h"

namespace tune::cli {

std::string option_value(const Args& args, size_t& i, const char* what) {
  TUNE_CHECK(i + 1 < args.size(), args[i], " needs a value: ", what);
  return args[++i];
}

}  // namespace tune::cli
