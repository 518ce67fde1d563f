#include "tune/models/peft.h"

#include <filesystem>

#include "models/config_reader.h"
#include "tune/io/files.h"
#include "tune/io/safetensors.h"

namespace tune::models {

namespace {

bool is_lora_param(const std::string& name) {
  return name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight");
}

void reject_if_set(const ConfigReader& c, const std::string& key, const std::string& feature) {
  const auto& j = c.json();
  if (!j.contains(key) || j[key].is_null() || j[key] == false) return;
  if ((j[key].is_object() || j[key].is_array()) && j[key].empty()) return;
  c.fail(key, str("is set (", feature,
                  "), which tune.cpp does not support yet; "
                  "retrain the adapter without it"));
}

}  // namespace

nn::LoraConfig read_adapter_config(const std::string& dir) {
  std::string path = dir + "/adapter_config.json";
  TUNE_CHECK(io::file_exists(path), "no adapter_config.json in ", dir,
             ": a LoRA adapter folder in PEFT's layout has adapter_config.json and "
             "adapter_model.safetensors");
  ConfigReader c(io::read_json_file(path), path);
  std::string type = c.string("peft_type", "LORA");
  if (type != "LORA")
    c.fail("peft_type", str("is \"", type, "\"; only LORA adapters are supported"));
  reject_if_set(c, "use_dora", "DoRA");
  reject_if_set(c, "rank_pattern", "per-module ranks");
  reject_if_set(c, "alpha_pattern", "per-module alphas");
  reject_if_set(c, "modules_to_save", "fully trained extra modules");
  reject_if_set(c, "layers_to_transform", "a subset of layers");
  reject_if_set(c, "lora_bias", "LoRA biases");
  if (c.string("bias", "none") != "none") c.fail("bias", "must be \"none\"");

  nn::LoraConfig lora;
  lora.r = c.integer("r", 8);
  lora.alpha = c.number("lora_alpha", 8);
  lora.dropout = c.number("lora_dropout", 0.0);
  lora.scaling =
      c.boolean("use_rslora", false) ? nn::LoraScaling::rslora : nn::LoraScaling::standard;
  if (lora.r <= 0) c.fail("r", "must be positive");
  const auto& targets = c.json().contains("target_modules") ? c.json()["target_modules"] : nullptr;
  lora.targets.clear();
  if (targets.is_string()) {
    std::string t = targets.get<std::string>();
    // PEFT treats a string as a regex matched against the full module name.
    if (t != "all-linear")
      c.fail("target_modules",
             str("is the regular expression \"", t,
                 "\"; list module names "
                 "instead (e.g. [\"q_proj\", \"v_proj\"]) or use \"all-linear\""));
    lora.targets.push_back(t);
  } else if (targets.is_array() && !targets.empty()) {
    for (const auto& t : targets) {
      if (!t.is_string()) c.fail("target_modules", "must list module names as strings");
      lora.targets.push_back(t.get<std::string>());
    }
  } else {
    c.fail("target_modules", "must be a non-empty list of module names or \"all-linear\"");
  }
  return lora;
}

void load_adapter(Model& model, const std::string& dir) {
  TUNE_CHECK(model.options().training == Training::lora,
             "load_adapter: the model was built without LoRA layers");
  std::string path = dir + "/adapter_model.safetensors";
  TUNE_CHECK(io::file_exists(path), "no adapter_model.safetensors in ", dir);
  io::SafetensorsFile file = io::SafetensorsFile::open(path);
  nn::ParamStore& params = model.params();
  for (const std::string& name : file.names()) {
    // PEFT may save "...lora_A.default.weight" in older versions; both mean the one adapter.
    std::string key = name;
    for (const char* ab : {".lora_A", ".lora_B"}) {
      std::string with_default = str(ab, ".default.weight");
      if (key.ends_with(with_default))
        key = key.substr(0, key.size() - with_default.size()) + ab + ".weight";
    }
    int i = params.index(key);
    TUNE_CHECK(i >= 0, path, ": tensor \"", name,
               "\" has no place in this model with these "
               "target modules; check that the adapter was trained on this base model and that "
               "adapter_config.json's target_modules matches the file");
    Tensor src = file.tensor(name);
    TUNE_CHECK(src.shape() == params.info(i).shape, path, ": tensor \"", name, "\" has shape ",
               shape_str(src.shape()), " but the model expects ", shape_str(params.info(i).shape),
               " (r = ", model.options().lora.r, ")");
    Tensor dst = params.param(i);
    dst.copy_from(src);
  }
  for (const auto& p : params.infos()) {
    if (!is_lora_param(p.name)) continue;
    bool found = file.contains(p.name) ||
                 file.contains(p.name.substr(0, p.name.size() - 7) + ".default.weight");
    TUNE_CHECK(found, path, ": missing tensor \"", p.name,
               "\", which adapter_config.json's "
               "target_modules implies");
  }
}

void save_adapter(const Model& model, const std::string& dir, const std::string& base_model,
                  const Tensor& trainable) {
  TUNE_CHECK(model.options().training == Training::lora,
             "save_adapter: the model has no LoRA layers");
  std::filesystem::create_directories(dir);
  const nn::ParamStore& params = model.params();
  const nn::LoraConfig& lora = model.options().lora;
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    const nn::ParamInfo& p = params.info(i);
    if (!is_lora_param(p.name)) continue;
    const Tensor w = trainable.defined()
                         ? trainable.narrow(p.offset, numel_of(p.shape)).view(p.shape)
                         : params.param(i);
    tensors.emplace_back(p.name, w.to(Device::cpu).to(DType::f32));
  }
  io::write_safetensors(dir + "/adapter_model.safetensors", tensors, {{"format", "pt"}});

  nlohmann::json targets = lora.targets;
  if (lora.targets.size() == 1 && lora.targets[0] == "all-linear") targets = "all-linear";
  nlohmann::json config = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"base_model_name_or_path",
       base_model.empty() ? nlohmann::json(nullptr) : nlohmann::json(base_model)},
      {"r", lora.r},
      {"lora_alpha", lora.alpha},
      {"lora_dropout", lora.dropout},
      {"use_rslora", lora.scaling == nn::LoraScaling::rslora},
      {"target_modules", targets},
      {"bias", "none"},
      // GPT-2's Conv1D weights are [in, out]: PEFT merges their adapters transposed.
      {"fan_in_fan_out", model.config().arch.conv1d},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"use_dora", false},
      {"modules_to_save", nullptr},
      {"rank_pattern", nlohmann::json::object()},
      {"alpha_pattern", nlohmann::json::object()},
  };
  io::write_file_atomic(dir + "/adapter_config.json", config.dump(2) + "\n");
}

}  // namespace tune::models
