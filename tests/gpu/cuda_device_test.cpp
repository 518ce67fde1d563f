// The CUDA backend's memory path: device allocation from the stream-ordered pool and copies in
// every direction, checked value by value. Runs only on a machine with a GPU (ctest -L gpu).
#include <gtest/gtest.h>

#include "test_util.h"
#include "tune/core/device.h"

namespace tune {
namespace {

TEST(CudaDevice, IsVisible) {
  ASSERT_TRUE(cuda_available()) << cuda_describe();
  EXPECT_GE(cuda_device_count(), 1);
  EXPECT_NE(cuda_describe().find("sm_"), std::string::npos);
}

TEST(CudaDevice, CopiesRoundTripAtAwkwardSizes) {
  for (int64_t n : {1, 7, 33, 257, 4097, 1 << 20}) {
    Tensor host = test::randn({n}, DType::f32, static_cast<uint64_t>(n));
    Tensor a = Tensor::empty({n}, DType::f32, Device::cuda);
    Tensor b = Tensor::empty({n}, DType::f32, Device::cuda);
    EXPECT_EQ(a.device(), Device::cuda);
    a.copy_from(host);                                    // host -> device
    b.copy_from(a);                                       // device -> device
    Tensor back = test::full({n}, DType::f32, -12345.0);  // sentinel: must be overwritten
    back.copy_from(b);                                    // device -> host
    EXPECT_EQ(test::max_abs_diff(back, host), 0.0) << n;
  }
}

TEST(CudaDevice, ZeroClearsDeviceMemory) {
  Tensor d = Tensor::empty({1000}, DType::bf16, Device::cuda);
  d.copy_from(test::randn({1000}, DType::f32, 3).to(DType::bf16));
  d.zero();
  Tensor h = Tensor::empty({1000}, DType::bf16);
  h.copy_from(d);
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(h.item(i), 0.0);
}

}  // namespace
}  // namespace tune
