#!/usr/bin/env bash
# tune.cpp vs Hugging Face transformers + PEFT, training on CUDA: the same model shape (random
# weights), batch and sequence length, LoRA or full fine-tuning, one configuration after the
# other on the GPU machine, each side in its own process. Prints both JSON lines per
# configuration, then a table of tokens/s, peak memory, model TFLOP/s and the ratios.
#
#   bench/run_cuda_train.sh [--only NAME[,NAME...]] [--skip-hf] [--steps N] [--warmup W] [--list]
#
# Configurations (tune.cpp / transformers checkpointing):
#   8b-lora            Llama-3.1-8B shape, LoRA, 1 x 2048, none / no
#   8b-lora-ckpt       Llama-3.1-8B shape, LoRA, 1 x 2048, blocks / yes
#   1b-lora            Llama-3.2-1B shape, LoRA, 4 x 2048, none / no
#   1b-full            Llama-3.2-1B shape, full, 4 x 2048, none / yes
#   1b-full-blocks     Llama-3.2-1B shape, full, 4 x 2048, blocks / yes
#   8b-lora-4096-ckpt  Llama-3.1-8B shape, LoRA, 2 x 4096, blocks / yes (only with --only)
# Run it on the GPU machine from the repository root with the binaries built here and carried
# there: BENCH_DIR (default build/release/bench) holds cuda_train, LIB_DIR (default
# build/release) the bundled shared libraries (scripts/bundle-device.sh); PYTHON (default
# /opt/torch/.venv/bin/python3, else python3) has torch, transformers and peft. Each side of each
# configuration gets SIDE_TIMEOUT seconds (default 300). All five take several minutes, the 8B
# ones most: under a 10-minute limit per command, run --only 8b-lora,8b-lora-ckpt and
# --only 1b-lora,1b-full,1b-full-blocks as two calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# name | shape | mode | batch | seq | tune.cpp checkpointing | transformers checkpointing (0/1)
configs=(
  "8b-lora|bench/shapes/llama3_8b.json|lora|1|2048|none|0"
  "8b-lora-ckpt|bench/shapes/llama3_8b.json|lora|1|2048|blocks|1"
  "1b-lora|bench/shapes/llama3_1b.json|lora|4|2048|none|0"
  "1b-full|bench/shapes/llama3_1b.json|full|4|2048|none|1"
  "1b-full-blocks|bench/shapes/llama3_1b.json|full|4|2048|blocks|1"
)
extra=("8b-lora-4096-ckpt|bench/shapes/llama3_8b.json|lora|2|4096|blocks|1")

only=""
skip_hf=0
steps=8
warmup=3
while (($#)); do
  case "$1" in
    --only) only="$2"; shift 2 ;;
    --skip-hf) skip_hf=1; shift ;;
    --steps) steps="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --list) printf '%s\n' "${configs[@]}" "${extra[@]}" | cut -d'|' -f1; exit 0 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "run_cuda_train.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
bench_dir=${BENCH_DIR:-build/release/bench}
lib_dir=${LIB_DIR:-build/release}
python=${PYTHON:-/opt/torch/.venv/bin/python3}
side_timeout=${SIDE_TIMEOUT:-300}
[[ -x $python ]] || python=python3

selected=()
if [[ -n $only ]]; then
  IFS=, read -r -a names <<<"$only"
  for n in "${names[@]}"; do
    found=0
    for c in "${configs[@]}" "${extra[@]}"; do
      if [[ ${c%%|*} == "$n" ]]; then selected+=("$c"); found=1; fi
    done
    ((found)) || { echo "run_cuda_train.sh: no configuration \"$n\" (see --list)" >&2; exit 2; }
  done
else
  selected=("${configs[@]}")
fi
[[ -x $bench_dir/cuda_train ]] || { echo "run_cuda_train.sh: no $bench_dir/cuda_train" >&2; exit 2; }

echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "gpu:     $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"
# The binaries' commit (scripts/bundle-device.sh writes it); the tree's git metadata otherwise.
if [[ -f $lib_dir/BUILD_COMMIT ]]; then
  echo "commit:  $(cat "$lib_dir/BUILD_COMMIT") (the binaries', $lib_dir/BUILD_COMMIT)"
else
  echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown) (the tree's git metadata)"
fi
echo "python:  $python"

# A side that crashed or ran out of time without its JSON line still gets one, so the table has
# a row for it.
json_line() {
  local side=$1 out=$2 rc=$3
  local line
  line=$(grep '^{' <<<"$out" | tail -1 || true)
  if [[ -z $line ]]; then
    local why="no output (exit $rc)"
    [[ $rc == 124 ]] && why="timeout"
    line="{\"side\":\"$side\",\"error\":\"$why\"}"
  fi
  echo "$line"
}

results=()
declare -A hf_cache  # transformers runs shared by configurations (1b-full and 1b-full-blocks)
for c in "${selected[@]}"; do
  IFS='|' read -r name shape mode batch seq tune_ckpt hf_ckpt <<<"$c"
  echo
  echo "== $name: $shape, $mode, $batch x $seq, checkpointing tune.cpp $tune_ckpt / transformers $hf_ckpt"
  rc=0
  out=$(LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" timeout "$side_timeout" \
    "$bench_dir/cuda_train" --shape "$shape" --mode "$mode" --batch "$batch" --seq "$seq" \
    --checkpointing "$tune_ckpt" --steps "$steps" --warmup "$warmup" 2>&1) || rc=$?
  grep -v '^{' <<<"$out" | sed 's/^/  (tune.cpp) /' || true
  tune_line=$(json_line tune.cpp "$out" "$rc")
  echo "tune.cpp:     $tune_line"
  hf_line='{"side":"hf","error":"skipped"}'
  if [[ $skip_hf == 0 ]]; then
    key="$shape|$mode|$batch|$seq|$hf_ckpt"
    if [[ -n ${hf_cache[$key]:-} ]]; then
      hf_line=${hf_cache[$key]}
      echo "transformers: (the same run as above) $hf_line"
    else
      hf_args=(--shape "$shape" --mode "$mode" --batch "$batch" --seq "$seq" --steps "$steps"
        --warmup "$warmup")
      [[ $hf_ckpt == 1 ]] && hf_args+=(--checkpointing)
      rc=0
      out=$(timeout "$side_timeout" "$python" bench/cuda_train_hf.py "${hf_args[@]}" 2>&1) || rc=$?
      grep -v '^{' <<<"$out" | grep -iv 'warn' | tail -5 | sed 's/^/  (transformers) /' || true
      hf_line=$(json_line hf "$out" "$rc")
      hf_cache[$key]=$hf_line
      echo "transformers: $hf_line"
    fi
  fi
  results+=("$name"$'\t'"$tune_line"$'\t'"$hf_line")
done

echo
printf '%s\n' "${results[@]}" | "$python" -c '
import json, sys

def cell(j, key, fmt):
    if "error" in j:
        return j["error"]
    return format(j[key], fmt)

rows = [("configuration", "tune.cpp tok/s", "HF tok/s", "speed", "tune.cpp GiB", "HF GiB",
         "memory", "tune.cpp TFLOP/s", "HF TFLOP/s")]
for line in sys.stdin:
    name, t, h = line.rstrip("\n").split("\t")
    t, h = json.loads(t), json.loads(h)
    ok = "error" not in t and "error" not in h
    # Model FLOPs per token are the same on both sides: cuda_train counts them (see its comments).
    per_token = t.get("flops_per_token")
    hf_tflops = (format(per_token * h["tokens_per_s"] / 1e12, ".0f")
                 if per_token and "error" not in h else "-")
    rows.append((name, cell(t, "tokens_per_s", ",.0f"), cell(h, "tokens_per_s", ",.0f"),
                 format(t["tokens_per_s"] / h["tokens_per_s"], ".2f") + "x" if ok else "-",
                 cell(t, "peak_gib", ".1f"), cell(h, "peak_gib", ".1f"),
                 format(t["peak_gib"] / h["peak_gib"], ".2f") + "x" if ok else "-",
                 cell(t, "tflops", ".0f"), hf_tflops))
widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
for r in rows:
    print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
print("speed: tune.cpp tokens/s over HF (> 1: tune.cpp faster); memory: tune.cpp peak over HF peak"
      " (< 1: tune.cpp uses less)")
'
