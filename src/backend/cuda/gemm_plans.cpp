#include "backend/cuda/gemm_plans.h"

#include <cublasLt.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "backend/cuda/cuda_check.h"

namespace tune::cuda {

namespace {

constexpr int kKeyFields = 19;

void fields_of(const GemmKey& k, int64_t (&v)[kKeyFields]) {
  const int64_t f[kKeyFields] = {int64_t(k.dtype),   int64_t(k.c_dtype), int64_t(k.ta),
                                 int64_t(k.tb),      k.m,                k.n,
                                 k.k,                k.lda,              k.ldb,
                                 k.ldc,              int64_t(k.align_a), int64_t(k.align_b),
                                 int64_t(k.align_c), int64_t(k.bias),    int64_t(k.epilogue),
                                 k.batch,            k.stride_a,         k.stride_b,
                                 k.stride_c};
  std::copy(std::begin(f), std::end(f), std::begin(v));
}

}  // namespace

size_t GemmKeyHash::operator()(const GemmKey& k) const {
  int64_t v[kKeyFields];
  fields_of(k, v);
  size_t h = 0;
  for (int64_t x : v) h = h * 1000003u ^ std::hash<int64_t>()(x);
  return h;
}

bool gemm_tuning_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("TUNE_GEMM_TUNING");
    return !(env && std::string(env) == "0");
  }();
  return enabled;
}

GemmPlanFile& GemmPlanFile::of_current_device() {
  static std::mutex mu;
  static std::unordered_map<int, std::unique_ptr<GemmPlanFile>> files;
  int device = 0;
  TUNE_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mu);
  std::unique_ptr<GemmPlanFile>& f = files[device];
  if (!f) f = std::make_unique<GemmPlanFile>(device);
  return *f;
}

GemmPlanFile::GemmPlanFile(int device) {
  const char* home = std::getenv("HOME");
  if (!home || !*home) return;
  cudaDeviceProp prop{};
  TUNE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  std::string name = prop.name;
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '-';
  path_ = (std::filesystem::path(home) / ".cache" / "tune" / "gemm" /
           str(name, "-sm", prop.major, prop.minor, "-", prop.multiProcessorCount, "sms-cublasLt",
               cublasLtGetVersion(), ".txt"))
              .string();
  std::ifstream in(path_);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    int64_t v[kKeyFields + 2];
    int read = 0;
    while (read < kKeyFields + 2 && fields >> v[read]) ++read;
    const int64_t candidates = v[kKeyFields], chosen = v[kKeyFields + 1];
    if (read != kKeyFields + 2 || chosen < 0 || chosen >= candidates) continue;  // torn
    const GemmKey k{DType(v[0]),      DType(v[1]),      Trans(v[2]),      Trans(v[3]),
                    v[4],             v[5],             v[6],             v[7],
                    v[8],             v[9],             uint32_t(v[10]),  uint32_t(v[11]),
                    uint32_t(v[12]),  v[13] != 0,       Epilogue(v[14]),  int(v[15]),
                    v[16],            v[17],            v[18]};
    choices_.insert_or_assign(k, Choice{int(candidates), int(chosen)});
  }
}

bool GemmPlanFile::find(const GemmKey& key, int candidates, int& chosen) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = choices_.find(key);
  if (it == choices_.end() || it->second.candidates != candidates) return false;
  chosen = it->second.chosen;
  return true;
}

void GemmPlanFile::record(const GemmKey& key, Choice choice) {
  std::lock_guard<std::mutex> lock(mu_);
  choices_.insert_or_assign(key, choice);
  if (path_.empty() || unwritable_) return;
  std::ostringstream line;
  int64_t v[kKeyFields];
  fields_of(key, v);
  for (int64_t x : v) line << x << ' ';
  line << choice.candidates << ' ' << choice.chosen << '\n';
  const std::string text = line.str();
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const bool written =
      fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  if (fd >= 0) ::close(fd);
  unwritable_ = !written;
}

}  // namespace tune::cuda
