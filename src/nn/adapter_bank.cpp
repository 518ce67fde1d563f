#include "tune/nn/adapter_bank.h"

#include "tune/core/error.h"

namespace tune::nn {

int AdapterBank::add(const std::string& name, std::unordered_map<std::string, LoraDelta> deltas) {
  TUNE_CHECK(!name.empty(), "AdapterBank::add: an adapter needs a name");
  TUNE_CHECK(find(name) < 0, "AdapterBank::add: an adapter called \"", name,
             "\" is already loaded");
  for (const auto& [module, d] : deltas) {
    TUNE_CHECK(d.a.dim() == 2 && d.b.dim() == 2 && d.a.size(0) == d.b.size(1),
               "AdapterBank::add: adapter \"", name, "\" on ", module, ": A ", d.a.describe(),
               " and B ", d.b.describe(), " must be [r, in] and [out, r]");
  }
  adapters_.push_back({name, std::move(deltas)});
  return size();
}

int AdapterBank::find(const std::string& name) const {
  for (size_t i = 0; i < adapters_.size(); ++i)
    if (adapters_[i].name == name) return static_cast<int>(i) + 1;
  return -1;
}

const std::string& AdapterBank::name(int id) const {
  TUNE_ASSERT(id >= 1 && id <= size(), "AdapterBank::name(", id, ") with ", size(), " adapters");
  return adapters_[static_cast<size_t>(id - 1)].name;
}

const LoraDelta* AdapterBank::delta(int id, const std::string& module) const {
  if (id == 0) return nullptr;
  TUNE_ASSERT(id >= 1 && id <= size(), "AdapterBank::delta(", id, ") with ", size(), " adapters");
  const auto& deltas = adapters_[static_cast<size_t>(id - 1)].deltas;
  const auto it = deltas.find(module);
  return it == deltas.end() ? nullptr : &it->second;
}

}  // namespace tune::nn
