// The scheduler loop: take what waits (up to max_batch active), drop cancelled sequences, run one
// forward_batch over every active sequence (prefill for the new ones, one token for the rest),
// choose each next token as Generator::generate does (same sampler, same draw numbering, same
// stop handling), hand the tokens over, retire the finished. A failing step fails the requests
// in it, not the server.
#include "tune/infer/batch_engine.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>

#include "tune/core/error.h"
#include "tune/infer/text_stream.h"
#include "tune/io/safetensors.h"
#include "tune/models/peft.h"
#include "tune/ops/ops.h"

namespace tune::infer {

// ---- adapters ----

int load_adapter_into_bank(nn::AdapterBank& bank, const std::string& name, const std::string& dir,
                           models::Model& model) {
  const nn::LoraConfig config = models::read_adapter_config(dir);
  const std::string path = dir + "/adapter_model.safetensors";
  TUNE_CHECK(std::filesystem::exists(path), "adapter ", name, ": no adapter_model.safetensors in ",
             dir);
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  std::unordered_map<std::string, nn::Linear*> linears;
  for (nn::Linear* l : model.lm().linears()) {
    TUNE_CHECK(!l->has_lora(), "adapter ", name, ": the base model already carries an adapter on ",
               l->module());
    linears[l->module()] = l;
  }
  struct Pair {
    Tensor a, b;
  };
  std::unordered_map<std::string, Pair> pairs;
  const std::string prefix = "base_model.model.";
  for (const std::string& tensor_name : file.names()) {
    std::string key = tensor_name;
    // Older PEFT versions save "...lora_A.default.weight"; both mean the one adapter.
    for (const char* ab : {".lora_A", ".lora_B"}) {
      const std::string with_default = std::string(ab) + ".default.weight";
      if (key.ends_with(with_default))
        key = key.substr(0, key.size() - with_default.size()) + ab + ".weight";
    }
    const bool is_a = key.ends_with(".lora_A.weight"), is_b = key.ends_with(".lora_B.weight");
    TUNE_CHECK(
        key.starts_with(prefix) && (is_a || is_b), path, ": tensor \"", tensor_name,
        "\" is not a LoRA weight in PEFT's naming (base_model.model.<module>.lora_A.weight)");
    const std::string module = key.substr(
        prefix.size(), key.size() - prefix.size() - std::string(".lora_A.weight").size());
    const auto it = linears.find(module);
    TUNE_CHECK(it != linears.end(), path, ": tensor \"", tensor_name, "\" adapts \"", module,
               "\", which this model does not have; was the adapter trained on this base model?");
    // In the model's dtype, on its device.
    Tensor t =
        file.tensor(tensor_name).to(model.params().dtype()).clone().to(model.params().device());
    (is_a ? pairs[module].a : pairs[module].b) = t;
  }
  TUNE_CHECK(!pairs.empty(), path, ": holds no LoRA tensors");
  std::unordered_map<std::string, nn::LoraDelta> deltas;
  for (auto& [module, p] : pairs) {
    TUNE_CHECK(p.a.defined() && p.b.defined(), path, ": ", module,
               " has only one of lora_A and lora_B");
    const nn::Linear& l = *linears[module];
    TUNE_CHECK(p.a.dim() == 2 && p.b.dim() == 2 && p.a.size(0) == config.r &&
                   p.a.size(1) == l.in_features() && p.b.size(0) == l.out_features() &&
                   p.b.size(1) == config.r,
               path, ": ", module, " has lora_A ", p.a.describe(), " and lora_B ", p.b.describe(),
               " but the layer needs [", config.r, ", ", l.in_features(), "] and [",
               l.out_features(), ", ", config.r, "] (r = ", config.r, ")");
    deltas[module] = {p.a, p.b, config.scale()};
  }
  return bank.add(name, std::move(deltas));
}

// ---- RequestStream ----

bool RequestStream::wait(std::vector<TokenEvent>& events, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return done_ || !events_.empty(); });
  while (!events_.empty()) {
    events.push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return !done_;  // done: everything it will ever send was just taken
}

void RequestStream::push(TokenEvent event) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  cv_.notify_all();
}

void RequestStream::close(FinishReason finish, int64_t completion_tokens, std::string text,
                          std::string error) {
  {
    std::lock_guard lock(mutex_);
    finish_ = finish;
    completion_tokens_ = completion_tokens;
    text_ = std::move(text);
    error_ = std::move(error);
    done_ = true;
  }
  cv_.notify_all();
}

// ---- BatchEngine ----

struct BatchEngine::Sequence {
  ~Sequence() {
    if (decoder && slot >= 0) decoder->release(slot);
  }
  BatchRequest request;
  std::shared_ptr<RequestStream> stream;
  KvCache cache;                    // forward_batch's path
  PagedDecoder* decoder = nullptr;  // the paged path: the slot to give back
  int64_t slot = -1;
  std::vector<int64_t> seen;       // prompt + generated, for the repetition penalty
  std::vector<int64_t> generated;  // new tokens
  std::optional<TextStream> text;
  bool prefilled = false;
};

namespace {

// Row r of logits [S, V] (on the CPU) as floats.
void row_to_floats(const Tensor& logits, int64_t r, std::vector<float>& out) {
  const int64_t vocab = logits.size(1);
  out.resize(static_cast<size_t>(vocab));
  const Tensor row = logits.narrow(r, 1);
  convert(row.raw(), row.dtype(), out.data(), DType::f32, vocab);
}

// The chosen token's log-probability and the k most likely tokens', from the raw logits.
void fill_logprobs(std::span<const float> row, int64_t chosen, int k, TokenEvent& e) {
  double mx = -std::numeric_limits<double>::infinity();
  for (float v : row) mx = std::max(mx, static_cast<double>(v));
  double sum = 0;
  for (float v : row) sum += std::exp(static_cast<double>(v) - mx);
  const double lse = mx + std::log(sum);
  e.chosen = {chosen, static_cast<double>(row[static_cast<size_t>(chosen)]) - lse};
  if (k <= 0) return;
  std::vector<int64_t> ids(row.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
  const auto kk = std::min<size_t>(static_cast<size_t>(k), ids.size());
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(kk), ids.end(),
                    [&](int64_t a, int64_t b) {
                      const float va = row[static_cast<size_t>(a)],
                                  vb = row[static_cast<size_t>(b)];
                      return va != vb ? va > vb : a < b;
                    });
  for (size_t i = 0; i < kk; ++i)
    e.top.push_back({ids[i], static_cast<double>(row[static_cast<size_t>(ids[i])]) - lse});
}

}  // namespace

BatchEngine::BatchEngine(LoadedModel& model, const nn::AdapterBank& bank,
                         BatchEngineOptions options)
    : model_(&model), bank_(&bank), options_(options) {
  TUNE_CHECK(options_.max_batch >= 1, "BatchEngine: max_batch must be >= 1, got ",
             options_.max_batch);
  nn::CausalLM& lm = model.model->lm();
  if (lm.device() == Device::cuda && bank.size() == 0) {
    TUNE_CHECK(options_.max_context >= 1, "BatchEngine: max_context must be >= 1, got ",
               options_.max_context);
    paged_ = std::make_unique<PagedDecoder>(
        lm, options_.max_batch, std::min(options_.max_context, lm.config().max_positions));
  }
  thread_ = std::thread([this] { run(); });
}

BatchEngine::~BatchEngine() {
  shutdown();
}

void BatchEngine::shutdown() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int64_t BatchEngine::max_sequence_positions() const {
  return paged_ ? paged_->slot_capacity() : model_->model->lm().config().max_positions;
}

BatchEngineStats BatchEngine::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::shared_ptr<RequestStream> BatchEngine::submit(BatchRequest request) {
  const nn::TransformerConfig& config = model_->model->lm().config();
  TUNE_CHECK(!request.prompt.empty(), "the prompt has no tokens");
  for (int64_t id : request.prompt)
    TUNE_CHECK(id >= 0 && id < config.vocab_size, "prompt token ", id,
               " is outside the model's vocabulary of ", config.vocab_size);
  TUNE_CHECK(static_cast<int64_t>(request.prompt.size()) < config.max_positions, "the prompt has ",
             request.prompt.size(), " tokens but the model takes at most ", config.max_positions);
  TUNE_CHECK(request.adapter >= 0 && request.adapter <= bank_->size(), "unknown adapter ",
             request.adapter);
  TUNE_CHECK(request.options.stop.empty() || model_->tokenizer.has_value(),
             "stop strings need a tokenizer");
  if (paged_) {
    const int64_t need = static_cast<int64_t>(request.prompt.size()) +
                         std::max<int64_t>(request.options.max_new_tokens, 1) - 1;
    TUNE_CHECK(need <= paged_->slot_capacity(), "the prompt (", request.prompt.size(),
               " tokens) and max_tokens (", request.options.max_new_tokens, ") need ", need,
               " positions, but this server keeps ", paged_->slot_capacity(),
               " per sequence (--max-context)");
  }
  auto seq = std::make_unique<Sequence>();
  seq->stream = std::make_shared<RequestStream>();
  seq->stream->prompt_tokens_ = static_cast<int64_t>(request.prompt.size());
  seq->request = std::move(request);
  std::shared_ptr<RequestStream> out = seq->stream;
  {
    std::lock_guard lock(mutex_);
    TUNE_CHECK(!stopping_, "the server is shutting down");
    waiting_.push_back(std::move(seq));
    stats_.waiting = static_cast<int64_t>(waiting_.size());
  }
  cv_.notify_all();
  return out;
}

void BatchEngine::run() {
  std::vector<std::unique_ptr<Sequence>> active;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !active.empty(); });
      if (stopping_ && waiting_.empty() && active.empty()) return;
      while (!waiting_.empty() && static_cast<int64_t>(active.size()) < options_.max_batch) {
        active.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
      }
      stats_.waiting = static_cast<int64_t>(waiting_.size());
    }
    // Cancelled sequences leave before the step: their slot and cache are freed. The count is
    // updated before their streams close, so a caller that saw the close sees the count.
    std::vector<std::unique_ptr<Sequence>> gone, kept;
    for (auto& s : active) (s->stream->cancelled() ? gone : kept).push_back(std::move(s));
    active = std::move(kept);
    if (!gone.empty()) {
      {
        std::lock_guard lock(mutex_);
        stats_.cancelled += static_cast<int64_t>(gone.size());
        stats_.active = static_cast<int64_t>(active.size());
      }
      for (auto& s : gone)
        s->stream->close(FinishReason::stop, static_cast<int64_t>(s->generated.size()),
                         s->text ? s->text->text() : "", "cancelled");
    }
    if (active.empty()) continue;
    try {
      step(active);
    } catch (const std::exception& e) {
      for (auto& s : active)
        s->stream->close(FinishReason::stop, static_cast<int64_t>(s->generated.size()), "",
                         e.what());
      active.clear();
    }
    std::lock_guard lock(mutex_);
    stats_.active = static_cast<int64_t>(active.size());
  }
}

Tensor BatchEngine::batch_logits(std::vector<std::unique_ptr<Sequence>>& active) {
  nn::CausalLM& lm = model_->model->lm();
  const nn::TransformerConfig& config = lm.config();
  // Newly admitted sequences get their cache: prompt + every new token but the last.
  for (auto& s : active) {
    if (s->prefilled) continue;
    const auto prompt_len = static_cast<int64_t>(s->request.prompt.size());
    const int64_t need =
        std::min(config.max_positions,
                 prompt_len + std::max<int64_t>(s->request.options.max_new_tokens, 1) - 1);
    s->cache = lm.make_cache(std::max<int64_t>(need, prompt_len));
  }
  std::vector<nn::SequenceStep> steps;
  for (auto& s : active) {
    nn::SequenceStep st;
    if (s->prefilled)
      st.ids = std::span<const int64_t>(&s->generated.back(), 1);
    else
      st.ids = s->request.prompt;
    st.cache = &s->cache;
    st.adapter = s->request.adapter;
    steps.push_back(st);
  }
  nn::Context ctx(lm.device());
  ctx.mode = nn::Mode::eval;
  // The logits live in ctx's arena, which goes with ctx: a copy leaves (on the CPU as well).
  return lm.forward_batch(ctx, steps, bank_, options_.rows).to(Device::cpu).clone();
}

Tensor BatchEngine::paged_logits(std::vector<std::unique_ptr<Sequence>>& active) {
  const int64_t vocab = model_->model->lm().config().vocab_size;
  const auto n = static_cast<int64_t>(active.size());
  // Every row lands in one device tensor, so the step's logits come back in one copy.
  Tensor logits = Tensor::empty({n, vocab}, model_->model->params().dtype(), Device::cuda);
  std::vector<int64_t> slots, tokens, rows;
  for (int64_t i = 0; i < n; ++i) {
    Sequence& s = *active[static_cast<size_t>(i)];
    if (s.prefilled) {
      slots.push_back(s.slot);
      tokens.push_back(s.generated.back());
      rows.push_back(i);
      continue;
    }
    s.slot = paged_->acquire();  // max_batch slots for at most max_batch active sequences
    TUNE_ASSERT(s.slot >= 0, "BatchEngine: no free KV slot for an admitted sequence");
    s.decoder = paged_.get();
    Tensor row = logits.narrow(i, 1);
    ops::copy(row, paged_->prefill(s.slot, s.request.prompt));
  }
  if (!slots.empty()) {
    const Tensor decoded = paged_->decode(slots, tokens);
    for (size_t j = 0; j < rows.size(); ++j) {
      Tensor row = logits.narrow(rows[j], 1);
      ops::copy(row, decoded.narrow(static_cast<int64_t>(j), 1));
    }
  }
  return logits.to(Device::cpu);
}

void BatchEngine::step(std::vector<std::unique_ptr<Sequence>>& active) {
  nn::CausalLM& lm = model_->model->lm();
  const nn::TransformerConfig& config = lm.config();
  for (auto& s : active) {
    if (s->prefilled) continue;
    s->seen = s->request.prompt;
    if (model_->tokenizer) s->text.emplace(*model_->tokenizer, s->request.options.stop);
  }
  const Tensor logits = paged_ ? paged_logits(active) : batch_logits(active);

  std::vector<float> row;
  std::vector<bool> done(active.size(), false);
  int64_t generated = 0;
  for (size_t i = 0; i < active.size(); ++i) {
    Sequence& s = *active[i];
    s.prefilled = true;
    const GenerateOptions& o = s.request.options;
    if (o.max_new_tokens == 0) {
      done[i] = true;
      s.stream->close(FinishReason::length, 0, "", "");
      continue;
    }
    row_to_floats(logits, static_cast<int64_t>(i), row);
    const auto n = static_cast<int64_t>(s.generated.size());
    TokenEvent e;
    std::vector<float> raw;  // log-probabilities come from the logits before any processing
    if (s.request.top_logprobs >= 0) raw = row;
    if (n < o.min_new_tokens) {
      for (int64_t id : o.eos_token_ids)
        if (id >= 0 && id < static_cast<int64_t>(row.size()))
          row[static_cast<size_t>(id)] = -std::numeric_limits<float>::infinity();
    }
    const int64_t token = choose_token(row, s.seen, o.sampling, static_cast<uint64_t>(n));
    s.generated.push_back(token);
    s.seen.push_back(token);
    ++generated;
    e.id = token;
    if (s.request.top_logprobs >= 0) fill_logprobs(raw, token, s.request.top_logprobs, e);
    std::optional<FinishReason> finish;
    const bool eos =
        std::find(o.eos_token_ids.begin(), o.eos_token_ids.end(), token) != o.eos_token_ids.end();
    if (eos) {
      finish = FinishReason::stop;
    } else if (s.text) {
      e.text = s.text->push(token);
      if (s.text->stopped()) finish = FinishReason::stop;
    }
    if (!finish &&
        (static_cast<int64_t>(s.generated.size()) >= o.max_new_tokens ||
         (s.decoder ? paged_->length(s.slot) : s.cache.length()) >= config.max_positions))
      finish = FinishReason::length;
    s.stream->push(std::move(e));
    if (finish) {
      std::string text;
      if (s.text) {
        std::string rest = s.text->finish();
        if (!rest.empty()) {
          TokenEvent tail;
          tail.text = std::move(rest);
          s.stream->push(std::move(tail));
        }
        text = s.text->text();
      }
      s.stream->close(*finish, static_cast<int64_t>(s.generated.size()), std::move(text), "");
      done[i] = true;
    }
  }
  std::vector<std::unique_ptr<Sequence>> keep;
  for (size_t i = 0; i < active.size(); ++i)
    if (!done[i]) keep.push_back(std::move(active[i]));
  {
    std::lock_guard lock(mutex_);
    ++stats_.steps;
    stats_.generated_tokens += generated;
    stats_.largest_batch =
        std::max<int64_t>(stats_.largest_batch, static_cast<int64_t>(active.size()));
  }
  active = std::move(keep);
}

}  // namespace tune::infer
