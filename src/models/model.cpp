#include "tune/models/model.h"

#include "tune/io/checkpoint.h"

namespace tune::models {

namespace {
bool is_adapter_param(const std::string& name) {
  return name.starts_with("base_model.model.");
}
}  // namespace

Model::Model(const ModelConfig& config, const ModelOptions& options)
    : config_(config), options_(options) {
  if (options.device == Device::cpu) {
    TUNE_CHECK(options.dtype == DType::f32 || options.dtype == DType::f64,
               "models on the CPU compute in f32 or f64, not ", dtype_name(options.dtype),
               "; use bf16 or f16 with the CUDA device");
  } else {
    TUNE_CHECK(is_float(options.dtype) && options.dtype != DType::f64,
               "models on CUDA compute in bf16, f16 or f32, not ", dtype_name(options.dtype));
  }
  nn::BuildOptions build;
  if (options.training != Training::full) build.base_role = nn::Role::frozen;
  if (options.training == Training::lora) build.lora = &options_.lora;
  lm_ = std::make_unique<nn::CausalLM>(params_, config_.arch, config_.names, build);
  params_.allocate(options.dtype, options.device);
}

void load_weights(Model& model, const std::string& dir) {
  io::CheckpointReader reader = io::CheckpointReader::open_dir(dir);
  nn::ParamStore& params = model.params();
  for (int i = 0; i < static_cast<int>(params.infos().size()); ++i) {
    const nn::ParamInfo& p = params.info(i);
    if (is_adapter_param(p.name)) continue;
    // The original GPT-2 checkpoints (openai-community/gpt2) name tensors without the
    // "transformer." prefix that save_pretrained writes today.
    std::string name = p.name;
    if (!reader.contains(name) && name.starts_with("transformer.") &&
        reader.contains(name.substr(12)))
      name = name.substr(12);
    TUNE_CHECK(reader.contains(name), "tensor \"", p.name, "\" is missing from the checkpoint in ",
               dir, ": the weights do not match config.json (model_type ",
               model.config().model_type, ", ", model.config().arch.num_layers,
               " layers); check that config.json and the .safetensors files belong together");
    Tensor src = reader.tensor(name);
    TUNE_CHECK(src.shape() == p.shape, "tensor \"", name, "\" in ", reader.file_of(name),
               " has shape ", shape_str(src.shape()), " but config.json (", model.config().source,
               ") implies ", shape_str(p.shape),
               "; check that config.json and the weights belong together");
    TUNE_CHECK(is_float(src.dtype()), "tensor \"", name, "\" in ", reader.file_of(name),
               " has dtype ", dtype_name(src.dtype()), "; weights must be floating point");
    Tensor dst = params.param(i);
    dst.copy_from(src);
  }
}

std::unique_ptr<Model> load_model(const std::string& dir, const ModelOptions& options) {
  auto model = std::make_unique<Model>(read_model_config(dir), options);
  load_weights(*model, dir);
  return model;
}

}  // namespace tune::models
