// Errors are values a user can act on (DESIGN.md decision 6): the library throws tune::Error
// with what was wrong, where (file, key, tensor, shape) and what to do. Only src/cli turns them
// into exit codes. TUNE_CHECK guards boundaries (user input, files); TUNE_ASSERT guards
// invariants inside the library and reports the source location, since it means a bug.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace tune {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// str("shape ", 3, "x", 4) -> "shape 3x4": message building without iostream boilerplate.
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

// "(2, 3, 4)" — shapes in messages are written the way PyTorch prints them.
std::string shape_str(const std::vector<int64_t>& shape);

[[noreturn]] void throw_assert(const char* expr, const char* file, int line,
                               const std::string& msg);

}  // namespace tune

#define TUNE_CHECK(cond, ...)                                   \
  do {                                                          \
    if (!(cond)) throw ::tune::Error(::tune::str(__VA_ARGS__)); \
  } while (0)

#define TUNE_ASSERT(cond, ...)                                                              \
  do {                                                                                      \
    if (!(cond)) ::tune::throw_assert(#cond, __FILE__, __LINE__, ::tune::str(__VA_ARGS__)); \
  } while (0)
