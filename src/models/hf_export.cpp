// The `hf` and `peft` exports and the MergedWeights they read from.
//
// An export is assembled in OUT.tmp.<pid> beside OUT, each file written through AtomicFile
// (fsync'd), and renamed to OUT at the end; an existing OUT (a previous export: it holds
// config.json or adapter_config.json) is moved aside, replaced, then deleted. Whether an existing
// OUT may be replaced at all is the caller's decision (`tune export --overwrite`). On any error
// the temporary folder is removed and OUT is as it was.
//
// Weights stream: shards are planned from the stored shapes and the output dtype, then each
// tensor is read from the mapped checkpoint, merged and converted on its own and appended to its
// shard, so memory holds one tensor at a time whatever the model's size.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "tune/io/files.h"
#include "tune/io/safetensors.h"
#include "tune/models/merge.h"
#include "tune/models/peft.h"
#include "tune/ops/ops.h"

namespace tune::models {

namespace fs = std::filesystem;

namespace {

constexpr const char* kAdapterPrefix = "base_model.model.";

// PEFT before 0.7 saved "...lora_A.default.weight"; both name the one adapter.
std::string peft_name(const std::string& name) {
  for (const char* ab : {".lora_A", ".lora_B"}) {
    const std::string with_default = str(ab, ".default.weight");
    if (name.ends_with(with_default))
      return name.substr(0, name.size() - with_default.size()) + ab + ".weight";
  }
  return name;
}

std::string last_component(const std::string& module) {
  const size_t dot = module.rfind('.');
  return dot == std::string::npos ? module : module.substr(dot + 1);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TUNE_CHECK(in.good(), "cannot read ", path, "; check that it exists and is readable");
  std::ostringstream s;
  s << in.rdbuf();
  TUNE_CHECK(!in.bad(), "cannot read ", path, "; the read failed part way");
  return s.str();
}

nlohmann::ordered_json read_ordered_json(const std::string& path) {
  io::read_json_file(path);  // its messages for a missing or malformed file
  return nlohmann::ordered_json::parse(read_text(path));
}

DType export_dtype(const std::string& name, const char* option) {
  if (name == "bf16") return DType::bf16;
  if (name == "f16") return DType::f16;
  if (name == "f32") return DType::f32;
  throw Error(str(option, " \"", name, "\" is not an export dtype; use bf16, f16 or f32"));
}

// config.json's spelling of a dtype.
const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::bf16:
      return "bfloat16";
    case DType::f16:
      return "float16";
    default:
      return "float32";
  }
}

// The files of a model or adapter folder that are weights or describe them; everything else
// (tokenizer files, chat templates, generation_config.json, README.md, ...) is copied as is.
bool is_weights_or_config(const std::string& name) {
  static const char* kNames[] = {"config.json", io::kSafetensorsIndexName, "adapter_config.json",
                                 "pytorch_model.bin.index.json"};
  for (const char* n : kNames)
    if (name == n) return true;
  static const char* kExtensions[] = {".safetensors", ".bin",  ".pt", ".pth",
                                      ".ckpt",        ".gguf", ".h5", ".msgpack"};
  for (const char* e : kExtensions)
    if (name.ends_with(e)) return true;
  return name.starts_with(".");
}

void copy_side_files(const std::string& from, const std::string& to) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(from, ec)) {
    const std::string name = e.path().filename().string();
    if (is_weights_or_config(name) || !fs::is_regular_file(e.path(), ec)) continue;
    io::write_file_atomic((fs::path(to) / name).string(), read_text(e.path().string()));
  }
  TUNE_CHECK(!ec, "cannot list ", from, ": ", ec.message());
}

// OUT.tmp.<pid>, renamed to OUT by commit(); removed if never committed.
class Staging {
 public:
  Staging(const std::string& out, const std::vector<std::string>& inputs) {
    TUNE_CHECK(!out.empty(), "no output folder given: pass --out DIR");
    fs::path p = fs::path(out).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    out_ = p.string();
    std::error_code ec;
    if (fs::exists(p, ec)) {
      TUNE_CHECK(fs::is_directory(p, ec), out_,
                 " exists and is not a folder; an hf or peft export is a folder: choose "
                 "another --out");
      const fs::path here = fs::weakly_canonical(p, ec);
      for (const std::string& input : inputs) {
        if (input.empty()) continue;
        const fs::path in = fs::weakly_canonical(input, ec);
        const auto rel = in.lexically_relative(here);
        TUNE_CHECK(rel.empty() || *rel.begin() == "..", "--out ", out_,
                   " is or contains the input folder ", input,
                   ", which the export reads; write the export to another folder");
      }
      const bool empty = fs::is_empty(p, ec);
      TUNE_CHECK(empty || fs::exists(p / "config.json") || fs::exists(p / "adapter_config.json"),
                 out_,
                 " exists and holds neither config.json nor adapter_config.json, so it does not "
                 "look like an earlier export; not replacing it: choose another --out");
    }
    if (p.has_parent_path()) {
      fs::create_directories(p.parent_path(), ec);
      TUNE_CHECK(!ec, "cannot create ", p.parent_path().string(), " for --out: ", ec.message());
    }
    tmp_ = str(out_, ".tmp.", getpid());
    fs::remove_all(tmp_, ec);
    fs::create_directory(tmp_, ec);
    TUNE_CHECK(!ec, "cannot create the temporary folder ", tmp_, ": ", ec.message(),
               "; check that the folder of --out is writable");
  }
  ~Staging() {
    if (committed_) return;
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;

  std::string file(const std::string& name) const { return (fs::path(tmp_) / name).string(); }

  void commit() {
    std::error_code ec;
    if (!fs::exists(out_, ec)) {
      fs::rename(tmp_, out_, ec);
      TUNE_CHECK(!ec, "cannot rename ", tmp_, " to ", out_, ": ", ec.message());
    } else {
      const std::string old = str(out_, ".old.", getpid());
      fs::remove_all(old, ec);
      fs::rename(out_, old, ec);
      TUNE_CHECK(!ec, "cannot move the existing ", out_, " aside to replace it: ", ec.message());
      fs::rename(tmp_, out_, ec);
      if (ec) {
        std::error_code back;
        fs::rename(old, out_, back);
        throw Error(str("cannot rename ", tmp_, " to ", out_, ": ", ec.message(), "; the previous ",
                        out_, " is unchanged"));
      }
      fs::remove_all(old, ec);
    }
    committed_ = true;
    // The new name survives a power loss once the parent folder is on disk.
    const fs::path parent = fs::path(out_).has_parent_path() ? fs::path(out_).parent_path() : ".";
    const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
  }

 private:
  std::string out_, tmp_;
  bool committed_ = false;
};

// "\r  12/290 tensors, 1234/5000 MB, 450 MB/s" on stderr when it is a terminal.
class Progress {
 public:
  Progress(size_t tensors, uint64_t bytes)
      : tensors_(tensors), bytes_(bytes), tty_(isatty(STDERR_FILENO) != 0) {}
  ~Progress() {
    if (shown_) std::fprintf(stderr, "\n");
  }
  void add(uint64_t bytes) {
    ++done_tensors_;
    done_bytes_ += bytes;
    if (!tty_) return;
    const auto now = Clock::now();
    if (done_tensors_ != tensors_ && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    const double s = std::chrono::duration<double>(now - start_).count();
    std::fprintf(stderr, "\r  writing weights: %zu/%zu tensors, %.0f/%.0f MB, %.0f MB/s   ",
                 done_tensors_, tensors_, done_bytes_ / 1e6, bytes_ / 1e6,
                 s > 0 ? done_bytes_ / 1e6 / s : 0.0);
    std::fflush(stderr);
    shown_ = true;
  }

 private:
  using Clock = std::chrono::steady_clock;
  size_t tensors_, done_tensors_ = 0;
  uint64_t bytes_, done_bytes_ = 0;
  bool tty_, shown_ = false;
  Clock::time_point start_ = Clock::now(), last_{};
};

struct Planned {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t bytes;
};

std::string shard_file_name(size_t index, size_t count) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return buf;
}

// One safetensors file, written tensor by tensor: the header first (every offset is known from
// the plan), then each tensor merged / converted as it comes.
void write_shard(const std::string& path, const std::vector<Planned>& tensors,
                 const MergedWeights& weights, Progress& progress) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const Planned& t : tensors) {
    header[t.name] = {{"dtype", dtype_to_safetensors(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  io::AtomicFile file(path);
  const uint64_t n = text.size();
  file.write(&n, 8);
  file.write(text);
  for (const Planned& t : tensors) {
    Tensor x = weights.tensor(t.name);
    if (x.dtype() != t.dtype) x = x.to(t.dtype);
    TUNE_ASSERT(x.nbytes() == t.bytes, "tensor ", t.name, " has ", x.nbytes(), " bytes, planned ",
                t.bytes);
    if (t.bytes > 0) file.write(x.raw(), t.bytes);
    progress.add(t.bytes);
  }
  file.commit();
}

// Shards as transformers' save_pretrained fills them: in order, a new shard when the next tensor
// would overflow the current one (a tensor over the limit gets a shard of its own).
void write_weights(const Staging& stage, const MergedWeights& weights, DType dtype,
                   uint64_t max_shard_bytes) {
  std::vector<std::vector<Planned>> shards(1);
  uint64_t shard_bytes = 0, total = 0;
  for (const std::string& name : weights.names()) {
    const io::TensorInfo& info = weights.info(name);
    const DType out = is_float(info.dtype) ? dtype : info.dtype;
    uint64_t bytes = dtype_size(out);
    for (int64_t d : info.shape) bytes *= static_cast<uint64_t>(d);
    if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back({name, out, info.shape, bytes});
    shard_bytes += bytes;
    total += bytes;
  }
  Progress progress(weights.names().size(), total);
  if (shards.size() == 1) {
    write_shard(stage.file(io::kSafetensorsSingleName), shards[0], weights, progress);
    return;
  }
  nlohmann::json weight_map = nlohmann::json::object();  // sorted by name, as transformers writes
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file = shard_file_name(i, shards.size());
    write_shard(stage.file(file), shards[i], weights, progress);
    for (const Planned& t : shards[i]) weight_map[t.name] = file;
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  io::write_file_atomic(stage.file(io::kSafetensorsIndexName), index.dump(2) + "\n");
}

void check_model_dir(const std::string& dir) {
  TUNE_CHECK(!dir.empty(),
             "no model given: pass --model DIR, a Hugging Face model folder (config.json + "
             "*.safetensors)");
  TUNE_CHECK(fs::is_directory(dir), "--model ", dir,
             ": no such directory; pass a Hugging Face model folder (config.json + "
             "*.safetensors)");
}

}  // namespace

MergedWeights::MergedWeights(const std::string& model_dir, const std::string& adapter_dir,
                             Merge merge) {
  check_model_dir(model_dir);
  config_ = read_model_config(model_dir);
  reader_ = io::CheckpointReader::open_dir(model_dir);
  names_ = reader_.names();
  if (!adapter_dir.empty()) {
    TUNE_CHECK(fs::is_directory(adapter_dir), "--adapter ", adapter_dir,
               ": no such directory; pass a PEFT adapter folder (adapter_config.json + "
               "adapter_model.safetensors)");
    adapter_ = read_adapter_config(adapter_dir);
  }

  // The model's parameter table, declared but never allocated: names and shapes only.
  nn::ParamStore params;
  nn::BuildOptions build;
  if (adapter_) {
    build.base_role = nn::Role::frozen;
    build.lora = &*adapter_;
  }
  nn::CausalLM lm(params, config_.arch, config_.names, build);

  // Base weights: each present with the shape config.json implies. The original GPT-2
  // checkpoints name tensors without the "transformer." prefix.
  std::map<std::string, std::string> stored;  // parameter name -> checkpoint name
  for (const nn::ParamInfo& p : params.infos()) {
    if (p.name.starts_with(kAdapterPrefix)) continue;
    std::string name = p.name;
    if (!reader_.contains(name) && name.starts_with("transformer.") &&
        reader_.contains(name.substr(12)))
      name = name.substr(12);
    TUNE_CHECK(reader_.contains(name), "tensor \"", p.name, "\" is missing from the checkpoint in ",
               model_dir, ": the weights do not match config.json (model_type ", config_.model_type,
               ", ", config_.arch.num_layers,
               " layers); check that config.json and the .safetensors files belong together");
    const io::TensorInfo& info = reader_.info(name);
    TUNE_CHECK(info.shape == p.shape, "tensor \"", name, "\" in ", reader_.file_of(name),
               " has shape ", shape_str(info.shape), " but config.json implies ",
               shape_str(p.shape), "; check that config.json and the weights belong together");
    TUNE_CHECK(is_float(info.dtype), "tensor \"", name, "\" in ", reader_.file_of(name),
               " has dtype ", dtype_name(info.dtype), "; weights must be floating point");
    stored[p.name] = name;
  }
  if (!adapter_) return;

  const std::string config_path = adapter_dir + "/adapter_config.json";
  const std::vector<nn::Linear*> linears = lm.linears();
  // Every module adapter_config.json names must exist (PEFT would not have trained one that
  // does not); "all-linear" is whatever the model has.
  std::vector<std::string> kinds;
  for (const nn::Linear* l : linears) {
    const std::string k = last_component(l->module());
    if (std::find(kinds.begin(), kinds.end(), k) == kinds.end()) kinds.push_back(k);
  }
  for (const std::string& target : adapter_->targets) {
    if (target == "all-linear") continue;
    nn::LoraConfig one;
    one.targets = {target};
    const bool found = std::any_of(linears.begin(), linears.end(), [&](const nn::Linear* l) {
      return one.targets_module(l->module());
    });
    if (found) continue;
    std::string list;
    for (const std::string& k : kinds) list += (list.empty() ? "" : ", ") + k;
    throw Error(str(config_path, ": target_modules lists \"", target,
                    "\", which matches no module of this model (", config_.model_type, ", ",
                    config_.source, "; its linear modules are ", list,
                    "); check that the adapter was trained on this base model"));
  }

  const std::string file_path = adapter_dir + "/adapter_model.safetensors";
  TUNE_CHECK(io::file_exists(file_path), "no adapter_model.safetensors in ", adapter_dir,
             io::file_exists(adapter_dir + "/adapter_model.bin")
                 ? ": only adapter_model.bin, which tune.cpp does not read; re-save the adapter "
                   "with PEFT's save_pretrained(..., safe_serialization=True)"
                 : ": a PEFT adapter folder has adapter_config.json and "
                   "adapter_model.safetensors");
  adapter_file_ = io::SafetensorsFile::open(file_path);
  std::map<std::string, std::string> in_file;  // PEFT name -> name in the file
  for (const std::string& name : adapter_file_.names()) {
    const std::string key = peft_name(name);
    const int i = params.index(key);
    if (i < 0) {
      std::string module = key;
      if (module.starts_with(kAdapterPrefix)) module = module.substr(17);
      const size_t cut = module.find(".lora_");
      if (cut != std::string::npos) module = module.substr(0, cut);
      const bool exists = std::any_of(linears.begin(), linears.end(),
                                      [&](const nn::Linear* l) { return l->module() == module; });
      throw Error(str(file_path, ": tensor \"", name, "\" adapts \"", module, "\", ",
                      exists ? "which adapter_config.json's target_modules does not list"
                             : str("which this model (", config_.model_type, ", ", config_.source,
                                   ") does not have"),
                      "; check that the adapter was trained on this base model and that "
                      "adapter_config.json belongs with adapter_model.safetensors"));
    }
    const io::TensorInfo& info = adapter_file_.info(name);
    TUNE_CHECK(info.shape == params.info(i).shape, file_path, ": tensor \"", name, "\" has shape ",
               shape_str(info.shape), " but the base model in ", model_dir,
               " with r = ", adapter_->r, " (", config_path, ") needs ",
               shape_str(params.info(i).shape),
               "; the adapter was trained on a different base model, or r is wrong");
    TUNE_CHECK(is_float(info.dtype), file_path, ": tensor \"", name, "\" has dtype ",
               dtype_name(info.dtype), "; LoRA weights must be floating point");
    in_file[key] = name;
  }
  for (const nn::ParamInfo& p : params.infos()) {
    if (!p.name.starts_with(kAdapterPrefix)) continue;
    TUNE_CHECK(in_file.count(p.name) != 0, file_path, ": missing tensor \"", p.name,
               "\", which adapter_config.json's target_modules implies (", config_path,
               "); the two files do not belong together");
    adapter_names_.emplace_back(p.name, in_file[p.name]);
  }

  for (const nn::Linear* l : linears) {
    if (!l->has_lora()) continue;
    const std::string weight = l->module() + ".weight";
    if (merge == Merge::check_only) continue;
    TUNE_CHECK(params.index(weight) >= 0, config_path, ": target_modules adapts \"", l->module(),
               "\", whose weight is tied to the token embeddings (tie_word_embeddings); a merged "
               "model cannot hold that adapter without changing the embeddings too. Export the "
               "adapter alone with --format peft, or train without \"",
               last_component(l->module()), "\" in target_modules");
    const std::string prefix = kAdapterPrefix + l->module();
    adapted_[stored.at(weight)] = {in_file.at(prefix + ".lora_A.weight"),
                                   in_file.at(prefix + ".lora_B.weight"), config_.arch.conv1d};
  }
}

Tensor MergedWeights::tensor(const std::string& name) const {
  const Tensor stored = reader_.tensor(name);
  const auto it = adapted_.find(name);
  if (it == adapted_.end()) return stored;
  Tensor w = stored.to(DType::f32);                                    // own storage
  const Tensor a = adapter_file_.tensor(it->second.a).to(DType::f32);  // [r, in]
  const Tensor b = adapter_file_.tensor(it->second.b).to(DType::f32);  // [out, r]
  using ops::Transpose;
  if (it->second.in_out)  // Conv1D W [in, out] += scale · (B·A)^T = scale · A^T·B^T
    ops::matmul(w, a, Transpose::yes, b, Transpose::yes, adapter_->scale(), 1.0);
  else  // W [out, in] += scale · B·A
    ops::matmul(w, b, Transpose::no, a, Transpose::no, adapter_->scale(), 1.0);
  return w;
}

std::vector<std::pair<std::string, Tensor>> MergedWeights::adapter_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, in_file] : adapter_names_)
    out.emplace_back(name, adapter_file_.tensor(in_file));
  return out;
}

uint64_t parse_byte_size(const std::string& text, const std::string& what) {
  std::string upper;
  for (char c : text) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static const std::pair<const char*, double> kUnits[] = {{"GIB", 1024.0 * 1024 * 1024},
                                                          {"MIB", 1024.0 * 1024},
                                                          {"KIB", 1024.0},
                                                          {"GB", 1e9},
                                                          {"MB", 1e6},
                                                          {"KB", 1e3},
                                                          {"B", 1.0}};
  double unit = 1;
  std::string number = upper;
  for (const auto& [suffix, factor] : kUnits) {
    if (upper.ends_with(suffix)) {
      number = upper.substr(0, upper.size() - std::string(suffix).size());
      unit = factor;
      break;
    }
  }
  char* end = nullptr;
  const double v = number.empty() ? NAN : std::strtod(number.c_str(), &end);
  TUNE_CHECK(!number.empty() && end && *end == '\0' && std::isfinite(v) && v * unit >= 1, what,
             " \"", text,
             "\" is not a size; write it as transformers does: \"5GB\", \"200MB\", \"1.5GiB\" or "
             "a number of bytes");
  return static_cast<uint64_t>(v * unit);
}

void export_hf(const ExportOptions& options, uint64_t max_shard_bytes) {
  TUNE_CHECK(options.quant.empty(), "--quant ", options.quant,
             " is a GGUF option (--format gguf); an hf export writes plain weights in the "
             "--dtype you choose (bf16, f16 or f32)");
  TUNE_CHECK(max_shard_bytes > 0, "the largest shard must be at least one byte");
  const MergedWeights weights(options.model_dir, options.adapter_dir);
  const DType dtype =
      options.dtype.empty() ? weights.config().dtype : export_dtype(options.dtype, "--dtype");
  Staging stage(options.out, {options.model_dir, options.adapter_dir});
  write_weights(stage, weights, dtype, max_shard_bytes);

  // config.json as it was (key order kept) with the dtype of the written weights, under the key
  // it already uses ("dtype" in transformers 5, "torch_dtype" before); "dtype" when it has none.
  nlohmann::ordered_json config = read_ordered_json(options.model_dir + "/config.json");
  bool set = false;
  for (const char* key : {"dtype", "torch_dtype"}) {
    if (config.contains(key)) {
      config[key] = torch_dtype_name(dtype);
      set = true;
    }
  }
  if (!set) config["dtype"] = torch_dtype_name(dtype);
  io::write_file_atomic(stage.file("config.json"), config.dump(2) + "\n");
  copy_side_files(options.model_dir, stage.file(""));
  stage.commit();
}

void export_hf(const ExportOptions& options) {
  export_hf(options, kDefaultMaxShardBytes);
}

void export_peft(const ExportOptions& options) {
  TUNE_CHECK(options.quant.empty(), "--quant ", options.quant,
             " is a GGUF option (--format gguf); a peft export writes the LoRA weights in "
             "--dtype (bf16, f16 or f32; default as stored)");
  TUNE_CHECK(!options.adapter_dir.empty(),
             "--format peft writes a LoRA adapter: pass --adapter DIR (adapter_config.json + "
             "adapter_model.safetensors)");
  const MergedWeights weights(options.model_dir, options.adapter_dir, Merge::check_only);
  std::optional<DType> dtype;
  if (!options.dtype.empty()) dtype = export_dtype(options.dtype, "--dtype");
  Staging stage(options.out, {options.model_dir, options.adapter_dir});

  std::vector<std::pair<std::string, Tensor>> tensors = weights.adapter_tensors();
  for (auto& [name, t] : tensors)
    if (dtype && t.dtype() != *dtype) t = t.to(*dtype);
  io::write_safetensors(stage.file("adapter_model.safetensors"), tensors, {{"format", "pt"}});

  // adapter_config.json as PEFT wrote it (its other keys are PEFT's business), for inference.
  nlohmann::ordered_json config = read_ordered_json(options.adapter_dir + "/adapter_config.json");
  config["inference_mode"] = true;
  if (!config.contains("base_model_name_or_path") || config["base_model_name_or_path"].is_null())
    config["base_model_name_or_path"] = fs::absolute(options.model_dir).lexically_normal().string();
  io::write_file_atomic(stage.file("adapter_config.json"), config.dump(2) + "\n");
  copy_side_files(options.adapter_dir, stage.file(""));
  stage.commit();
}

}  // namespace tune::models
