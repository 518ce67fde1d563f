// Small file helpers the io layer is built on.
//
// Everything tune.cpp writes that a user keeps (checkpoints, exports, configs) goes through
// AtomicFile (DESIGN.md decision 6): bytes go to a temporary name in the same directory, are
// fsync'd, then renamed over the target. A reader therefore sees either the old file or the
// complete new one, never a half-written file, even if the process is killed or the disk fills.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace tune::io {

// Reads and parses a JSON file. A missing or unreadable file names the path and the OS reason;
// a parse error names the file, line and column, shows the offending line, and says to fix it.
nlohmann::json read_json_file(const std::string& path);

// Writes `bytes` to `path` atomically (see AtomicFile). On any failure the temporary is removed,
// the old file (if any) is untouched, and tune::Error says what failed and why.
void write_file_atomic(const std::string& path, std::string_view bytes);

// A file written in pieces and published in one step:
//   AtomicFile f(path); f.write(p, n); ...; f.commit();
// The temporary is `path + ".tmp.<pid>"` (same directory, so the rename cannot cross file
// systems). commit() fsyncs the data, renames, and fsyncs the directory so the new name survives
// a power loss. Destroying the object without commit() (an exception, an early return) removes
// the temporary and leaves `path` as it was. Not thread-safe; one writer per target path.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&& other) noexcept;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  uint64_t bytes_written() const { return written_; }

 private:
  void abandon() noexcept;  // closes and removes the temporary

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  uint64_t written_ = 0;
};

// True when `path` names a regular file (following symlinks); false for directories and for
// paths that do not exist or cannot be examined.
bool file_exists(const std::string& path);

}  // namespace tune::io
