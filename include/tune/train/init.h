// Initial weights for what training creates: a model trained from scratch, and LoRA adapters.
// Both follow Hugging Face (transformers' _init_weights, PEFT's LoRA init) and are a pure
// function of the seed: parameter i draws from Philox stream i.
#pragma once

#include <cstdint>

#include "tune/models/model.h"

namespace tune::train {

// transformers' Llama-family initialisation: every Linear weight and the embedding
// ~ N(0, std) (config initializer_range, 0.02 by default), norm weights 1, biases 0.
// LoRA tensors are left to init_lora_weights.
void init_scratch_weights(models::Model& model, double std, uint64_t seed);

// PEFT's default LoRA initialisation: A ~ kaiming_uniform(a = sqrt(5)), which is
// U(-1/sqrt(in), 1/sqrt(in)); B = 0, so the adapted model starts equal to the base model.
void init_lora_weights(models::Model& model, uint64_t seed);

}  // namespace tune::train
