#!/usr/bin/python3
"""Writes the quickstart's data sets into OUT_DIR (deterministic: the same bytes on every run).

    examples/quickstart/make_data.py OUT_DIR [--fortunes DIR] [--train N] [--eval N] [--seed S]

  pretrain.jsonl           {"text": fortune}, one per line: every fortune the Debian package
                           `fortunes` installs (/usr/share/games/fortunes), whitespace tidied
  task_train.jsonl         {"messages": [user, assistant]}: the synthetic instruction task
  task_eval.jsonl          the same format, held-out questions (none of them is in train)
  task_eval_prompts.jsonl  {"messages": [user]}: the eval questions alone, the input of
                           `tune generate --chat --input`
  task_eval_answers.jsonl  {"answer": ..., "kind": ...}: what score.py compares against

The task mixes four short-answer rules over numbers, written with digits (the quickstart's
tokenizer splits numbers into single digits, so each rule is a pattern over a few digit tokens):

  parity    "Is 348 even or odd?"               -> "even"  (looks at the last digit only)
  next      "What number comes after 217?"      -> "218"   (copy, last digit + 1; carry on 9)
  larger    "Which is larger: 37 or 52?"        -> "52"    (compare tens, then units; copy one)
  repeat    "Repeat this number: 4821"          -> "4821"  (copy 3-4 digits)

No eval question is in the training set: each rule has to generalize, not be memorized.

A model that has only seen fortunes answers none of them (it has never seen the chat format
and rambles on), so exact match starts near 0%; each rule is a short, learnable pattern, so a
LoRA fine-tune of a few hundred steps lifts it well above that.

Python standard library only.
"""

import argparse
import json
import os
import random
import re
import sys

FORTUNES_DIR = "/usr/share/games/fortunes"
# Not prose: pictures drawn with characters teach a tiny model nothing useful.
SKIP_FILES = {"ascii-art"}


def _resolve_overstrike(line):
    """Terminal overstrike (`_\\bX` underlining, `X\\bX` bold) -> the plain characters."""
    if "\b" not in line:
        return line
    buf, pos = [], 0
    for ch in line:
        if ch == "\b":
            pos = max(0, pos - 1)
        elif pos < len(buf):
            if buf[pos] in "_ ":  # underline/space struck over: keep the real character
                buf[pos] = ch
            pos += 1
        else:
            buf.append(ch)
            pos += 1
    return "".join(buf)


def normalize(text):
    """Tidies one fortune: overstrike resolved, control characters dropped, tabs and runs of
    spaces made one space, every line stripped, at most one blank line in a row, no blank
    lines at either end. Line breaks are kept (poems, dialogues and attributions need them)."""
    lines = []
    for line in text.split("\n"):
        line = _resolve_overstrike(line)
        line = "".join(c for c in line if c == "\t" or c >= " " and c != "\x7f")
        line = re.sub(r"[ \t]+", " ", line).strip()
        lines.append(line)
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")


def read_fortunes(directory=FORTUNES_DIR):
    """All fortunes, in a fixed order (files by name, then their order inside the file)."""
    if not os.path.isdir(directory):
        raise SystemExit(f"make_data: {directory} not found; install it: apt-get install fortunes")
    out = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        # fortune's index files are NAME.dat; NAME.u8 are links to the UTF-8 text (same content).
        if "." in name or name in SKIP_FILES or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            raw = f.read().decode("utf-8", errors="replace")
        for chunk in re.split(r"(?m)^%[ \t]*$", raw):
            text = normalize(chunk)
            if len(text) >= 10:  # stray separators and one-word leftovers say nothing
                out.append(text)
    if not out:
        raise SystemExit(f"make_data: no fortunes found in {directory}")
    return out


# ---- the instruction task ---------------------------------------------------------------

def q_parity(rng):
    n = rng.randrange(0, 1000)
    return f"Is {n} even or odd?", "even" if n % 2 == 0 else "odd"


def q_next(rng):
    n = rng.randrange(0, 999)
    return f"What number comes after {n}?", str(n + 1)


def q_larger(rng):
    a, b = rng.sample(range(10, 100), 2)
    return f"Which is larger: {a} or {b}?", str(max(a, b))


def q_repeat(rng):
    n = rng.randrange(100, 10000)
    return f"Repeat this number: {n}", str(n)


KINDS = {"parity": q_parity, "next": q_next, "larger": q_larger, "repeat": q_repeat}


def make_task(n_train, n_eval, seed):
    """Eval first (round-robin over the kinds, so each gets a quarter), then train from the
    rest of the question space, never repeating an eval question. Train may repeat its own
    questions, which is fine."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    eval_items, eval_q = [], set()
    while len(eval_items) < n_eval:
        kind = kinds[len(eval_items) % len(kinds)]
        q, a = KINDS[kind](rng)
        if q in eval_q:
            continue
        eval_q.add(q)
        eval_items.append((kind, q, a))
    train_items = []
    while len(train_items) < n_train:
        kind = kinds[rng.randrange(len(kinds))]
        q, a = KINDS[kind](rng)
        if q not in eval_q:
            train_items.append((kind, q, a))
    return train_items, eval_items


def messages(q, a=None):
    m = [{"role": "user", "content": q}]
    if a is not None:
        m.append({"role": "assistant", "content": a})
    return {"messages": m}


def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[1:]))
    p.add_argument("out_dir")
    p.add_argument("--fortunes", default=FORTUNES_DIR, help="fortune text directory")
    p.add_argument("--train", type=int, default=2000, help="training examples (2000)")
    p.add_argument("--eval", type=int, default=100, help="held-out examples (100)")
    p.add_argument("--seed", type=int, default=1234, help="task seed (1234)")
    args = p.parse_args(argv)

    os.makedirs(args.out_dir, exist_ok=True)
    fortunes = read_fortunes(args.fortunes)
    write_jsonl(os.path.join(args.out_dir, "pretrain.jsonl"), ({"text": t} for t in fortunes))

    train, ev = make_task(args.train, args.eval, args.seed)
    write_jsonl(os.path.join(args.out_dir, "task_train.jsonl"), (messages(q, a) for _, q, a in train))
    write_jsonl(os.path.join(args.out_dir, "task_eval.jsonl"), (messages(q, a) for _, q, a in ev))
    write_jsonl(os.path.join(args.out_dir, "task_eval_prompts.jsonl"), (messages(q) for _, q, _ in ev))
    write_jsonl(os.path.join(args.out_dir, "task_eval_answers.jsonl"),
                ({"answer": a, "kind": k, "question": q} for k, q, a in ev))

    chars = sum(len(t) for t in fortunes)
    print(f"make_data: {args.out_dir}/pretrain.jsonl: {len(fortunes)} fortunes, {chars} characters; "
          f"task: {len(train)} train, {len(ev)} eval ({', '.join(KINDS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
