#!/usr/bin/python3
"""Learns the quickstart's byte-level BPE tokenizer from the fortunes and writes it in Hugging
Face's layout (deterministic: the same bytes on every run).

    examples/quickstart/make_tokenizer.py [OUT_DIR]    (default: examples/quickstart/model)

Writes OUT_DIR/tokenizer.json and OUT_DIR/tokenizer_config.json. The results are committed;
the quickstart does not rerun this. Rerun it only to change the tokenizer (and then check it
with check_tokenizer.sh).

The tokenizer is GPT-2/Qwen2-style byte-level BPE:
  - pre-tokenizer: Split on Qwen2's regex (words keep their leading space; every digit is its
    own piece, so numbers are sequences of digit tokens), then ByteLevel (bytes -> GPT-2's
    printable alphabet, no prefix space);
  - model: BPE over all 256 bytes (any text encodes, nothing is unknown) plus NUM_MERGES merges
    learned here from word frequencies;
  - 4 special tokens after them: <|endoftext|> <|im_start|> <|im_end|> <|pad|>, so the whole
    vocabulary is exactly 1024 ids;
  - decoder ByteLevel; tokenizer_config.json carries a ChatML chat template (Qwen2's, without
    its default system prompt), eos <|im_end|>, pad <|pad|>, no BOS.

Python standard library only. Training pre-tokenizes with an approximation of the regex
(Python's `re` has no \\p{L}); that only shapes which merges are learned, never how text is
encoded: encoding is done by whoever loads tokenizer.json, with the exact regex.
"""

import collections
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_data  # noqa: E402  (the same fortunes, tidied the same way)

NUM_MERGES = 764  # 256 bytes + 764 merges + 4 special tokens = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

# Qwen2's pre-tokenizer regex, verbatim.
SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# The same in Python's `re`: letter = [^\W\d_], number = \d, "neither" = [\W_] (approximately).
_PY_SPLIT = re.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?:(?![\r\n])[\W_])?[^\W\d_]+|\d"
                       r"| ?(?:(?!\s)[\W_])+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Qwen2-style ChatML, without Qwen2's default system prompt (a tiny model needs no preamble).
CHAT_TEMPLATE = ("{% for message in messages %}"
                 "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
                 "{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def bytes_to_unicode():
    """GPT-2's map from the 256 bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def word_counts(texts):
    b2u = bytes_to_unicode()
    counts = collections.Counter()
    for t in texts:
        for piece in _PY_SPLIT.findall(t):
            counts["".join(b2u[b] for b in piece.encode("utf-8"))] += 1
    return counts


def learn_merges(counts, num_merges):
    """Classic BPE training until num_merges new tokens exist: repeatedly merge the most frequent adjacent pair (ties: the
    lexicographically smallest pair, so the result is deterministic), with incremental pair
    counts so it takes seconds, not minutes."""
    words = [list(w) for w in counts]
    freqs = [counts[w] for w in counts]
    pair_count = collections.Counter()
    where = collections.defaultdict(set)  # pair -> indices of words that contain it
    for i, (w, f) in enumerate(zip(words, freqs)):
        for p in zip(w, w[1:]):
            pair_count[p] += f
            where[p].add(i)

    merges, vocab_new = [], set()
    while len(vocab_new) < num_merges and pair_count:
        best = min(pair_count.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        if pair_count[best] <= 0:
            break
        a, b = best
        merged = a + b
        merges.append(best)
        vocab_new.add(merged)
        for i in sorted(where.pop(best, ())):
            w, f = words[i], freqs[i]
            for p in zip(w, w[1:]):  # remove this word's old pairs
                pair_count[p] -= f
                if pair_count[p] <= 0:
                    del pair_count[p]
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for p in zip(out, out[1:]):  # add its new ones
                pair_count[p] += f
                where[p].add(i)
        pair_count.pop(best, None)
    return merges


def build(texts, num_merges=NUM_MERGES):
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = learn_merges(word_counts(texts), num_merges)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    added = []
    for tok in SPECIAL_TOKENS:
        added.append({"id": len(vocab) + len(added), "content": tok, "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": False, "special": True})
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": False}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_REGEX}, "behavior": "Isolated",
             "invert": False},
            byte_level,
        ]},
        "post_processor": dict(byte_level),
        "decoder": dict(byte_level),
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": {str(t["id"]): {k: t[k] for k in t if k != "id"} for t in added},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "eos_token": "<|im_end|>",
        "pad_token": "<|pad|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 512,
        "errors": "replace",
        "split_special_tokens": False,
        "chat_template": CHAT_TEMPLATE,
    }
    return tokenizer, config


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main(argv):
    out_dir = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "model")
    if out_dir in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    os.makedirs(out_dir, exist_ok=True)
    tokenizer, config = build(make_data.read_fortunes())
    write_json(os.path.join(out_dir, "tokenizer.json"), tokenizer)
    write_json(os.path.join(out_dir, "tokenizer_config.json"), config)
    n = len(tokenizer["model"]["vocab"]) + len(tokenizer["added_tokens"])
    ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    print(f"make_tokenizer: {out_dir}/tokenizer.json: {n} tokens "
          f"({len(tokenizer['model']['merges'])} merges), special ids {ids}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
