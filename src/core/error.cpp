#include "tune/core/error.h"

namespace tune {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + ")";
}

void throw_assert(const char* expr, const char* file, int line, const std::string& msg) {
  throw Error(str("internal error: ", expr, " failed at ", file, ":", line, msg.empty() ? "" : ": ",
                  msg, " (this is a bug in tune.cpp; please report it)"));
}

}  // namespace tune
