#!/usr/bin/env bash
# tune.cpp vs transformers `generate` on CUDA: greedy decoding of the same model shape with random
# bf16 weights, a 128-token random prompt and 256 new tokens, one after the other on the GPU
# machine. Prints each side's JSON line and the ratio of tokens/s over the whole call.
#
#   bench/run_cuda_decode.sh [--shape FILE] [--runs N] [--skip-hf]
#
# Run it on the GPU machine from the repository root with the binaries built here and carried
# there: BENCH_DIR (default build/release/bench) holds cuda_decode, LIB_DIR (default
# build/release) the bundled shared libraries (scripts/bundle-device.sh); PYTHON (default
# /opt/torch/.venv/bin/python3) has torch and transformers.
set -euo pipefail
cd "$(dirname "$0")/.."

shape=bench/shapes/llama3_8b.json
runs=3
skip_hf=0
while (($#)); do
  case "$1" in
    --shape) shape="$2"; shift 2 ;;
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
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
tune_line=$(LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$bench_dir/cuda_decode" --shape "$shape" --runs "$runs")
echo "tune.cpp:     $tune_line"
[[ $skip_hf == 1 ]] && exit 0
hf_line=$("$python" bench/cuda_decode_hf.py --shape "$shape" --runs 1 --batch 1 --new-tokens 256)
echo "transformers: $hf_line"
"$python" - "$tune_line" "$hf_line" <<'PY'
import json, sys
t, h = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"batch 1 tokens/s (whole generate call): tune.cpp {t['tokens_per_s']:.1f}, "
      f"transformers {h['tokens_per_s']:.1f}, ratio {t['tokens_per_s'] / h['tokens_per_s']:.2f}x; "
      f"tune.cpp decode alone {t['decode_tokens_per_s']:.1f} tokens/s")
PY
