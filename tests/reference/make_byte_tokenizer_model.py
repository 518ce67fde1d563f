#!/usr/bin/python3
"""A model folder for the `tune generate` / `tune chat` CLI tests, from a golden case:

    make_byte_tokenizer_model.py GOLDEN_CASE_DIR OUT_DIR

The golden models (vocabulary 512) come without a tokenizer, so this adds a tiny byte-level BPE
that fits: ids 0-255 are the bytes (GPT-2's byte-to-unicode alphabet), 256-259 four merges
("en", "ST", "OP", "STOP"), 260-263 ChatML's special tokens, and a ChatML chat template;
generation_config.json's eos_token_id becomes <|im_end|> (261). Copies config.json,
model.safetensors and adapter/. tests/unit/infer_byte_tokenizer.h writes the same tokenizer.
"""
import json
import os
import shutil
import sys


def byte_symbols():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, n = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def main():
    case, out = sys.argv[1:3]
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(case, f), out)
    if os.path.isdir(os.path.join(case, "adapter")):
        shutil.copytree(os.path.join(case, "adapter"), os.path.join(out, "adapter"))
    vocab = {s: b for b, s in byte_symbols().items()}
    vocab.update({"en": 256, "ST": 257, "OP": 258, "STOP": 259})
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|pad|>"]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": False}
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 260 + i, "content": s, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i, s in enumerate(specials)],
        "normalizer": None, "pre_tokenizer": byte_level, "post_processor": None,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": ["e n", "S T", "O P", "ST OP"]}}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None,
        "eos_token": "<|im_end|>", "pad_token": "<|pad|>", "add_bos_token": False,
        "chat_template": "{% for message in messages %}{{ '<|im_start|>' + message['role'] + "
                         "'\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                         "{% endif %}"}
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False, indent=1)
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": 261, "bos_token_id": None}, f, indent=1)


if __name__ == "__main__":
    main()
