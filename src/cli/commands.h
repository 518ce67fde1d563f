// The `tune` subcommands. Each takes its arguments (after the subcommand name) and returns the
// process exit code; errors travel as tune::Error and main() prints them.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "tune/tokenizer/tokenizer.h"

namespace tune::cli {

using Args = std::vector<std::string>;

// The value after option args[i] ("--input FILE"): advances i past it, or says what the option
// needs ("--input needs a value: a JSONL file").
std::string option_value(const Args& args, size_t& i, const char* what);

int env_command(const Args& args);
int check_golden_command(const Args& args);
int tokenize_command(const Args& args);
int detokenize_command(const Args& args);
int chat_template_command(const Args& args);
int generate_command(const Args& args);
int chat_command(const Args& args);
int train_command(const Args& args);
int serve_command(const Args& args);
int export_command(const Args& args);

// Shared by the tokenizer commands (defined in tokenize_command.cpp): --tokenizer's value checked
// (exists, has tokenizer.json) and loaded; and fwrite that throws when the bytes do not all go out.
tok::Tokenizer load_tokenizer_arg(const std::string& path);
void write_all(std::FILE* out, std::string_view bytes, const std::string& where);

}  // namespace tune::cli
