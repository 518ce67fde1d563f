#include "tune/io/checkpoint.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "tune/io/files.h"

namespace tune::io {

namespace fs = std::filesystem;

namespace {

std::string join_path(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

// "model-00001-of-00004.safetensors", the shard names transformers writes.
std::string shard_name(size_t index, size_t count) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return buf;
}

bool is_shard_name(const std::string& name) {
  static const std::string kExample = shard_name(0, 1);
  if (name.size() != kExample.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    bool digit_slot = (i >= 6 && i < 11) || (i >= 15 && i < 20);
    if (digit_slot ? !std::isdigit(static_cast<unsigned char>(name[i])) : name[i] != kExample[i])
      return false;
  }
  return true;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The closest known name, if it is close enough to be a likely typo or prefix slip.
std::string closest_name(const std::string& name, const std::vector<std::string>& names) {
  std::string best;
  size_t best_d = std::max<size_t>(2, name.size() / 3) + 1;
  for (const auto& n : names) {
    if (n.size() > name.size() + best_d || name.size() > n.size() + best_d) continue;
    size_t d = edit_distance(name, n);
    if (d < best_d) {
      best_d = d;
      best = n;
    }
  }
  return best;
}

std::string list_files(const std::vector<std::string>& files) {
  std::string out;
  for (size_t i = 0; i < files.size() && i < 8; ++i) out += (i ? ", " : "") + files[i];
  if (files.size() > 8) out += str(", ... (", files.size(), " files)");
  return out;
}

[[noreturn]] void no_checkpoint(const std::string& dir) {
  std::vector<std::string> safetensors;
  bool has_bin = false;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string n = e.path().filename().string();
    if (n.ends_with(".safetensors")) safetensors.push_back(n);
    if (n == "pytorch_model.bin" || n == "pytorch_model.bin.index.json") has_bin = true;
  }
  std::sort(safetensors.begin(), safetensors.end());
  std::string hint;
  if (!safetensors.empty())
    hint = str("; it has ", list_files(safetensors), ": open one of those as a single file");
  else if (has_bin)
    hint =
        "; it has PyTorch .bin weights, which tune.cpp does not read: re-save the model with "
        "safetensors (save_pretrained(..., safe_serialization=True))";
  else
    hint = "; point to a Hugging Face model directory that holds its weights";
  throw Error(str("no model weights in ", dir, ": looked for ", kSafetensorsSingleName, " and ",
                  kSafetensorsIndexName, ", found neither", hint));
}

}  // namespace

struct CheckpointReader::State {
  std::string location;
  std::vector<SafetensorsFile> files;
  std::vector<std::string> file_names;  // as listed in messages
  std::map<std::string, size_t> where;  // tensor -> index into files
  std::vector<std::string> names;
};

CheckpointReader::CheckpointReader() : state_(std::make_shared<const State>()) {}

CheckpointReader::CheckpointReader(std::shared_ptr<const State> state) : state_(std::move(state)) {}

CheckpointReader CheckpointReader::open_file(const std::string& path) {
  auto s = std::make_shared<State>();
  s->location = path;
  s->files.push_back(SafetensorsFile::open(path));
  s->file_names.push_back(fs::path(path).filename().string());
  s->names = s->files[0].names();
  for (const auto& n : s->names) s->where.emplace(n, 0);
  return CheckpointReader(std::move(s));
}

CheckpointReader CheckpointReader::open_dir(const std::string& dir) {
  std::error_code ec;
  TUNE_CHECK(fs::is_directory(dir, ec), "checkpoint directory ", dir,
             " does not exist or is not a directory; check the path");
  std::string single = join_path(dir, kSafetensorsSingleName);
  if (file_exists(single)) {
    CheckpointReader r = open_file(single);
    auto s = std::make_shared<State>(*r.state_);
    s->location = dir;
    return CheckpointReader(std::move(s));
  }
  std::string index_path = join_path(dir, kSafetensorsIndexName);
  if (!file_exists(index_path)) no_checkpoint(dir);

  nlohmann::json index = read_json_file(index_path);
  auto bad_index = [&](const std::string& what) {
    return Error(str(index_path, ": ", what, "; re-download or re-export the checkpoint"));
  };
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw bad_index("expected an object with a \"weight_map\" object of tensor name -> shard file");
  std::map<std::string, std::vector<std::string>> by_shard;  // sorted by file name
  for (const auto& [tensor, shard] : index["weight_map"].items()) {
    if (!shard.is_string())
      throw bad_index(
          str("weight_map[\"", tensor, "\"] must be a shard file name, got ", shard.dump()));
    const auto& file = shard.get_ref<const std::string&>();
    // Shards live next to the index; anything else would let an index reach outside the model.
    if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos)
      throw bad_index(str("weight_map[\"", tensor, "\"] names \"", file,
                          "\", which is not a plain file name in the same directory"));
    by_shard[file].push_back(tensor);
  }

  auto s = std::make_shared<State>();
  s->location = dir;
  for (const auto& [file, tensors] : by_shard) {
    std::string path = join_path(dir, file);
    if (!file_exists(path))
      throw Error(str("shard ", file, " listed in ", index_path, " (for tensor \"", tensors[0],
                      "\" and ", tensors.size() - 1, " more) is missing from ", dir,
                      "; re-download the missing shard"));
    SafetensorsFile f = SafetensorsFile::open(path);
    std::set<std::string> mine(tensors.begin(), tensors.end());
    for (const auto& t : tensors) {
      if (!f.contains(t))
        throw bad_index(str("the index puts tensor \"", t, "\" in ", file,
                            ", but that shard has no such tensor; the index and the shards come "
                            "from different saves"));
    }
    size_t i = s->files.size();
    for (const auto& n : f.names()) {
      if (mine.count(n) != 0) {
        s->names.push_back(n);
        s->where.emplace(n, i);
      }
    }
    s->files.push_back(std::move(f));
    s->file_names.push_back(file);
  }
  return CheckpointReader(std::move(s));
}

const std::string& CheckpointReader::location() const {
  return state_->location;
}
std::vector<std::string> CheckpointReader::names() const {
  return state_->names;
}
const std::vector<SafetensorsFile>& CheckpointReader::files() const {
  return state_->files;
}

bool CheckpointReader::contains(const std::string& name) const {
  return state_->where.count(name) != 0;
}

const SafetensorsFile& CheckpointReader::file_for(const std::string& name) const {
  auto it = state_->where.find(name);
  if (it == state_->where.end()) {
    std::string guess = closest_name(name, state_->names);
    throw Error(
        str("tensor \"", name, "\" not found in ", state_->location,
            " (files: ", state_->file_names.empty() ? "none" : list_files(state_->file_names), ")",
            guess.empty() ? "" : str("; did you mean \"", guess, "\"?"),
            guess.empty() ? "; check the tensor name and that the checkpoint is complete" : ""));
  }
  return state_->files[it->second];
}

const TensorInfo& CheckpointReader::info(const std::string& name) const {
  return file_for(name).info(name);
}

Tensor CheckpointReader::tensor(const std::string& name) const {
  return file_for(name).tensor(name);
}

std::string CheckpointReader::file_of(const std::string& name) const {
  return file_for(name).path();
}

void write_checkpoint_dir(const std::string& dir,
                          const std::vector<std::pair<std::string, Tensor>>& tensors,
                          uint64_t max_shard_bytes) {
  TUNE_CHECK(max_shard_bytes > 0, "cannot write ", dir, ": max_shard_bytes must be positive");
  // Checked before anything is written or removed: a bad argument must not damage the directory.
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    TUNE_CHECK(seen.insert(name).second, "cannot write ", dir, ": tensor \"", name,
               "\" is given twice; tensor names must be unique");
    TUNE_CHECK(t.defined(), "cannot write ", dir, ": tensor \"", name, "\" is undefined");
    TUNE_CHECK(t.device() == Device::cpu, "cannot write ", dir, ": tensor \"", name,
               "\" is on the GPU; copy it to the CPU first");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  TUNE_CHECK(!ec && fs::is_directory(dir, ec), "cannot create checkpoint directory ", dir, ": ",
             ec ? ec.message() : "a file of that name exists", "; check the path and permissions");

  // Greedy, in the given order: a shard closes when the next tensor would overflow it.
  using Group = std::vector<std::pair<std::string, Tensor>>;
  std::vector<Group> shards(1);
  uint64_t shard_bytes = 0, total = 0;
  for (const auto& nt : tensors) {
    uint64_t n = nt.second.nbytes();
    if (!shards.back().empty() && shard_bytes + n > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(nt);
    shard_bytes += n;
    total += n;
  }
  const std::map<std::string, std::string> kFormat = {{"format", "pt"}};
  std::string single = join_path(dir, kSafetensorsSingleName);
  std::string index_path = join_path(dir, kSafetensorsIndexName);
  auto remove_stale_shards = [&](const std::set<std::string>& keep) {
    std::vector<fs::path> stale;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      std::string n = e.path().filename().string();
      if (is_shard_name(n) && keep.count(n) == 0) stale.push_back(e.path());
    }
    for (const auto& p : stale) fs::remove(p, ec);
  };

  if (shards.size() == 1) {
    write_safetensors(single, shards[0], kFormat);
    fs::remove(index_path, ec);
    remove_stale_shards({});
    return;
  }

  std::vector<std::string> names;
  for (size_t i = 0; i < shards.size(); ++i) names.push_back(shard_name(i, shards.size()));
  // Overwriting shards an old index still lists would let a reader mix old and new tensors.
  bool overwrites = std::any_of(names.begin(), names.end(), [&](const std::string& n) {
    return fs::exists(join_path(dir, n));
  });
  if (overwrites) fs::remove(index_path, ec);

  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    write_safetensors(join_path(dir, names[i]), shards[i], kFormat);
    for (const auto& nt : shards[i]) weight_map[nt.first] = names[i];
  }
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_file_atomic(index_path, index.dump(2) + "\n");
  fs::remove(single, ec);
  remove_stale_shards(std::set<std::string>(names.begin(), names.end()));
}

}  // namespace tune::io
