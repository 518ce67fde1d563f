// ops::argmax_rows on the GPU against the CPU op, at awkward sizes, with ties and NaNs.
#include <gtest/gtest.h>

#include <cmath>

#include "test_util.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

TEST(CudaArgmax, MatchesTheCpu) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (int64_t rows : {1, 7, 33, 257}) {
      for (int64_t cols : {1, 31, 1000, 4097, 128256}) {
        if (rows * cols > 8 * 128256) continue;  // the reference's random draws take a while
        SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + std::to_string(rows) + "x" +
                     std::to_string(cols));
        // Rounded to the dtype first, so both sides see the same values (bf16 makes many ties).
        Tensor host = test::randn({rows, cols}, DType::f32, 17 + rows + cols).to(dtype);
        Tensor host_f32 = host.to(DType::f32);
        if (cols > 3) host_f32.data<float>()[2] = std::nanf("");  // row 0 gets a NaN
        host = host_f32.to(dtype);
        Tensor want = Tensor::empty({rows}, DType::i64);
        ops::argmax_rows(want, host.to(DType::f32));
        Tensor device = Tensor::empty(host.shape(), dtype, Device::cuda);
        device.copy_from(host);
        Tensor got = Tensor::empty({rows}, DType::i64, Device::cuda);
        ops::argmax_rows(got, device);
        Tensor back = got.to(Device::cpu);
        for (int64_t r = 0; r < rows; ++r)
          ASSERT_EQ(back.data<int64_t>()[r], want.data<int64_t>()[r]) << "row " << r;
      }
    }
  }
}

}  // namespace
}  // namespace tune
