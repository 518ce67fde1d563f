#!/usr/bin/python3
"""Exact-match accuracy of generated answers.

    examples/quickstart/score.py PRED.jsonl ANSWERS.jsonl [--examples N] [--label NAME]

  PRED.jsonl     `tune generate --input ... --output PRED.jsonl` output: one JSON object per
                 line with "completion" (the generated text), in the order of the prompts
  ANSWERS.jsonl  one JSON object per line, same order: {"answer": ..., "kind": ...,
                 "question": ...} (make_data.py's task_eval_answers.jsonl), or conversations
                 {"messages": [...]} whose last assistant message is the answer
                 (task_eval.jsonl)

A prediction is right when it equals the answer after stripping whitespace at both ends.
Prints the accuracy, per kind when the answers have kinds, N examples (default 3), and last a
machine-readable line: SCORE {"label", "exact_match", "correct", "total", "by_kind"}.
"""

import argparse
import json
import sys


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        rows = []
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SystemExit(f"score: {path}:{n}: not JSON: {e}")
        return rows


def answer_of(row, path, n):
    if "answer" in row:
        return str(row["answer"]), row.get("kind", ""), row.get("question", "")
    msgs = row.get("messages")
    if isinstance(msgs, list):
        question = next((m["content"] for m in msgs if m.get("role") == "user"), "")
        for m in reversed(msgs):
            if m.get("role") == "assistant":
                return m["content"], "", question
    raise SystemExit(f"score: {path}:{n}: neither \"answer\" nor an assistant message")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[1:]))
    p.add_argument("pred")
    p.add_argument("answers")
    p.add_argument("--examples", type=int, default=3, help="examples to print (3)")
    p.add_argument("--label", default="", help="a name for this score in the output")
    args = p.parse_args(argv)

    preds = read_jsonl(args.pred)
    answers = [answer_of(r, args.answers, i) for i, r in enumerate(read_jsonl(args.answers), 1)]
    if len(preds) != len(answers):
        raise SystemExit(f"score: {args.pred} has {len(preds)} lines, {args.answers} {len(answers)}")
    if not answers:
        raise SystemExit("score: no answers")

    by_kind = {}
    rows = []
    for i, (pred, (ans, kind, question)) in enumerate(zip(preds, answers), 1):
        if "completion" not in pred:
            raise SystemExit(f"score: {args.pred}:{i}: no \"completion\"")
        got = str(pred["completion"])
        ok = got.strip() == ans.strip()
        rows.append((ok, question, got, ans))
        c = by_kind.setdefault(kind or "all", [0, 0])
        c[0] += ok
        c[1] += 1

    correct = sum(r[0] for r in rows)
    total = len(rows)
    label = f"{args.label}: " if args.label else ""
    print(f"{label}exact match {correct}/{total} = {100.0 * correct / total:.1f}%")
    if len(by_kind) > 1:
        print("  " + ", ".join(f"{k} {c}/{t}" for k, (c, t) in by_kind.items()))
    for ok, q, got, ans in rows[:args.examples]:
        print(f"  {'right' if ok else 'wrong'}: {q!r} -> {got.strip()!r}" +
              ("" if ok else f" (want {ans!r})"))
    print("SCORE " + json.dumps({
        "label": args.label, "exact_match": correct / total, "correct": correct, "total": total,
        "by_kind": {k: {"correct": c, "total": t} for k, (c, t) in by_kind.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
