#include "cli/commands.h"
#include "tune/core/error.h"

namespace tune::cli {
int check_golden_command(const Args&) { throw Error("check-golden: not built yet"); }
}  // namespace tune::cli
