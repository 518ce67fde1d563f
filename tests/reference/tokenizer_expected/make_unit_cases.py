# Writes the handcrafted component tokenizers (unit_NAME.json) and their reference outputs
# (unit_NAME.jsonl, from encode_reference.js) that tests/unit/tokenizer_test.cpp checks.
# usage: python3 make_unit_cases.py   (needs node and npm install in tests/reference)
import json, subprocess, collections, os
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = HERE
REF = os.path.join(HERE, "..", "encode_reference.js")
TMP = os.path.join(OUT, ".unit_in.jsonl")

def train(words, n, prefix="", suffix="", extra=()):
    # naive BPE over words (lists of symbols)
    vocab = {}
    def add(t):
        if t not in vocab: vocab[t] = len(vocab)
    seqs = []
    for w in words:
        chars = list(w)
        s = [c if i == 0 else prefix + c for i, c in enumerate(chars)]
        if s and suffix: s[-1] += suffix
        seqs.append(s)
        for t in s: add(t)
    for t in extra: add(t)
    merges = []
    for _ in range(n):
        cnt = collections.Counter()
        for s in seqs:
            for a, b in zip(s, s[1:]): cnt[(a, b)] += 1
        if not cnt: break
        (a, b), c = cnt.most_common(1)[0]
        if c < 2: break
        new = a + (b[len(prefix):] if prefix and b.startswith(prefix) else b)
        merges.append((a, b)); add(new)
        for s in seqs:
            i = 0
            while i < len(s) - 1:
                if s[i] == a and s[i+1] == b: s[i:i+2] = [new]
                i += 1
    return vocab, merges

def tok(model, normalizer=None, pre=None, post=None, decoder=None, added=()):
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": list(added), "normalizer": normalizer, "pre_tokenizer": pre,
            "post_processor": post, "decoder": decoder, "model": model}

def bpe(vocab, merges, pairs=False, **kw):
    m = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
         "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
         "vocab": vocab, "merges": [list(p) for p in merges] if pairs else [a + " " + b for a, b in merges]}
    m.update(kw); return m

def at(id, content, special=True, lstrip=False, rstrip=False, normalized=False, single_word=False):
    return {"id": id, "content": content, "single_word": single_word, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": normalized, "special": special}

cases = {}
corpus = "the cat sat on the mat the hat that cat had a hat then the theme thermal".split()

# 1. BPE, merges as strings, unk without fusing, WhitespaceSplit, no decoder (joined with spaces)
v, m = train(corpus, 40, extra=["<unk>"])
cases["bpe_strings_unk"] = (tok(bpe(v, m, unk_token="<unk>"), pre={"type": "WhitespaceSplit"}),
  ["the cat sat", "thermal theme that", "xyz cat", "c@t  h\u00e9t\tthe", "", "   ", "tttt thhe"])
# 2. merges as pairs, fused unk, subword prefix + suffix, Whitespace pre-tokenizer, BPEDecoder
v, m = train(corpus, 40, prefix="##", suffix="</w>", extra=["<unk>"])
cases["bpe_pairs_prefix_suffix"] = (tok(bpe(v, m, pairs=True, unk_token="<unk>", fuse_unk=True,
  continuing_subword_prefix="##", end_of_word_suffix="</w>"), pre={"type": "Whitespace"},
  decoder={"type": "BPEDecoder", "suffix": "</w>"}),
  ["the cat sat", "the, cat! sat?", "zzz cat qq", "cats hats_that", "théme 42cat", ""])
# 3. ignore_merges: whole pieces in the vocab are one token even without merges
v, m = train(corpus, 10)
v["thermal"] = len(v); v["hat"] = v.get("hat", len(v))
cases["bpe_ignore_merges"] = (tok(bpe(v, m, ignore_merges=True), pre={"type": "WhitespaceSplit"}),
  ["thermal hat the mat", "thermals"])
# 4. byte fallback with Metaspace pre-tokenizer and a SentencePiece-style decoder
words = ["\u2581" + w for w in corpus]
v, m = train(words, 30, extra=["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)])
cases["byte_fallback_metaspace"] = (tok(bpe(v, m, unk_token="<unk>", byte_fallback=True, fuse_unk=True),
  pre={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
  decoder={"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  added=[at(v["<unk>"], "<unk>"), at(v["<s>"], "<s>"), at(v["</s>"], "</s>")],
  post={"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [v["<s>"]], "tokens": ["<s>"]}}}),
  ["the cat", " the cat ", "caf\u00e9 \u65e5\u672c \U0001F600", "<s>the</s> cat", "a  b", ""])
# 5. Metaspace always / never, no split; Metaspace decoder
for scheme in ["always", "never"]:
    cases["metaspace_" + scheme] = (tok(bpe(v, m, unk_token="<unk>", byte_fallback=True),
      pre={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": False},
      decoder={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": False},
      added=[at(v["<s>"], "<s>")]),
      ["the cat sat", " the  cat", "x<s>the cat", ""])
# 6. normalizers
alpha = sorted(set("".join(corpus)) | set("\u2581") | set("abcdefghijklmnopqrstuvwxyz0123456789 ."))
v = {c: i for i, c in enumerate(alpha)}; v["<unk>"] = len(v)
vv, mm = train(["\u2581" + w for w in corpus], 20)
for k in vv:
    if k not in v: v[k] = len(v)
cases["normalizers"] = (tok(bpe(v, mm, unk_token="<unk>"),
  normalizer={"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "Lowercase"},
    {"type": "Strip", "strip_left": True, "strip_right": True},
    {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
    {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
    {"type": "Prepend", "prepend": "\u2581"}]}),
  ["The CAT  Sat", "  \u00c9T\u00c9  ", "\uff34\uff28\uff25 \u2460", "\u0130stanbul", "\t\n", ""])
for form in ["NFC", "NFD", "NFKC"]:
    cases["normalizer_" + form] = (tok(bpe(v, mm, unk_token="<unk>"), normalizer={"type": form}),
      ["e\u0301te\u0301", "\u00e9t\u00e9", "\ufb01 \u2460"])
# 7. Split behaviours, invert, Digits, Punctuation
v = {c: i for i, c in enumerate(sorted(set("abcdefghijklmnopqrstuvwxyz0123456789 .,!?-_'")))}
v["<unk>"] = len(v)
texts = ["abc-def--ghi", "-a-b-", "12345 abc 6", "hi, there! ok?", "a1b22c333", "--", ""]
for beh in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
    for inv in [False, True]:
        cases["split_%s%s" % (beh, "_invert" if inv else "")] = (tok(bpe(v, [], unk_token="<unk>"),
          pre={"type": "Split", "pattern": {"String": "-"}, "behavior": beh, "invert": inv},
          decoder={"type": "Fuse"}), texts)
    cases["split_regex_" + beh] = (tok(bpe(v, [], unk_token="<unk>"),
      pre={"type": "Split", "pattern": {"Regex": "[0-9]+|\\s+"}, "behavior": beh, "invert": False}), texts)
for ind in [False, True]:
    cases["digits_%s" % ("individual" if ind else "grouped")] = (tok(bpe(v, [], unk_token="<unk>"),
      pre={"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, {"type": "Digits", "individual_digits": ind}]}), texts)
cases["punctuation"] = (tok(bpe(v, [], unk_token="<unk>"), pre={"type": "Punctuation", "behavior": "Isolated"}), texts)
# 8. added tokens: lstrip, rstrip, single_word, normalized (against a lowercasing normalizer), non-special
v, m = train(corpus, 30, extra=["<unk>", " "])
n = len(v)
added = [at(n, "<mask>", lstrip=True), at(n + 1, "[END]", rstrip=True), at(n + 2, "cat", special=False, single_word=True),
         at(n + 3, "HELLO", special=False, normalized=True), at(n + 4, "<sep>"), at(n + 5, "<sep><sep>"),
         at(n + 6, "at", special=False, single_word=True, lstrip=True, rstrip=True)]
cases["added_tokens"] = (tok(bpe(v, m, unk_token="<unk>"), normalizer={"type": "Lowercase"},
  pre={"type": "WhitespaceSplit"}, added=added, decoder={"type": "Fuse"}),
  ["the  <mask> cat", "[END]   the", "cat concat cats cat", "Hello HELLO hello", "<sep><sep><sep>", "a at b that at", "<mask><mask>", "x   <mask>  [END]  y", ""])
# 9. byte-level with its own regex and prefix space, RoBERTa post-processor, ByteLevel decoder
import itertools
bs = list(range(ord("!"), ord("~")+1)) + list(range(ord("\u00a1"), ord("\u00ac")+1)) + list(range(ord("\u00ae"), ord("\u00ff")+1))
cs = bs[:]; k = 0
for b in range(256):
    if b not in bs: bs.append(b); cs.append(256 + k); k += 1
bmap = {b: chr(c) for b, c in zip(bs, cs)}
words = ["".join(bmap[b] for b in (" " + w).encode()) for w in corpus]
v, m = train(words, 40, extra=[bmap[b] for b in range(256)] + ["<s>", "</s>"])
cases["byte_level"] = (tok(bpe(v, m), pre={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
  post={"type": "RobertaProcessing", "sep": ["</s>", v["</s>"]], "cls": ["<s>", v["<s>"]], "trim_offsets": True, "add_prefix_space": True},
  decoder={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
  added=[at(v["<s>"], "<s>"), at(v["</s>"], "</s>")]),
  ["the cat sat", "The  Cat's hat\n\nthen", "caf\u00e9 \u65e5\u672c\u8a9e \U0001F468\u200d\U0001F469", "  x  ", "<s>the</s>", "it's 1234 !!", ""])

names = []
for name, (t, texts) in cases.items():
    p = os.path.join(OUT, "unit_%s.json" % name)
    with open(p, "w") as f: json.dump(t, f, ensure_ascii=False)
    with open(TMP, "w") as f:
        for x in texts:
            for add in (True, False): f.write(json.dumps({"text": x, "add_special_tokens": add}, ensure_ascii=False) + "\n")
    r = subprocess.run(["node", REF, p, TMP], capture_output=True, text=True)
    if r.returncode != 0:
        print("FAIL", name, r.stderr[:500]); os.remove(p); continue
    with open(os.path.join(OUT, "unit_%s.jsonl" % name), "w") as f: f.write(r.stdout)
    names.append(name)
print(json.dumps(names))
os.remove(TMP)
