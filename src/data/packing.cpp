// First-fit packing. The tree's leaves are rows, all starting with seq_len free; the leftmost leaf
// with enough room is either an open row or the first unopened one, so rows open in order.
#include "packing.h"

#include <algorithm>

#include "tune/core/error.h"
#include "tune/core/rng.h"

namespace tune::data {

namespace {

constexpr uint64_t kPackStream = 0x7061636b;  // "pack"

class FreeSpaceTree {
 public:
  FreeSpaceTree(int64_t rows, int64_t capacity) {
    while (leaves_ < rows) leaves_ *= 2;
    free_.assign(2 * static_cast<size_t>(leaves_), capacity);
  }
  // The leftmost row with at least `need` free; takes `need` from it.
  int64_t take(int64_t need) {
    TUNE_ASSERT(free_[1] >= need, "no row can take ", need, " tokens");
    size_t node = 1;
    while (node < static_cast<size_t>(leaves_))
      node = free_[2 * node] >= need ? 2 * node : 2 * node + 1;
    const auto row = static_cast<int64_t>(node) - leaves_;
    free_[node] -= need;
    for (node /= 2; node >= 1; node /= 2)
      free_[node] = std::max(free_[2 * node], free_[2 * node + 1]);
    return row;
  }

 private:
  int64_t leaves_ = 1;
  std::vector<int64_t> free_;
};

}  // namespace

std::vector<int64_t> permutation(int64_t n, uint64_t seed, uint64_t stream) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  for (int64_t i = n - 1; i > 0; --i) {
    const auto r = philox4x32(seed, stream, static_cast<uint64_t>(i));
    const uint64_t x = (static_cast<uint64_t>(r[0]) << 32) | r[1];
    std::swap(p[i], p[x % static_cast<uint64_t>(i + 1)]);
  }
  return p;
}

Rows make_rows(const Dataset& ds, int64_t seq_len, bool pack, uint64_t seed, bool shuffle) {
  const int64_t n = ds.size();
  Rows rows;
  for (int64_t i = 0; i < n; ++i) {
    const auto len = static_cast<int64_t>(ds.example(i).ids.size());
    TUNE_CHECK(len <= seq_len, "example ", i, " has ", len, " tokens, more than the seq_len ",
               seq_len, " of the loader; prepare the data with the same data.seq_len");
  }
  if (!pack) {
    rows.examples.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      rows.examples[i] = i;
      rows.begin.push_back(i + 1);
    }
    return rows;
  }
  const std::vector<int64_t> order = shuffle ? permutation(n, seed, kPackStream) : [&] {
    std::vector<int64_t> o(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) o[i] = i;
    return o;
  }();
  FreeSpaceTree tree(std::max<int64_t>(n, 1), seq_len);
  std::vector<int64_t> row_of(static_cast<size_t>(n));
  int64_t used = 0;
  for (const int64_t e : order) {
    row_of[e] = tree.take(static_cast<int64_t>(ds.example(e).ids.size()));
    used = std::max(used, row_of[e] + 1);
  }
  // Group by row, keeping the packing order within a row.
  std::vector<int64_t> count(static_cast<size_t>(used) + 1, 0);
  for (const int64_t e : order) ++count[row_of[e] + 1];
  rows.begin.assign(static_cast<size_t>(used) + 1, 0);
  for (int64_t r = 0; r < used; ++r) rows.begin[r + 1] = rows.begin[r] + count[r + 1];
  rows.examples.resize(static_cast<size_t>(n));
  std::vector<int64_t> fill(rows.begin.begin(), rows.begin.end() - 1);
  for (const int64_t e : order) rows.examples[fill[row_of[e]]++] = e;
  return rows;
}

}  // namespace tune::data
