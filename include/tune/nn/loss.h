// Causal language-modelling loss with Hugging Face semantics: labels are aligned with input_ids
// and shifted inside (position t predicts labels[t + 1]), -100 is ignored, and the loss is the
// mean over counted tokens. Losses are functions returning the loss and the gradient of their
// input (DESIGN.md decision 1).
#pragma once

#include "tune/core/tensor.h"

namespace tune::nn {

// labels [B, T] -> targets [B*T]: targets[b, t] = labels[b, t + 1], and -100 at t = T - 1.
Tensor shift_labels(const Tensor& labels);

struct LossResult {
  double sum = 0;     // sum of token losses
  int64_t count = 0;  // counted tokens
  double mean() const { return count ? sum / static_cast<double>(count) : 0.0; }
};

// Loss of logits [B*T, V] against labels [B, T]. dlogits (same shape as logits, written) gets
// the gradient of (sum / normalizer); normalizer = 0 means "this batch's own count" — gradient
// accumulation passes the count of the whole accumulated batch instead.
LossResult causal_lm_loss(Tensor& dlogits, const Tensor& logits, const Tensor& labels,
                          double normalizer = 0);

}  // namespace tune::nn
