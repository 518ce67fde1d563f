#!/usr/bin/env bash
# tune.cpp vs transformers `generate` on CUDA: greedy decoding of the same model shape with random
# bf16 weights, 128-token random prompts and 256 new tokens, at batch 1 and 32, one after the other
# on the GPU machine. Prints each side's JSON lines and the ratios of tokens/s over the whole call.
#
#   bench/run_cuda_decode.sh [--shape FILE] [--batch LIST] [--runs N] [--skip-hf]
#
# Run it on the GPU machine from the repository root with the binaries built here and carried
# there: BENCH_DIR (default build/release/bench) holds cuda_decode, LIB_DIR (default
# build/release) the bundled shared libraries (scripts/bundle-device.sh); PYTHON (default
# /opt/torch/.venv/bin/python3) has torch and transformers.
set -euo pipefail
cd "$(dirname "$0")/.."

shape=bench/shapes/llama3_8b.json
batches=1,32
runs=3
skip_hf=0
while (($#)); do
  case "$1" in
    --shape) shape="$2"; shift 2 ;;
    --batch) batches="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --skip-hf) skip_hf=1; shift ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_cuda_decode.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
bench_dir=${BENCH_DIR:-build/release/bench}
lib_dir=${LIB_DIR:-build/release}
python=${PYTHON:-/opt/torch/.venv/bin/python3}

echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "gpu:     $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"
# The binaries' commit (scripts/bundle-device.sh writes it); the tree's git metadata otherwise.
if [[ -f $lib_dir/BUILD_COMMIT ]]; then
  echo "commit:  $(cat "$lib_dir/BUILD_COMMIT") (the binaries', $lib_dir/BUILD_COMMIT)"
else
  echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown) (the tree's git metadata)"
fi
tune_lines=$(LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$bench_dir/cuda_decode" --shape "$shape" --batch "$batches" --runs "$runs")
echo "$tune_lines" | sed 's/^/tune.cpp:     /'
[[ $skip_hf == 1 ]] && exit 0
hf_lines=$("$python" bench/cuda_decode_hf.py --shape "$shape" --batch "$batches" --runs 1)
echo "$hf_lines" | sed 's/^/transformers: /'
"$python" - "$tune_lines" "$hf_lines" <<'PY'
import json, sys
tune = {j["batch"]: j for j in map(json.loads, sys.argv[1].splitlines())}
hf = {j["batch"]: j for j in map(json.loads, sys.argv[2].splitlines())}
for b in sorted(tune):
    t, h = tune[b], hf[b]
    print(f"batch {b}: tokens/s over the whole call: tune.cpp {t['tokens_per_s']:.1f}, "
          f"transformers {h['tokens_per_s']:.1f}, ratio {t['tokens_per_s'] / h['tokens_per_s']:.2f}x"
          f" (tune.cpp decode steps alone {t['decode_tokens_per_s']:.1f} tokens/s)")
PY
