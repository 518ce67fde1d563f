// The paged KV cache on the CPU: kv_cache_write puts each row at its slot and nothing else moves;
// attention_decode over pages reached through a shuffled block table equals attention_forward
// (Tq = 1) on the same keys gathered into a contiguous row, with GQA, MQA and windows; bad
// slots, lengths and page ids throw with the op's name.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "test_util.h"
#include "tune/ops/ops.h"

namespace tune {
namespace {

using test::randn;
using test::rel_error;

Tensor i32_tensor(const Shape& shape, const std::vector<int32_t>& values) {
  Tensor t = Tensor::empty(shape, DType::i32);
  std::memcpy(t.raw(), values.data(), values.size() * sizeof(int32_t));
  return t;
}

TEST(KvCacheWrite, EachRowLandsInItsSlotAndNothingElseMoves) {
  const int64_t pages = 5, page = 4, heads = 3, dim = 8;
  for (DType slot_type : {DType::i32, DType::i64}) {
    for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
      SCOPED_TRACE(str(dtype_name(dt), " slots ", dtype_name(slot_type)));
      const Tensor k = randn({4, heads, dim}, DType::f32, 1).to(dt);
      const Tensor v = randn({4, heads, dim}, DType::f32, 2).to(dt);
      Tensor kp = test::full({pages, page, heads, dim}, DType::f32, 7.0).to(dt);
      Tensor vp = test::full({pages, page, heads, dim}, DType::f32, 9.0).to(dt);
      const std::vector<int64_t> slot_values{13, 0, -1, 19};  // row 2 is padding
      Tensor slots = Tensor::from_i64({4}, slot_values);
      if (slot_type == DType::i32) slots = i32_tensor({4}, {13, 0, -1, 19});
      ops::kv_cache_write(kp, vp, k, v, slots);
      const int64_t row = heads * dim;
      for (int64_t s = 0; s < pages * page; ++s) {
        const auto it = std::find(slot_values.begin(), slot_values.end(), s);
        for (int64_t i = 0; i < row; ++i) {
          if (it == slot_values.end()) {
            ASSERT_EQ(kp.item(s * row + i), 7.0) << "slot " << s;
            ASSERT_EQ(vp.item(s * row + i), 9.0) << "slot " << s;
          } else {
            const int64_t r = it - slot_values.begin();
            ASSERT_EQ(kp.item(s * row + i), k.item(r * row + i)) << "slot " << s;
            ASSERT_EQ(vp.item(s * row + i), v.item(r * row + i)) << "slot " << s;
          }
        }
      }
    }
  }
}

TEST(KvCacheWrite, RejectsSlotsOutsideTheCacheAndMismatchedRows) {
  Tensor kp = Tensor::zeros({2, 4, 2, 8}, DType::f32), vp = kp.clone();
  const Tensor k = Tensor::zeros({1, 2, 8}, DType::f32), v = k.clone();
  try {
    ops::kv_cache_write(kp, vp, k, v, Tensor::from_i64({1}, {8}));
    FAIL() << "no error for slot 8 of 8";
  } catch (const Error& e) {
    EXPECT_TRUE(test::contains(e.what(), "[kv_cache_write] slots[0] = 8 is outside the cache"))
        << e.what();
  }
  const Tensor k3 = Tensor::zeros({1, 3, 8}, DType::f32);
  EXPECT_THROW(ops::kv_cache_write(kp, vp, k3, k3, Tensor::from_i64({1}, {0})), Error);
  const Tensor kf64 = Tensor::zeros({1, 2, 8}, DType::f64);
  EXPECT_THROW(ops::kv_cache_write(kp, vp, kf64, kf64, Tensor::from_i64({1}, {0})), Error);
}

struct DecodeCase {
  int64_t q_heads, kv_heads, dim, page, window;
  std::vector<int32_t> lens;
};

// Builds a paged cache for the case with pages handed out in a shuffled order, runs
// attention_decode, and compares each sequence with attention_forward on its gathered keys.
void check_decode(const DecodeCase& c, DType dt) {
  SCOPED_TRACE(str(dtype_name(dt), " Hq=", c.q_heads, " Hkv=", c.kv_heads, " D=", c.dim,
                   " S=", c.page, " window=", c.window));
  const int64_t n = static_cast<int64_t>(c.lens.size());
  const int64_t max_len = *std::max_element(c.lens.begin(), c.lens.end());
  const int64_t max_pages = (max_len + c.page - 1) / c.page + 1;  // one spare entry per row
  const int64_t total_pages = n * max_pages + 3;
  std::vector<int32_t> order(static_cast<size_t>(total_pages));
  std::iota(order.begin(), order.end(), 0);
  std::reverse(order.begin(), order.end());
  std::rotate(order.begin(), order.begin() + 2, order.end());
  std::vector<int32_t> table(static_cast<size_t>(n * max_pages), -1);  // unused entries stay -1
  size_t next = 0;
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t p = 0; p < (c.lens[s] + c.page - 1) / c.page; ++p) {
      table[static_cast<size_t>(s * max_pages + p)] = order[next++];
    }
  }
  const Tensor kp = randn({total_pages, c.page, c.kv_heads, c.dim}, dt, 11);
  const Tensor vp = randn({total_pages, c.page, c.kv_heads, c.dim}, dt, 12);
  const Tensor q = randn({n, c.q_heads, c.dim}, dt, 13);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.dim));
  Tensor out = test::full({n, c.q_heads, c.dim}, dt, std::nan(""));
  ops::attention_decode(out, q, kp, vp, i32_tensor({n, max_pages}, table), i32_tensor({n}, c.lens),
                        scale, c.window);

  const int64_t row = c.kv_heads * c.dim;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t len = c.lens[static_cast<size_t>(s)];
    Tensor k = Tensor::empty({1, len, c.kv_heads, c.dim}, dt), v = k.clone();
    const size_t bytes = static_cast<size_t>(row) * dtype_size(dt);
    for (int64_t t = 0; t < len; ++t) {
      const int64_t slot =
          table[static_cast<size_t>(s * max_pages + t / c.page)] * c.page + t % c.page;
      std::memcpy(static_cast<char*>(k.raw()) + t * bytes,
                  static_cast<const char*>(kp.raw()) + slot * bytes, bytes);
      std::memcpy(static_cast<char*>(v.raw()) + t * bytes,
                  static_cast<const char*>(vp.raw()) + slot * bytes, bytes);
    }
    const Tensor qs = q.narrow(s, 1).view({1, 1, c.q_heads, c.dim});
    Tensor ref = Tensor::empty({1, 1, c.q_heads, c.dim}, dt), no_probs;
    ops::attention_forward(ref, no_probs, qs, k, v, scale, c.window);
    const Tensor got = out.narrow(s, 1).view({1, 1, c.q_heads, c.dim});
    EXPECT_LE(rel_error(got, ref), dt == DType::f64 ? 1e-12 : 1e-5) << "sequence " << s;
  }
}

TEST(AttentionDecode, MatchesAttentionForwardOnGatheredKeys) {
  const std::vector<int32_t> lens{1, 7, 33, 64, 100, 5};
  for (DType dt : {DType::f64, DType::f32}) {
    check_decode({4, 4, 16, 16, 0, lens}, dt);     // MHA
    check_decode({8, 2, 16, 16, 0, lens}, dt);     // GQA 4:1
    check_decode({6, 1, 24, 7, 0, lens}, dt);      // MQA, pages of 7
    check_decode({8, 2, 16, 16, 20, lens}, dt);    // sliding window
    check_decode({4, 1, 8, 1, 3, {1, 2, 9}}, dt);  // pages of one position
  }
}

TEST(AttentionDecode, RejectsBadLengthsPagesAndShapes) {
  const Tensor kp = Tensor::zeros({3, 4, 1, 8}, DType::f32), vp = kp.clone();
  const Tensor q = Tensor::zeros({2, 2, 8}, DType::f32);
  Tensor out = q.clone();
  const Tensor table = i32_tensor({2, 2}, {0, 1, 2, -1});
  EXPECT_NO_THROW(ops::attention_decode(out, q, kp, vp, table, i32_tensor({2}, {8, 4}), 1.0, 0));
  try {
    ops::attention_decode(out, q, kp, vp, table, i32_tensor({2}, {8, 0}), 1.0, 0);
    FAIL() << "no error for a zero length";
  } catch (const Error& e) {
    EXPECT_TRUE(test::contains(e.what(), "[attention_decode] seq_lens[1] = 0 is outside [1, 8]"))
        << e.what();
  }
  EXPECT_THROW(ops::attention_decode(out, q, kp, vp, table, i32_tensor({2}, {8, 9}), 1.0, 0),
               Error);
  try {
    ops::attention_decode(out, q, kp, vp, table, i32_tensor({2}, {8, 5}), 1.0, 0);
    FAIL() << "no error for page -1";
  } catch (const Error& e) {
    EXPECT_TRUE(test::contains(e.what(), "block_table[1, 1] = -1 is outside [0, 3)")) << e.what();
  }
  const Tensor q3 = Tensor::zeros({2, 3, 8}, DType::f32);
  Tensor out3 = q3.clone();
  const Tensor kp2 = Tensor::zeros({3, 4, 2, 8}, DType::f32);  // 3 query heads over 2 kv heads
  EXPECT_THROW(ops::attention_decode(out3, q3, kp2, kp2, table, i32_tensor({2}, {8, 4}), 1.0, 0),
               Error);
  const Tensor table64 = Tensor::from_i64({2, 2}, {0, 1, 2, 0});
  EXPECT_THROW(ops::attention_decode(out, q, kp, vp, table64, i32_tensor({2}, {8, 4}), 1.0, 0),
               Error);
  EXPECT_EQ(ops::attention_decode_workspace_size(q, kp, table, 0), 0);
}

}  // namespace
}  // namespace tune
