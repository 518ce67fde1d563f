// The option table and YAML configs: parsing, validation messages, printing; and the training
// config's checks, Hub-id resolution and learning-rate schedules.
#include "tune/core/options.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "tune/core/error.h"
#include "tune/train/config.h"

namespace tune {
namespace {

namespace fs = std::filesystem;

Options small() {
  return Options({{"model.path", OptionKind::text, "", "model"},
                  {"training.max_steps", OptionKind::integer, "0", "steps"},
                  {"training.learning_rate", OptionKind::number, "2e-4", "lr"},
                  {"data.pack", OptionKind::flag, "true", "pack"},
                  {"data.format", OptionKind::choice, "messages", "format", {"messages", "text"}},
                  {"data.path", OptionKind::list, "", "files"},
                  {"max_new_tokens", OptionKind::integer, "256", "tokens"}});
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Options, DefaultsAndOverrides) {
  Options o = small();
  EXPECT_EQ(o.integer("training.max_steps"), 0);
  EXPECT_DOUBLE_EQ(o.number("training.learning_rate"), 2e-4);
  EXPECT_TRUE(o.flag("data.pack"));
  std::vector<std::string> args = {
      "cfg.yaml", "training.max_steps=7",     "--data.pack", "false", "--max-new-tokens",
      "9",        "data.path=a.jsonl,b.jsonl"};
  auto pos = o.parse_args(args);
  ASSERT_EQ(pos, std::vector<std::string>{"cfg.yaml"});
  EXPECT_EQ(o.integer("training.max_steps"), 7);
  EXPECT_FALSE(o.flag("data.pack"));
  EXPECT_EQ(o.integer("max_new_tokens"), 9);
  EXPECT_EQ(o.list("data.path"), (std::vector<std::string>{"a.jsonl", "b.jsonl"}));
  EXPECT_TRUE(o.is_set("training.max_steps"));
  EXPECT_FALSE(o.is_set("model.path"));
}

TEST(Options, UnknownKeySuggestsClosest) {
  Options o = small();
  std::vector<std::string> args = {"training.max_step=3"};
  EXPECT_NE(error_of([&] { o.parse_args(args); }).find("Did you mean \"training.max_steps\""),
            std::string::npos);
  args = {"max_steps=3"};  // the section left out
  EXPECT_NE(error_of([&] { o.parse_args(args); }).find("training.max_steps"), std::string::npos);
  args = {"--zzzzzz", "1"};
  EXPECT_NE(error_of([&] { o.parse_args(args); }).find("--help"), std::string::npos);
}

TEST(Options, WrongKindsNameKeyAndOrigin) {
  Options o = small();
  EXPECT_NE(error_of([&] {
              o.set("training.max_steps", "ten", "cfg.yaml:3");
            }).find("cfg.yaml:3: training.max_steps = \"ten\" is not an integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { o.set("data.format", "csv", "x"); }).find("one of messages|text"),
            std::string::npos);
  EXPECT_NE(error_of([&] { o.set("data.pack", "maybe", "x"); }).find("true or false"),
            std::string::npos);
}

TEST(Options, YamlLoadsNestedKeysWithLines) {
  test::TempDir dir("options");
  const std::string path = dir.path + "/c.yaml";
  std::ofstream(path) << "# comment\nmodel:\n  path: org/name\ntraining:\n  max_steps: 12\n"
                         "data:\n  path: [a.jsonl, b.jsonl]\n  pack: no\n";
  Options o = small();
  load_yaml_config(o, path);
  EXPECT_EQ(o.text("model.path"), "org/name");
  EXPECT_EQ(o.integer("training.max_steps"), 12);
  EXPECT_FALSE(o.flag("data.pack"));
  EXPECT_EQ(o.list("data.path").size(), 2u);
  EXPECT_EQ(o.origin("training.max_steps"), path + ":5");

  std::ofstream(path) << "training:\n  max_stepz: 12\n";
  Options o2 = small();
  const std::string e = error_of([&] { load_yaml_config(o2, path); });
  EXPECT_NE(e.find(path + ":2"), std::string::npos) << e;
  EXPECT_NE(e.find("training.max_steps"), std::string::npos) << e;

  std::ofstream(path) << "training:\n  max_steps: [1\n";
  EXPECT_NE(error_of([&] { load_yaml_config(o2, path); }).find("invalid YAML"), std::string::npos);
}

TEST(Options, ResolvedYamlReadsBackTheSame) {
  Options o = small();
  o.set("model.path", "a: tricky # value", "x");
  o.set_list("data.path", {"x.jsonl", "y z.jsonl"}, "x");
  test::TempDir dir("options");
  const std::string path = dir.path + "/r.yaml";
  std::ofstream(path) << o.to_yaml();
  Options back = small();
  load_yaml_config(back, path);
  EXPECT_EQ(back.to_json(), o.to_json()) << o.to_yaml();
}

TEST(Options, HelpListsEveryKey) {
  Options o(train::train_option_specs());
  const std::string help = o.help_text(false);
  for (const OptionSpec& s : o.specs()) {
    const std::string leaf = s.key.substr(s.key.find('.') + 1);
    EXPECT_NE(help.find(leaf), std::string::npos) << s.key;
  }
  EXPECT_NE(small().help_text(true).find("--max-new-tokens"), std::string::npos);
}

TEST(TrainConfig, ChecksValues) {
  Options o(train::train_option_specs());
  EXPECT_NE(error_of([&] { train::make_train_config(o); }).find("model.path is not set"),
            std::string::npos);
  o.set("model.init", "scratch", "x");
  EXPECT_NE(error_of([&] { train::make_train_config(o); }).find("model.config"), std::string::npos);
}

TEST(TrainConfig, HubIdsResolveInTheHuggingFaceCache) {
  test::TempDir dir("options");
  const fs::path repo = fs::path(dir.path) / "models--org--tiny";
  fs::create_directories(repo / "snapshots" / "abc123");
  fs::create_directories(repo / "refs");
  std::ofstream(repo / "refs" / "main") << "abc123\n";
  setenv("HF_HUB_CACHE", dir.path.c_str(), 1);
  EXPECT_EQ(train::resolve_model_path("org/tiny"), (repo / "snapshots" / "abc123").string());
  const std::string e = error_of([] { train::resolve_model_path("org/absent"); });
  EXPECT_NE(e.find("models--org--absent"), std::string::npos) << e;
  unsetenv("HF_HUB_CACHE");
}

TEST(TrainConfig, SchedulesMatchHuggingFace) {
  using train::Schedule;
  // get_linear_schedule_with_warmup(warmup 2, total 10) at steps 0, 1, 2, 6, 10
  EXPECT_DOUBLE_EQ(train::learning_rate_at(Schedule::linear, 1.0, 0, 2, 10), 0.0);
  EXPECT_DOUBLE_EQ(train::learning_rate_at(Schedule::linear, 1.0, 1, 2, 10), 0.5);
  EXPECT_DOUBLE_EQ(train::learning_rate_at(Schedule::linear, 1.0, 2, 2, 10), 1.0);
  EXPECT_DOUBLE_EQ(train::learning_rate_at(Schedule::linear, 1.0, 6, 2, 10), 0.5);
  EXPECT_DOUBLE_EQ(train::learning_rate_at(Schedule::linear, 1.0, 10, 2, 10), 0.0);
  EXPECT_NEAR(train::learning_rate_at(Schedule::cosine, 1.0, 6, 2, 10), 0.5, 1e-15);
  EXPECT_NEAR(train::learning_rate_at(Schedule::cosine, 1.0, 4, 2, 10),
              0.5 * (1 + std::cos(M_PI * 0.25)), 1e-15);
  EXPECT_DOUBLE_EQ(train::learning_rate_at(Schedule::constant, 3.0, 9, 2, 10), 3.0);
}

}  // namespace
}  // namespace tune
