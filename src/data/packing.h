// Rows of a Loader. With packing, examples go first-fit into rows of at most seq_len tokens: each
// example, in a Philox-shuffled order (dataset order without shuffle), goes into the first row
// that still has room, a new row when none has. First-fit is deterministic and fills rows to
// ~95%+ on typical length mixes; a max-segment-tree over the rows' free space finds the row in
// O(log rows). Without packing each example is its own row.
#pragma once

#include <cstdint>
#include <vector>

#include "tune/data/data.h"

namespace tune::data {

struct Rows {
  std::vector<int64_t> begin{0};  // row r holds examples[begin[r] .. begin[r + 1])
  std::vector<int64_t> examples;  // dataset indices
};

Rows make_rows(const Dataset& ds, int64_t seq_len, bool pack, uint64_t seed, bool shuffle);

// A permutation of 0..n-1 drawn from Philox(seed, stream) by Fisher-Yates.
std::vector<int64_t> permutation(int64_t n, uint64_t seed, uint64_t stream);

}  // namespace tune::data
