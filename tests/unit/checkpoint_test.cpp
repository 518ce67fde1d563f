// Model directories (single file and sharded index), atomic writes, and JSON files with errors
// a user can act on.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <sstream>
#include <string>

#include "test_util.h"
#include "tune/core/tensor.h"
#include "tune/io/checkpoint.h"
#include "tune/io/files.h"

namespace tune::io {
namespace {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

void expect_error(const std::function<void()>& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected a tune::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "missing \"" << p << "\" in: " << msg;
  }
}

// --- files.h ---

TEST(AtomicFile, WritesAndReplacesWithoutLeavingTemporaries) {
  test::TempDir dir("ckpt_atomic");
  std::string path = dir.file("out.txt");
  write_file_atomic(path, "first");
  EXPECT_EQ(read_text(path), "first");
  write_file_atomic(path, "second, longer");
  EXPECT_EQ(read_text(path), "second, longer");
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"out.txt"});

  AtomicFile f(dir.file("pieces.bin"));
  EXPECT_EQ(f.temp_path(), dir.file("pieces.bin") + ".tmp." + std::to_string(::getpid()));
  f.write("ab", 2);
  f.write(std::string_view("cd"));
  EXPECT_TRUE(fs::exists(f.temp_path()));
  EXPECT_FALSE(fs::exists(f.path()));  // nothing visible before commit
  f.commit();
  EXPECT_EQ(read_text(dir.file("pieces.bin")), "abcd");
  EXPECT_EQ(f.bytes_written(), 4u);
  expect_error([&] { f.write("x", 1); }, {"pieces.bin", "already committed"});
  EXPECT_EQ(dir.listing(), (std::vector<std::string>{"out.txt", "pieces.bin"}));
}

TEST(AtomicFile, WithoutCommitTheOldFileIsUntouched) {
  test::TempDir dir("ckpt_abandon");
  std::string path = dir.file("keep.txt");
  write_file_atomic(path, "old");
  {
    AtomicFile f(path);
    f.write("new new new", 11);
  }  // e.g. an exception while serializing
  EXPECT_EQ(read_text(path), "old");
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"keep.txt"});

  AtomicFile moved_from(dir.file("m.txt"));
  AtomicFile moved = std::move(moved_from);
  moved.write("m", 1);
  moved.commit();
  EXPECT_EQ(read_text(dir.file("m.txt")), "m");
}

TEST(AtomicFile, FailedWriteLeavesNoFile) {
  test::TempDir dir("ckpt_fail");
  std::string path = dir.file("missing_dir/out.txt");
  expect_error([&] { write_file_atomic(path, "x"); },
               {"cannot write", path, "missing_dir", "does not exist"});
  EXPECT_FALSE(fs::exists(dir.file("missing_dir")));
  EXPECT_TRUE(dir.listing().empty());
  // A directory where the file should go: the rename fails and the temporary is removed.
  fs::create_directories(dir.file("taken"));
  expect_error([&] { write_file_atomic(dir.file("taken"), "x"); }, {"taken", "rename"});
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"taken"});
}

TEST(Json, ReadsAFile) {
  test::TempDir dir("ckpt_json_ok");
  write_text(dir.file("c.json"), R"({"hidden_size": 64, "rope_scaling": null})");
  nlohmann::json j = read_json_file(dir.file("c.json"));
  EXPECT_EQ(j["hidden_size"], 64);
  EXPECT_TRUE(j["rope_scaling"].is_null());
  EXPECT_TRUE(file_exists(dir.file("c.json")));
  EXPECT_FALSE(file_exists(dir.file("nope.json")));
  EXPECT_FALSE(file_exists(dir.path));  // a directory is not a file
}

TEST(Json, ParseErrorNamesFileLineAndColumn) {
  test::TempDir dir("ckpt_json_bad");
  std::string path = dir.file("config.json");
  write_text(path, "{\n  \"a\": 1,\n  \"b\": ,\n  \"c\": 3\n}\n");
  expect_error([&] { read_json_file(path); },
               {path + ":3:8:", "invalid JSON", "line 3, column 8", "\"b\": ,", "fix the JSON"});
  // At the end of input the error points after the last token, not at a blank line.
  write_text(path, "{\"a\": [1, 2\n\n");
  expect_error([&] { read_json_file(path); }, {path + ":1:12:", "unexpected end of input"});
  write_text(path, "  \n");
  expect_error([&] { read_json_file(path); }, {path, "empty"});
  expect_error([&] { read_json_file(dir.file("absent.json")); },
               {"cannot open", "absent.json", "check the path"});
}

// --- checkpoint.h ---

std::vector<std::pair<std::string, Tensor>> sample_tensors() {
  return {
      {"model.embed_tokens.weight",
       Tensor::from_f32({4, 3}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})},
      {"model.layers.0.self_attn.q_proj.weight",
       Tensor::from_f32({3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}).to(DType::bf16)},
      {"model.layers.0.input_layernorm.weight", Tensor::from_f32({3}, {1, 1, 1})},
      {"model.empty", Tensor::empty({0}, DType::f32)},
      {"model.norm.weight", Tensor::from_f32({3}, {0.5f, 0.25f, 2})},
      {"lm_head.weight", Tensor::from_f32({4, 3}, std::vector<float>(12, -1.5f))},
  };
}

void expect_same(const CheckpointReader& r, const std::vector<std::pair<std::string, Tensor>>& ts) {
  ASSERT_EQ(r.names().size(), ts.size());
  for (const auto& [name, t] : ts) {
    ASSERT_TRUE(r.contains(name)) << name;
    Tensor got = r.tensor(name);
    EXPECT_EQ(got.dtype(), t.dtype()) << name;
    EXPECT_EQ(got.shape(), t.shape()) << name;
    EXPECT_EQ(got.to_f32_vector(), t.to_f32_vector()) << name;
  }
}

TEST(Checkpoint, SingleFileRoundTrip) {
  test::TempDir dir("ckpt_single");
  auto ts = sample_tensors();
  write_checkpoint_dir(dir.path, ts);
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"model.safetensors"});
  CheckpointReader r = CheckpointReader::open_dir(dir.path);
  expect_same(r, ts);
  EXPECT_EQ(r.names()[0], "model.embed_tokens.weight");  // data order
  EXPECT_EQ(r.file_of("lm_head.weight"), dir.file("model.safetensors"));
  EXPECT_EQ(r.files().at(0).metadata().at("format"), "pt");  // transformers requires it

  CheckpointReader f = CheckpointReader::open_file(dir.file("model.safetensors"));
  expect_same(f, ts);
}

TEST(Checkpoint, ShardedRoundTripWithIndex) {
  test::TempDir dir("ckpt_sharded");
  auto ts = sample_tensors();
  ts.emplace_back("big", Tensor::zeros({100}, DType::f32));  // over the limit: a shard of its own
  write_checkpoint_dir(dir.path, ts, /*max_shard_bytes=*/64);
  // Bytes per shard, filled in order: 48 | 18+12+0+12 | 48 | 400.
  std::vector<std::string> expected = {
      "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
      "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
      "model.safetensors.index.json"};
  EXPECT_EQ(dir.listing(), expected);

  nlohmann::json index = read_json_file(dir.file("model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], 48 + 18 + 12 + 12 + 0 + 48 + 400);
  EXPECT_EQ(index["weight_map"].size(), ts.size());
  EXPECT_EQ(index["weight_map"]["big"], "model-00004-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["model.embed_tokens.weight"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["model.empty"], "model-00002-of-00004.safetensors");

  CheckpointReader r = CheckpointReader::open_dir(dir.path);
  expect_same(r, ts);
  EXPECT_EQ(r.file_of("model.norm.weight"), dir.file("model-00002-of-00004.safetensors"));
  EXPECT_EQ(r.files().size(), 4u);
  EXPECT_EQ(r.names().front(), "model.embed_tokens.weight");
  EXPECT_EQ(r.names().back(), "big");
}

TEST(Checkpoint, RewritingSwitchesLayoutsAndRemovesStaleFiles) {
  test::TempDir dir("ckpt_relayout");
  auto ts = sample_tensors();
  write_text(dir.file("config.json"), "{}");  // not ours: must survive
  write_checkpoint_dir(dir.path, ts, 64);
  write_checkpoint_dir(dir.path, ts);  // sharded -> single
  EXPECT_EQ(dir.listing(), (std::vector<std::string>{"config.json", "model.safetensors"}));
  write_checkpoint_dir(dir.path, ts, 100);  // single -> 2 shards
  CheckpointReader r = CheckpointReader::open_dir(dir.path);
  EXPECT_EQ(r.files().size(), 2u);
  expect_same(r, ts);
  EXPECT_FALSE(fs::exists(dir.file("model.safetensors")));
  write_checkpoint_dir(dir.path, ts, 64);  // 3 shards: the 2-shard files are stale
  EXPECT_EQ(
      dir.listing(),
      (std::vector<std::string>{
          "config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
          "model-00003-of-00003.safetensors", "model.safetensors.index.json"}));
  expect_same(CheckpointReader::open_dir(dir.path), ts);
  write_checkpoint_dir(dir.path, ts, 64);  // same names again: overwritten in place
  expect_same(CheckpointReader::open_dir(dir.path), ts);
}

TEST(Checkpoint, BadArgumentsDoNotTouchTheDirectory) {
  test::TempDir dir("ckpt_badargs");
  auto ts = sample_tensors();
  write_checkpoint_dir(dir.path, ts, 64);
  auto before = dir.listing();
  auto dup = ts;
  dup.push_back(ts[0]);
  expect_error([&] { write_checkpoint_dir(dir.path, dup, 64); },
               {"model.embed_tokens.weight", "twice"});
  expect_error([&] { write_checkpoint_dir(dir.path, {{"x", Tensor()}}); }, {"\"x\"", "undefined"});
  EXPECT_EQ(dir.listing(), before);
  expect_same(CheckpointReader::open_dir(dir.path), ts);
}

TEST(Checkpoint, MissingTensorListsFilesAndSuggestsAName) {
  test::TempDir dir("ckpt_missing_tensor");
  write_checkpoint_dir(dir.path, sample_tensors(), 64);
  CheckpointReader r = CheckpointReader::open_dir(dir.path);
  expect_error([&] { r.tensor("model.norm.weights"); },
               {"tensor \"model.norm.weights\" not found in", dir.path,
                "files: model-00001-of-00003.safetensors, model-00002-of-00003",
                "did you mean \"model.norm.weight\""});
  expect_error([&] { r.file_of("zzz"); }, {"\"zzz\"", "not found", "check the tensor name"});
}

TEST(Checkpoint, DirectoryWithoutWeightsSaysWhatItLookedFor) {
  test::TempDir dir("ckpt_noweights");
  expect_error(
      [&] { CheckpointReader::open_dir(dir.path); },
      {"no model weights in", dir.path, "model.safetensors", "model.safetensors.index.json"});
  write_text(dir.file("pytorch_model.bin"), "x");
  expect_error([&] { CheckpointReader::open_dir(dir.path); }, {"PyTorch .bin"});
  write_safetensors(dir.file("adapter_model.safetensors"), {});
  expect_error([&] { CheckpointReader::open_dir(dir.path); }, {"adapter_model.safetensors"});
  expect_error([&] { CheckpointReader::open_dir(dir.file("nope")); }, {"nope", "does not exist"});
}

TEST(Checkpoint, BrokenIndexesAreReportedAtOpen) {
  test::TempDir dir("ckpt_badindex");
  auto ts = sample_tensors();
  write_checkpoint_dir(dir.path, ts, 64);
  std::string index_path = dir.file("model.safetensors.index.json");
  nlohmann::json index = read_json_file(index_path);

  fs::remove(dir.file("model-00002-of-00003.safetensors"));
  expect_error([&] { CheckpointReader::open_dir(dir.path); },
               {"model-00002-of-00003.safetensors", "missing", "re-download"});
  write_checkpoint_dir(dir.path, ts, 64);

  nlohmann::json wrong = index;
  wrong["weight_map"]["lm_head.weight"] = "model-00001-of-00003.safetensors";
  write_text(index_path, wrong.dump());
  expect_error([&] { CheckpointReader::open_dir(dir.path); },
               {"\"lm_head.weight\"", "model-00001-of-00003.safetensors", "different saves"});

  nlohmann::json escape = index;
  escape["weight_map"]["lm_head.weight"] = "../model-00003-of-00003.safetensors";
  write_text(index_path, escape.dump());
  expect_error([&] { CheckpointReader::open_dir(dir.path); }, {"not a plain file name"});

  write_text(index_path, R"({"metadata": {}})");
  expect_error([&] { CheckpointReader::open_dir(dir.path); }, {index_path, "weight_map"});
  write_text(index_path, "{\"weight_map\": {\n}},");
  expect_error([&] { CheckpointReader::open_dir(dir.path); }, {index_path + ":2:3:"});
}

TEST(Checkpoint, OpensTheGoldenLlamaDirectory) {
  std::string dir = std::string(TUNE_TEST_DATA) + "/golden/llama_gqa";
  CheckpointReader r = CheckpointReader::open_dir(dir);
  EXPECT_EQ(r.tensor("model.embed_tokens.weight").shape(), (Shape{512, 64}));
  EXPECT_EQ(r.info("model.embed_tokens.weight").dtype, DType::f32);
}

}  // namespace
}  // namespace tune::io
