#include "tokenizer/post_processor.h"

#include "tune/core/error.h"

namespace tune::tok {
namespace {

using json = nlohmann::json;

class NoChange final : public PostProcessor {
 public:
  void process(std::vector<int32_t>&) const override {}
};

// The single template as a list of pieces: ids of a special token, or the sequence itself.
class Template final : public PostProcessor {
 public:
  Template(const json& j, const std::string& where) {
    const auto& single = j.at("single");
    for (size_t i = 0; i < single.size(); ++i) {
      const auto& item = single[i];
      if (item.contains("SpecialToken")) {
        const auto name = item["SpecialToken"].at("id").get<std::string>();
        const auto& specials = j.at("special_tokens");
        if (!specials.contains(name)) {
          throw Error(
              str(where, ".single[", i, "]: special token '", name, "' is not in special_tokens"));
        }
        Part p;
        p.ids = specials[name].at("ids").get<std::vector<int32_t>>();
        parts_.push_back(std::move(p));
      } else if (item.contains("Sequence")) {
        const auto id = item["Sequence"].at("id").get<std::string>();
        if (id != "A")
          throw Error(str(where, ".single[", i, "]: the single template can only use sequence A"));
        parts_.push_back(Part{{}, true});
      } else {
        throw Error(
            str(where, ".single[", i, "]: expected SpecialToken or Sequence, got ", item.dump()));
      }
    }
  }
  void process(std::vector<int32_t>& ids) const override {
    std::vector<int32_t> out;
    out.reserve(ids.size() + 4);
    for (const auto& p : parts_) {
      if (p.sequence)
        out.insert(out.end(), ids.begin(), ids.end());
      else
        out.insert(out.end(), p.ids.begin(), p.ids.end());
    }
    ids = std::move(out);
  }

 private:
  struct Part {
    std::vector<int32_t> ids;
    bool sequence = false;
  };
  std::vector<Part> parts_;
};

// RoBERTa/BERT: cls, the sequence, sep.
class ClsSep final : public PostProcessor {
 public:
  explicit ClsSep(const json& j)
      : cls_(j.at("cls").at(1).get<int32_t>()), sep_(j.at("sep").at(1).get<int32_t>()) {}
  void process(std::vector<int32_t>& ids) const override {
    ids.insert(ids.begin(), cls_);
    ids.push_back(sep_);
  }

 private:
  int32_t cls_, sep_;
};

class Sequence final : public PostProcessor {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  void process(std::vector<int32_t>& ids) const override {
    for (const auto& p : parts_) p->process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw Error(str(where, ": a post-processor must be an object with a string \"type\""));
  }
  const auto type = j["type"].get<std::string>();
  try {
    if (type == "TemplateProcessing") return std::make_unique<Template>(j, where);
    if (type == "ByteLevel") return std::make_unique<NoChange>();
    if (type == "RobertaProcessing" || type == "BertProcessing") return std::make_unique<ClsSep>(j);
    if (type == "Sequence") {
      const auto& list = j.at("processors");
      std::vector<std::unique_ptr<PostProcessor>> parts;
      for (size_t i = 0; i < list.size(); ++i) {
        if (auto p = make_post_processor(list[i], str(where, ".processors[", i, "]"))) {
          parts.push_back(std::move(p));
        }
      }
      return std::make_unique<Sequence>(std::move(parts));
    }
  } catch (const json::exception& e) {
    throw Error(str(where, " (", type, "): ", e.what()));
  }
  throw Error(str(where, ".type: unknown post-processor type '", type,
                  "' (known: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, "
                  "Sequence)"));
}

}  // namespace tune::tok
