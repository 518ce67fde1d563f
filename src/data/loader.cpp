// The Loader: rows from make_rows, an order per epoch, batches cut from that order. Everything
// is a function of (seed, epoch, position), which is why State is two integers.
#include <algorithm>

#include "packing.h"
#include "tune/core/error.h"
#include "tune/data/data.h"

namespace tune::data {

namespace {

constexpr uint64_t kEpochStream = 0x65706f6368000000ull;  // "epoch" + epoch number
constexpr int64_t kIgnore = -100;

}  // namespace

Loader::Loader(const Dataset& ds, int64_t seq_len, bool pack, int64_t micro_batch, uint64_t seed,
               bool shuffle)
    : ds_(ds), seq_len_(seq_len), micro_batch_(micro_batch), seed_(seed), shuffle_(shuffle) {
  TUNE_CHECK(seq_len > 0, "the loader's seq_len must be positive, got ", seq_len);
  TUNE_CHECK(micro_batch > 0, "the micro-batch size must be positive, got ", micro_batch);
  Rows rows = make_rows(ds, seq_len, pack, seed, shuffle);
  row_begin_ = std::move(rows.begin);
  row_examples_ = std::move(rows.examples);
}

int64_t Loader::batches_per_epoch() const {
  return (rows_per_epoch() + micro_batch_ - 1) / micro_batch_;
}

std::span<const int64_t> Loader::row(int64_t r) const {
  TUNE_ASSERT(r >= 0 && r < rows_per_epoch(), "row ", r, " of ", rows_per_epoch());
  return {row_examples_.data() + row_begin_[r],
          static_cast<size_t>(row_begin_[r + 1] - row_begin_[r])};
}

void Loader::set_state(State s) {
  TUNE_CHECK(s.epoch >= 0 && s.position >= 0 && s.position <= rows_per_epoch(),
             "loader state (epoch ", s.epoch, ", position ", s.position,
             ") does not fit this data (", rows_per_epoch(),
             " rows per epoch); resume with the same data and data settings");
  state_ = s;
}

void Loader::make_order() {
  if (order_epoch_ == state_.epoch) return;
  const int64_t n = rows_per_epoch();
  if (shuffle_) {
    order_ = permutation(n, seed_, kEpochStream + static_cast<uint64_t>(state_.epoch));
  } else {
    order_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order_[i] = i;
  }
  order_epoch_ = state_.epoch;
}

Batch Loader::next() {
  TUNE_CHECK(rows_per_epoch() > 0, "the loader has no data (the dataset is empty)");
  if (state_.position >= rows_per_epoch()) {
    ++state_.epoch;
    state_.position = 0;
  }
  make_order();
  const int64_t b = std::min(micro_batch_, rows_per_epoch() - state_.position);
  int64_t t_max = 0;
  for (int64_t i = 0; i < b; ++i) {
    int64_t len = 0;
    for (const int64_t e : row(order_[state_.position + i])) len += ds_.example(e).ids.size();
    t_max = std::max(t_max, len);
  }
  Batch batch;
  batch.ids = Tensor::empty({b, t_max}, DType::i64);
  batch.labels = Tensor::empty({b, t_max}, DType::i64);
  batch.positions = Tensor::empty({b, t_max}, DType::i64);
  for (int64_t i = 0; i < b; ++i) {
    int64_t* ids = batch.ids.data<int64_t>() + i * t_max;
    int64_t* labels = batch.labels.data<int64_t>() + i * t_max;
    int64_t* positions = batch.positions.data<int64_t>() + i * t_max;
    int64_t t = 0;
    for (const int64_t e : row(order_[state_.position + i])) {
      const Example ex = ds_.example(e);
      for (size_t k = 0; k < ex.ids.size(); ++k, ++t) {
        ids[t] = ex.ids[k];
        // The first token of a document is never a label: the previous document's last token
        // must not learn to predict it.
        labels[t] = (k > 0 && ex.counted[k]) ? ex.ids[k] : kIgnore;
        positions[t] = static_cast<int64_t>(k);
        batch.counted += labels[t] != kIgnore;
      }
    }
    batch.tokens += t;
    for (; t < t_max; ++t) {
      ids[t] = ds_.pad_id();
      labels[t] = kIgnore;
      positions[t] = 0;
    }
  }
  state_.position += b;
  return batch;
}

}  // namespace tune::data
