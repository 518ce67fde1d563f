// The `tune` subcommands. Each takes its arguments (after the subcommand name) and returns the
// process exit code; errors travel as tune::Error and main() prints them.
#pragma once

#include <string>
#include <vector>

namespace tune::cli {

using Args = std::vector<std::string>;

int env_command(const Args& args);
int check_golden_command(const Args& args);

}  // namespace tune::cli
