// Which cuBLASLt algorithm each product runs (backend/cuda/gemm.cu times the heuristic's
// candidates at a product's first call; gemm_plans.h keeps the choices): the plan file carries
// them from one process to the next, skips a torn line, lets the later of two lines for a key win
// and ignores a choice made among a different number of candidates; a product whose output it
// had to save and restore for the timing (beta != 0) comes out as it does on every later call.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "backend/cuda/gemm_plans.h"
#include "gpu/gpu_test_util.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

namespace fs = std::filesystem;
using cuda::GemmKey;
using cuda::GemmPlanFile;

// HOME points at a fresh folder for the test's lifetime.
class TempHome {
 public:
  TempHome() {
    dir_ = fs::path(::testing::TempDir()) / str("tune-gemm-plans-", ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    if (const char* h = std::getenv("HOME")) old_ = h;
    ::setenv("HOME", dir_.c_str(), 1);
  }
  ~TempHome() {
    ::setenv("HOME", old_.c_str(), 1);
    fs::remove_all(dir_);
  }
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
  std::string old_;
};

GemmKey key(int64_t m) {
  return GemmKey{DType::bf16, DType::bf16, cuda::Trans::yes, cuda::Trans::yes, m, 4096, 16,
                 m,           16,          4096,             256,              256, 256,   false,
                 cuda::Epilogue::none};
}

TEST(GemmPlanFile, CarriesChoicesToTheNextProcess) {
  TempHome home;
  std::string path;
  {
    GemmPlanFile first(0);
    path = first.path();
    ASSERT_EQ(path.rfind(home.dir().string(), 0), 0u) << path;
    first.record(key(2048), {8, 3});
    first.record(key(4096), {5, 1});
    first.record(key(2048), {8, 4});  // the later line wins
  }
  { std::ofstream(path, std::ios::app) << "1 1 1 1 2048 4096"; }  // a killed process's torn line
  GemmPlanFile next(0);
  int chosen = -1;
  ASSERT_TRUE(next.find(key(2048), 8, chosen));
  EXPECT_EQ(chosen, 4);
  ASSERT_TRUE(next.find(key(4096), 5, chosen));
  EXPECT_EQ(chosen, 1);
  EXPECT_FALSE(next.find(key(4096), 6, chosen)) << "a choice among 5 candidates is stale among 6";
  EXPECT_FALSE(next.find(key(1024), 8, chosen));
}

TEST(GemmPlanFile, KeepsChoicesInMemoryWhenTheFileCannotBeWritten) {
  TempHome home;
  { std::ofstream(home.dir() / ".cache") << "a file where the cache folder would go"; }
  GemmPlanFile plans(0);
  plans.record(key(2048), {8, 2});
  int chosen = -1;
  ASSERT_TRUE(plans.find(key(2048), 8, chosen));
  EXPECT_EQ(chosen, 2);
  EXPECT_FALSE(fs::exists(plans.path()));
}

// The first call of a product times its candidates on the real output; with beta != 0 the output
// is saved first and restored, so the first call's result is the second's to the bit.
TEST(GemmPlanFile, FirstCallOfAnAccumulatingProductEqualsLaterCalls) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const int64_t m = 1000 + ::getpid() % 4096, n = 384, k = 176;  // a key not tuned before
    const Tensor a = test::to_device(test::randn({m, k}, DType::f32, 1), dtype);
    const Tensor b = test::to_device(test::randn({n, k}, DType::f32, 2), dtype);
    const Tensor c0 = test::randn({m, n}, DType::f32, 3).to(dtype);
    Tensor first = test::to_device(c0, dtype), later = test::to_device(c0, dtype);
    ops::matmul(first, a, ops::Transpose::no, b, ops::Transpose::yes, 0.5, 1.0);
    ops::matmul(later, a, ops::Transpose::no, b, ops::Transpose::yes, 0.5, 1.0);
    const Tensor x = first.to(Device::cpu), y = later.to(Device::cpu);
    EXPECT_EQ(std::memcmp(x.raw(), y.raw(), static_cast<size_t>(m * n) * dtype_size(dtype)), 0);
  }
}

}  // namespace
}  // namespace tune
