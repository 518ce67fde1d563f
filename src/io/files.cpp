#include "tune/io/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "tune/core/error.h"

namespace tune::io {

namespace {

// What a user can do about the common errno values when writing.
std::string write_hint(int err, const std::string& path) {
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      return "free some disk space and retry";
    case EACCES:
    case EPERM:
      return "check the permissions of the directory";
    case EROFS:
      return "the file system is read-only; write somewhere else";
    case ENOENT: {
      std::string dir = std::filesystem::path(path).parent_path().string();
      return str("the directory ", dir.empty() ? "." : dir, " does not exist; create it first");
    }
    default:
      return "check the path and the disk";
  }
}

std::string read_whole_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    throw Error(str("cannot open ", path, ": ", std::strerror(err),
                    err == ENOENT ? " (check the path)" : ""));
  }
  std::string text;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) text.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throw Error(str("cannot read ", path, ": ", std::strerror(err)));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

// nlohmann's message is "[json.exception.parse_error.101] parse error at line 1, column 2:
// syntax error ..."; we print our own location, so keep only the reason after the location.
std::string parse_reason(const char* what) {
  std::string_view w(what);
  size_t at = w.find("column ");
  size_t colon = at == std::string_view::npos ? w.find(": ") : w.find(": ", at);
  if (colon == std::string_view::npos) return std::string(w);
  return std::string(w.substr(colon + 2));
}

}  // namespace

nlohmann::json read_json_file(const std::string& path) {
  std::string text = read_whole_file(path);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    throw Error(
        str(path, ": the file is empty, but it should hold JSON; re-create or re-download it"));
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte counts the characters read, so the offending character is at e.byte - 1.
    size_t idx = std::min(e.byte == 0 ? size_t{0} : e.byte - 1, text.size());
    // An error at the end of input is shown just after the last token, not on a blank line.
    if (idx == text.size()) idx = text.find_last_not_of(" \t\r\n") + 1;
    size_t line_start = 0;
    if (idx > 0) {
      size_t nl = text.rfind('\n', idx - 1);
      if (nl != std::string::npos) line_start = nl + 1;
    }
    size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + idx, '\n'));
    size_t column = idx - line_start + 1;
    size_t line_end = text.find('\n', line_start);
    if (line_end == std::string::npos) line_end = text.size();
    // Show at most 100 characters of the line, centred on the error.
    size_t from = line_start, to = line_end;
    if (to - from > 100) {
      from = std::max(line_start, idx > 50 ? idx - 50 : size_t{0});
      to = std::min(line_end, from + 100);
    }
    std::string snippet = text.substr(from, to - from);
    std::replace(snippet.begin(), snippet.end(), '\t', ' ');
    std::string caret(idx - from, ' ');
    throw Error(str(path, ":", line, ":", column, ": invalid JSON: ", parse_reason(e.what()),
                    "\n  ", snippet, "\n  ", caret, "^\n", "fix the JSON at line ", line,
                    ", column ", column, " of ", path, " (or re-download the file)"));
  }
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  TUNE_CHECK(!path_.empty(), "cannot write a file with an empty path");
  temp_path_ = str(path_, ".tmp.", ::getpid());
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd_ < 0) {
    int err = errno;
    throw Error(str("cannot write ", path_, ": creating the temporary ", temp_path_,
                    " failed: ", std::strerror(err), "; ", write_hint(err, path_)));
  }
}

AtomicFile::~AtomicFile() {
  abandon();
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : path_(std::move(other.path_)),
      temp_path_(std::move(other.temp_path_)),
      fd_(std::exchange(other.fd_, -1)),
      written_(other.written_) {}

AtomicFile& AtomicFile::operator=(AtomicFile&& other) noexcept {
  if (this != &other) {
    abandon();
    path_ = std::move(other.path_);
    temp_path_ = std::move(other.temp_path_);
    fd_ = std::exchange(other.fd_, -1);
    written_ = other.written_;
  }
  return *this;
}

void AtomicFile::abandon() noexcept {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  ::unlink(temp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  TUNE_CHECK(fd_ >= 0, "cannot write ", path_, ": the file was already committed or failed");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    // Linux writes at most ~2 GiB per call; partial writes are normal for large buffers.
    ssize_t k = ::write(fd_, p, std::min(n, size_t{1} << 30));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      int err = k < 0 ? errno : EIO;
      abandon();
      throw Error(str("cannot write ", path_, " (after ", written_, " bytes): ", std::strerror(err),
                      "; ", write_hint(err, path_), ". The old file, if any, is unchanged"));
    }
    p += k;
    n -= static_cast<size_t>(k);
    written_ += static_cast<uint64_t>(k);
  }
}

void AtomicFile::commit() {
  TUNE_CHECK(fd_ >= 0, "cannot commit ", path_, ": the file was already committed or failed");
  auto fail = [&](const char* step, int err) {
    abandon();
    ::unlink(temp_path_.c_str());  // abandon() skips this once fd_ is closed
    throw Error(str("cannot write ", path_, ": ", step, " failed: ", std::strerror(err), "; ",
                    write_hint(err, path_), ". The old file, if any, is unchanged"));
  };
  while (::fsync(fd_) != 0) {
    if (errno != EINTR) fail("fsync", errno);
  }
  int fd = std::exchange(fd_, -1);
  // close() can report a deferred write error (NFS, quotas), so it is checked too.
  if (::close(fd) != 0 && errno != EINTR) fail("close", errno);
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail("rename", errno);
  // Make the rename itself durable. Some file systems cannot fsync a directory; the data is
  // already safe then, so that is not an error.
  std::string dir = std::filesystem::path(path_).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace tune::io
