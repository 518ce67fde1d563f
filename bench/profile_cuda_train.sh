#!/usr/bin/env bash
# Where a CUDA training step's time goes: runs bench/cuda_train under Nsight Compute (ncu, the
# only profiler on the GPU machine) and prints the GPU time per kernel, grouped by kernel name,
# per training step and per decoder layer.
#
#   bench/profile_cuda_train.sh [--shape FILE] [--mode lora|full] [--batch B] [--seq T]
#                               [--layers L] [--checkpointing none|blocks]
#
# ncu replays every kernel, so the model is cut to L decoder layers (default 4; every layer is
# the same, so per-layer times carry over to the full depth) and one warm-up step, one timed step
# and the bench's phase step run (three steps; the totals are divided by three). Kernel times are
# gpu__time_duration of each launch in isolation: they add up to the GPU's busy time, not to the
# wall time (launch gaps and host syncs are not in them).
set -euo pipefail
cd "$(dirname "$0")/.."

shape=bench/shapes/llama3_8b.json
mode=lora
batch=1
seq=2048
layers=4
checkpointing=none
while (($#)); do
  case "$1" in
    --shape) shape="$2"; shift 2 ;;
    --mode) mode="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --seq) seq="$2"; shift 2 ;;
    --layers) layers="$2"; shift 2 ;;
    --checkpointing) checkpointing="$2"; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "profile_cuda_train.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
bench_dir=${BENCH_DIR:-build/release/bench}
lib_dir=${LIB_DIR:-build/release}
ncu=${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$shape" "$layers" "$work/shape.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["n_layer" if "n_layer" in c else "num_hidden_layers"] = int(sys.argv[2])  # GPT-2 says n_layer
json.dump(c, open(sys.argv[3], "w"))
EOF

LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$ncu" --metrics gpu__time_duration.sum \
  --csv --print-units base "$bench_dir/cuda_train" --shape "$work/shape.json" --mode "$mode" \
  --batch "$batch" --seq "$seq" --checkpointing "$checkpointing" --warmup 1 --steps 1 \
  > "$work/ncu.csv" 2> "$work/ncu.err" || { tail -20 "$work/ncu.err"; exit 1; }

python3 - "$work/ncu.csv" "$layers" "$shape" "$mode" "$batch" "$seq" "$checkpointing" <<'EOF'
import csv, collections, re, sys
path, layers = sys.argv[1], int(sys.argv[2])
rows = [l for l in open(path) if l.startswith('"')]
total = collections.Counter()
count = collections.Counter()
for r in csv.DictReader(rows):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    name = r["Kernel Name"]
    name = re.sub(r"^void ", "", name)
    name = name.replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
    name = re.split(r"[<(]", name)[0].split("::")[-1]
    total[name] += float(r["Metric Value"].replace(",", ""))
    count[name] += 1
steps = 3
all_ns = sum(total.values())
print(f"shape {sys.argv[3]} cut to {layers} layers, {sys.argv[4]}, {sys.argv[5]} x {sys.argv[6]}, "
      f"checkpointing {sys.argv[7]}: GPU time per step {all_ns / steps / 1e6:.2f} ms "
      f"({all_ns / steps / layers / 1e6:.3f} ms per layer, head and optimizer included)")
print(f"{'kernel':<44} {'ms/step':>9} {'share':>7} {'launches/step':>14}")
for name, ns in total.most_common():
    print(f"{name[:44]:<44} {ns / steps / 1e6:>9.3f} {ns / all_ns:>7.1%} {count[name] / steps:>14.1f}")
EOF
