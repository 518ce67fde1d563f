#include "tune/nn/loss.h"

#include "tune/ops/ops.h"

namespace tune::nn {

Tensor shift_labels(const Tensor& labels) {
  TUNE_CHECK(labels.dim() == 2, "labels must be (batch, seq), got ", shape_str(labels.shape()));
  const int64_t B = labels.size(0), T = labels.size(1);
  Tensor targets = Tensor::empty({B * T}, DType::i64);
  int64_t* out = targets.data<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t + 1 < T; ++t)
      out[b * T + t] = static_cast<int64_t>(labels.item(b * T + t + 1));
    out[b * T + T - 1] = -100;
  }
  return targets;
}

LossResult causal_lm_loss(Tensor& dlogits, const Tensor& logits, const Tensor& labels,
                          double normalizer) {
  // Labels are shifted and counted on the host; the loss runs where the logits are.
  const Tensor host_targets = shift_labels(labels.to(Device::cpu));
  TUNE_CHECK(logits.dim() == 2 && logits.size(0) == host_targets.numel(), "causal_lm_loss: logits ",
             shape_str(logits.shape()), " do not match labels ", shape_str(labels.shape()));
  LossResult r;
  r.count = ops::count_targets(host_targets);
  const Tensor targets = host_targets.to(logits.device());
  double denom = normalizer > 0 ? normalizer : static_cast<double>(r.count);
  // With no counted token the loss is 0 and so is its gradient (HF would return NaN).
  r.sum = ops::cross_entropy(dlogits, logits, targets, denom > 0 ? 1.0 / denom : 0.0);
  return r;
}

}  // namespace tune::nn
