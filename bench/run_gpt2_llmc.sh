#!/usr/bin/env bash
# tune.cpp vs llm.c (karpathy/llm.c, train_gpt2cu): GPT-2 124M (d12) trained from random weights in
# bf16, batch 64 x 1024 tokens, on the GPU machine. llm.c runs on a file of random tokens in its
# own format (written here; tinyshakespeare's validation split is too short for batch 64); tune.cpp
# runs bench/cuda_train on bench/shapes/gpt2_124m.json, full fine-tuning. Prints what each side
# reports and the tokens/s ratio.
#
#   bench/run_gpt2_llmc.sh [--batch B] [--seq T] [--steps N] [--checkpointing none|blocks]
#
# llm.c is looked for in $LLMC_DIR, /opt/llm.c, ~/llm.c, /work/llm.c, /root/llm.c, then
# `find / -maxdepth 3 -name llm.c -type d`; a checkout without a built train_gpt2cu is built with
# `make train_gpt2cu` (its Makefile turns cuDNN flash attention on with USE_CUDNN=1, which the
# caller may set). BENCH_DIR (default build/release/bench) holds cuda_train, LIB_DIR (default
# build/release) the bundled shared libraries (scripts/bundle-device.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

batch=64
seq=1024
steps=20
checkpointing=none
while (($#)); do
  case "$1" in
    --batch) batch="$2"; shift 2 ;;
    --seq) seq="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --checkpointing) checkpointing="$2"; shift 2 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "run_gpt2_llmc.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
bench_dir=${BENCH_DIR:-build/release/bench}
lib_dir=${LIB_DIR:-build/release}

echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "gpu:     $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"
# The binaries' commit (scripts/bundle-device.sh writes it); the tree's git metadata otherwise.
if [[ -f $lib_dir/BUILD_COMMIT ]]; then
  echo "commit:  $(cat "$lib_dir/BUILD_COMMIT") (the binaries', $lib_dir/BUILD_COMMIT)"
else
  echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown) (the tree's git metadata)"
fi
echo "config:  GPT-2 124M, batch $batch x $seq, bf16, $steps steps"

# --- tune.cpp ---
tune_line=$(LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$bench_dir/cuda_train" --shape bench/shapes/gpt2_124m.json --mode full --batch "$batch" \
  --seq "$seq" --checkpointing "$checkpointing" 2>&1 | grep '^{' | tail -1) || true
echo "tune.cpp: ${tune_line:-(no output)}"

# --- llm.c ---
llmc=""
candidates=("${LLMC_DIR:-}" /opt/llm.c "$HOME/llm.c" /work/llm.c /root/llm.c)
for d in "${candidates[@]}"; do
  if [[ -n $d && -f $d/train_gpt2.cu ]]; then llmc=$d; break; fi
done
if [[ -z $llmc ]]; then
  while IFS= read -r d; do
    if [[ -f $d/train_gpt2.cu ]]; then llmc=$d; break; fi
  done < <(find / -maxdepth 3 -name llm.c -type d 2>/dev/null)
fi
if [[ -z $llmc ]]; then
  echo "llm.c:    missing (looked in \$LLMC_DIR, /opt/llm.c, ~/llm.c, /work/llm.c, /root/llm.c and"
  echo "          find / -maxdepth 3 -name llm.c); set LLMC_DIR to a checkout to compare"
  exit 0
fi
echo "llm.c:    found at $llmc ($(git -C "$llmc" rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
if [[ ! -x $llmc/train_gpt2cu ]]; then
  echo "llm.c:    no train_gpt2cu there; building it (make train_gpt2cu)"
  make -C "$llmc" train_gpt2cu >/tmp/llmc_build.log 2>&1 ||
    { echo "llm.c:    build failed, see /tmp/llmc_build.log"; tail -5 /tmp/llmc_build.log; exit 1; }
fi

# Random GPT-2 tokens in llm.c's data format: 256 int32 header (magic 20240520, version 1,
# token count), then uint16 tokens. Enough for every step without wrapping around.
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
python3 - "$data" $((batch * seq * (steps + 2) + 1)) <<'PY'
import array, random, struct, sys
out, n = sys.argv[1], int(sys.argv[2])
random.seed(1234)
for split in ("train", "val"):
    tokens = array.array("H", (random.randrange(50257) for _ in range(n)))
    with open(f"{out}/{split}.bin", "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, n, *([0] * 253)))
        f.write(tokens.tobytes())
PY

# -e d12: random init of the 12-layer model; -v/-m/-s: one short validation at the ends, no
# sampling; -o unset: no checkpoints. Its defaults otherwise: bf16, f32 master weights, recompute
# of GELU (-r 1).
log=$(cd "$llmc" && ./train_gpt2cu -i "$data/train.bin" -j "$data/val.bin" -e d12 \
  -b "$batch" -t "$seq" -x "$steps" -v 100000 -m 1 -s 0 2>&1) || {
  echo "llm.c:    train_gpt2cu failed:"
  tail -20 <<<"$log"
  exit 1
}
grep -E '^step|device|recompute|precision|num_parameters ' <<<"$log" | sed 's/^/  (llm.c) /'

# The median of llm.c's own per-step times (its "tok/s" column is a moving average), the first
# 3 steps left out as warm-up; the ratio against tune.cpp's median.
echo "$log" >"$data/llmc.log"
python3 - "$batch" "$seq" "$tune_line" "$data/llmc.log" <<'PY'
import json, re, statistics, sys
batch, seq = int(sys.argv[1]), int(sys.argv[2])
text = open(sys.argv[4]).read()
ms = [float(m.group(1)) for m in re.finditer(r"^step .*\|\s*([0-9.]+) ms \|", text, re.M)]
if len(ms) <= 3:
    sys.exit("llm.c: too few steps reported to take a median")
step = statistics.median(ms[3:])
llmc = batch * seq / (step * 1e-3)
print(f"llm.c:    median step {step:.2f} ms, {llmc:,.0f} tokens/s ({len(ms) - 3} steps)")
try:
    tune = json.loads(sys.argv[3])["tokens_per_s"]
    print(f"ratio:    tune.cpp {tune:,.0f} / llm.c {llmc:,.0f} tokens/s = {tune / llmc:.2f}x")
except (ValueError, KeyError):
    print("ratio:    - (no tune.cpp result)")
PY
