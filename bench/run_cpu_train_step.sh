#!/usr/bin/env bash
# tune.cpp vs PyTorch: one CPU training step (forward + loss + backward + AdamW, f32, full
# fine-tuning) of the same Llama shape, batch and sequence, run one after the other with the same
# thread count. Prints both JSON lines, the ratios tune/pytorch, and the machine and commit.
#
#   bench/run_cpu_train_step.sh [--threads N] [--steps N] [--warmup W] [--shape FILE]
#                               [--batch B] [--seq T]
#
# Defaults: nproc threads, 10 timed steps after 3 warm-up steps, bench/shapes/llama_20m.json,
# batch 4 x 256. PRESET (default release) picks the CMake preset; PYTHON (default
# /usr/bin/python3, Debian's python3-torch: scripts/install-deps.sh --bench) the peer's Python.
set -euo pipefail
cd "$(dirname "$0")/.."

threads=$(nproc)
args=()
while (($#)); do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --steps | --warmup | --shape | --batch | --seq) args+=("$1" "$2"); shift 2 ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_cpu_train_step.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
preset=${PRESET:-release}
python=${PYTHON:-/usr/bin/python3}

"$python" -c 'import torch' 2>/dev/null || {
  echo "run_cpu_train_step.sh: $python cannot import torch; install Debian's python3-torch" \
    "(scripts/install-deps.sh --bench) or set PYTHON" >&2
  exit 1
}
[[ -d build/$preset ]] || cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target cpu_train_step >/dev/null

echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu:     $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores available"
dirty=$(git status --porcelain -- src include CMakeLists.txt | head -1)
echo "commit:  $(git rev-parse --short HEAD)${dirty:+ (+ uncommitted changes in src/ or include/)}"
echo "torch:   $("$python" -c 'import torch; print(torch.__version__)')"
echo "threads: $threads   load before: $(cut -d' ' -f1-3 /proc/loadavg)"

tune_line=$(OMP_NUM_THREADS=$threads "build/$preset/bench/cpu_train_step" --threads "$threads" \
  "${args[@]}")
echo "$tune_line"
torch_line=$(OMP_NUM_THREADS=$threads "$python" bench/cpu_train_step.py --threads "$threads" \
  "${args[@]}")
echo "$torch_line"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

"$python" - "$tune_line" "$torch_line" <<'EOF'
import json, sys
tune, torch = (json.loads(s) for s in sys.argv[1:3])
assert tune["params"] == torch["params"], f"parameter counts differ: {tune['params']} vs {torch['params']}"
print(f"params {tune['params']:,}  tokens/step {tune['tokens_per_step']}")
print(f"tokens/s    tune.cpp {tune['tokens_per_s']:9.1f}  pytorch {torch['tokens_per_s']:9.1f}"
      f"  ratio tune/pytorch {tune['tokens_per_s'] / torch['tokens_per_s']:.2f}x")
print(f"fastest step: tune.cpp {tune['min_step_s']:.3f} s  pytorch {torch['min_step_s']:.3f} s"
      f"  ratio {torch['min_step_s'] / tune['min_step_s']:.2f}x (less sensitive to other load)")
print(f"peak RSS    tune.cpp {tune['peak_rss_mib']:7.0f} MiB  pytorch {torch['peak_rss_mib']:7.0f} MiB"
      f"  ratio tune/pytorch {tune['peak_rss_mib'] / torch['peak_rss_mib']:.2f}x")
for phase in tune["phases_s"]:
    a, b = tune["phases_s"][phase], torch["phases_s"][phase]
    print(f"  {phase:<10} tune.cpp {a:7.3f} s  pytorch {b:7.3f} s")
EOF
