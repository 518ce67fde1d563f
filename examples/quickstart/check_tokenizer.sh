#!/usr/bin/env bash
# Checks the quickstart tokenizer (examples/quickstart/model) against Hugging Face's own code:
#   1. Hugging Face's Rust `tokenizers` (the npm binding in tests/reference/node_modules) loads
#      it, and encode -> decode gives back every test text exactly (fortunes, the task's
#      prompts, ChatML with special tokens, accents, CJK, emoji, odd whitespace);
#   2. `tune tokenize` gives the same ids as the Rust reference on every text;
#   3. `tune chat-template` renders a conversation byte for byte as Python Jinja2 does
#      (tests/reference/render_template.py, configured as transformers configures it).
# Run it after changing the tokenizer (make_tokenizer.py); exit status 0 when all agree.
#
#   examples/quickstart/check_tokenizer.sh [TUNE_BINARY]   (default: build/release/tune)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
case "${1:-}" in -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
tune=${1:-build/release/tune}
model=examples/quickstart/model
ref=tests/reference
[[ -x $tune ]] || { echo "check_tokenizer: $tune not found: build it (scripts/build.sh)" >&2; exit 1; }
[[ -d $ref/node_modules/@anush008/tokenizers ]] ||
  { echo "check_tokenizer: reference missing: npm install --prefix $ref" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Test texts: 40 fortunes spread over the collection, task prompts, and the hard cases.
/usr/bin/python3 - "$work/texts.jsonl" <<'EOF'
import json, sys
sys.path.insert(0, "examples/quickstart")
import make_data
f = make_data.read_fortunes()
texts = [f[i] for i in range(0, len(f), len(f) // 40)][:40]
train, ev = make_data.make_task(8, 8, 1234)
texts += [q for _, q, _ in train + ev] + [a for _, _, a in ev]
texts += [
    "<|im_start|>user\nIs 348 even or odd?<|im_end|>\n<|im_start|>assistant\neven<|im_end|>\n",
    "<|endoftext|>The end.<|pad|><|pad|>",
    "Crème brûlée, naïve café, Ærøskøbing, straße",
    "日本語のテキスト and 中文 mixed with English",
    "Emoji: 👍🏽 🎉 🧑‍💻 ❤️ — done.",
    "  leading spaces, trailing spaces   \n\n\ttabs\tand\r\nCRLF\n",
    "Numbers: 3.14159, 1,000,000 and 2024-05-17; x^2 + y^2 = z^2",
    "It's, we'll, they've, I'd, YOU'RE, DON'T",
    "",
    " ",
    "a",
]
with open(sys.argv[1], "w", encoding="utf-8") as out:
    for t in texts:
        out.write(json.dumps({"text": t, "add_special_tokens": True}, ensure_ascii=False) + "\n")
EOF

node "$ref/encode_reference.js" "$model/tokenizer.json" "$work/texts.jsonl" > "$work/ref.jsonl"
"$tune" tokenize --tokenizer "$model" --input "$work/texts.jsonl" --output "$work/tune.jsonl"

/usr/bin/python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
texts = [json.loads(l)["text"] for l in open(f"{work}/texts.jsonl", encoding="utf-8")]
ref = [json.loads(l) for l in open(f"{work}/ref.jsonl", encoding="utf-8")]
got = [json.loads(l)["ids"] for l in open(f"{work}/tune.jsonl", encoding="utf-8")]
assert len(texts) == len(ref) == len(got), (len(texts), len(ref), len(got))
bad = 0
ntok = nchar = 0
for t, r, g in zip(texts, ref, got):
    if r["decoded"] != t:
        bad += 1
        print(f"FAIL round trip (Rust): {t!r}\n  decoded: {r['decoded']!r}")
    if r["ids"] != g:
        bad += 1
        print(f"FAIL ids differ on {t!r}\n  rust: {r['ids']}\n  tune: {g}")
    if max(r["ids"], default=0) >= 1024:
        bad += 1
        print(f"FAIL id out of range on {t!r}")
    ntok += len(r["ids"]); nchar += len(t)
print(f"tokenizer: {len(texts)} texts, {ntok} tokens ({nchar / max(ntok, 1):.2f} chars/token): "
      f"{'all ids identical to Rust tokenizers, all round trips exact' if not bad else f'{bad} failures'}")
sys.exit(1 if bad else 0)
EOF

cat > "$work/conv.json" <<'EOF'
{"messages": [{"role": "user", "content": "Which is larger: 37 or 52?"},
              {"role": "assistant", "content": "52"},
              {"role": "user", "content": "Is 7 even or odd?"}],
 "add_generation_prompt": true}
EOF
/usr/bin/python3 - "$model/tokenizer_config.json" "$work/tmpl.jinja" <<'EOF'
import json, sys
open(sys.argv[2], "w").write(json.load(open(sys.argv[1]))["chat_template"])
EOF
"$tune" chat-template --tokenizer "$model" --input "$work/conv.json" > "$work/tune.txt"
/usr/bin/python3 "$ref/render_template.py" "$work/tmpl.jinja" < "$work/conv.json" > "$work/jinja.txt"
if cmp -s "$work/tune.txt" "$work/jinja.txt"; then
  echo "chat template: tune and Jinja2 render the same $(wc -c < "$work/tune.txt") bytes"
else
  echo "FAIL chat template differs"; diff "$work/tune.txt" "$work/jinja.txt" || true; exit 1
fi
