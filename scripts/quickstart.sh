#!/usr/bin/env bash
# tune.cpp in one command, on a fresh Debian 12 machine, on the CPU (about 10 minutes on 2 cores):
#   1. installs the Debian packages tune.cpp needs (scripts/install-deps.sh; sudo if not root)
#      and builds build/release/tune (scripts/build.sh);
#   2. writes the data (examples/quickstart/make_data.py): the fortunes of Debian's `fortunes`
#      package as pretraining text, and a synthetic task of short number questions
#      ("Is 348 even or odd?", "Which is larger: 37 or 52?", ...) with held-out answers;
#   3. pretrains a tiny Llama (3.2M parameters) from scratch on the fortunes
#      (examples/quickstart/pretrain.yaml);
#   4. asks the pretrained model the held-out questions and scores the answers (exact match);
#   5. LoRA-fine-tunes it on the task (examples/quickstart/finetune.yaml);
#   6. asks again with the adapter, scores, and prints before/after, samples and the time of
#      each stage.
# Nothing is downloaded but Debian packages. Outputs go to build/quickstart/.
#
#   scripts/quickstart.sh [--help]
# Environment: TUNE_JOBS limits parallel compile jobs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "${1:-}" in
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "quickstart: unknown argument \"$1\" (try --help)" >&2; exit 2 ;;
esac

out=build/quickstart
data=$out/data
tune=build/release/tune
py=/usr/bin/python3
max_new_tokens=8   # every answer is at most 5 tokens plus the end-of-turn token

stage_names=()
stage_secs=()
t_start=$EPOCHREALTIME

# stage NAME COMMAND...: runs COMMAND under a banner, records its time; stops everything on failure.
stage() {
  local name=$1
  shift
  printf '\n=== %s\n+ %s\n' "$name" "$*"
  local t0=$EPOCHREALTIME rc=0
  "$@" || rc=$?
  local secs
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  if ((rc != 0)); then
    printf '\nquickstart: FAILED at "%s" (exit %d, after %ss); see the output above.\n' \
      "$name" "$rc" "$secs" >&2
    exit "$rc"
  fi
  stage_names+=("$name")
  stage_secs+=("$secs")
  printf '=== %s: done in %ss\n' "$name" "$secs"
}

# score LABEL PRED: prints the score and keeps its SCORE JSON line in $out/LABEL.score.json.
score() {
  "$py" examples/quickstart/score.py "$2" "$data/task_eval_answers.jsonl" --label "$1" --examples 0 \
    > "$out/$1.score.txt" || return 1
  cat "$out/$1.score.txt"
  sed -n 's/^SCORE //p' "$out/$1.score.txt" > "$out/$1.score.json"
}

percent() {
  "$py" -c 'import json,sys; s=json.load(open(sys.argv[1])); print("%3.0f%%  %d/%d" % (100*s["exact_match"], s["correct"], s["total"]))' "$1"
}

mkdir -p "$out"
stage "install dependencies" scripts/install-deps.sh
stage "build tune" scripts/build.sh release --target tune
[[ -x $tune ]] || { echo "quickstart: the build did not produce $tune" >&2; exit 1; }
stage "make data" "$py" examples/quickstart/make_data.py "$data"
stage "pretrain from scratch" "$tune" train examples/quickstart/pretrain.yaml --overwrite
stage "answer before fine-tuning" "$tune" generate --model "$out/pretrained" --chat \
  --input "$data/task_eval_prompts.jsonl" --output "$out/before.jsonl" \
  --max-new-tokens "$max_new_tokens"
stage "score before" score before "$out/before.jsonl"
stage "LoRA fine-tune" "$tune" train examples/quickstart/finetune.yaml --overwrite
stage "answer after fine-tuning" "$tune" generate --model "$out/pretrained" \
  --adapter "$out/adapter" --chat \
  --input "$data/task_eval_prompts.jsonl" --output "$out/after.jsonl" \
  --max-new-tokens "$max_new_tokens"
stage "score after" score after "$out/after.jsonl"

total=$(awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
echo
echo "================================ quickstart report ================================"
echo "time per stage:"
for i in "${!stage_names[@]}"; do
  printf '  %-28s %7ss\n' "${stage_names[$i]}" "${stage_secs[$i]}"
done
printf '  %-28s %7ss\n' "total" "$total"
echo
echo "held-out exact match ($(wc -l < "$data/task_eval_answers.jsonl") questions the model never trained on):"
echo "  before fine-tuning: $(percent "$out/before.score.json")   ($(sed -n 2p "$out/before.score.txt" | sed 's/^ *//'))"
echo "  after  fine-tuning: $(percent "$out/after.score.json")   ($(sed -n 2p "$out/after.score.txt" | sed 's/^ *//'))"
echo
echo "the fine-tuned model answers (one question of each of three rules):"
"$py" - "$out/after.jsonl" "$data/task_eval_answers.jsonl" <<'EOF'
import json, sys
preds = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
answers = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8") if l.strip()]
seen = set()
for p, a in zip(preds, answers):
    if a["kind"] in seen or len(seen) == 3:
        continue
    seen.add(a["kind"])
    got = str(p["completion"]).strip()
    mark = "right" if got == a["answer"] else f"wrong, want {a['answer']!r}"
    print(f"  Q: {a['question']}\n  A: {got}   ({mark})")
EOF
echo
echo "outputs:"
echo "  $data/        pretraining text, task train/eval sets"
echo "  $out/pretrained/   the pretrained model (Hugging Face layout)"
echo "  $out/adapter/      the LoRA adapter (PEFT layout)"
echo "  $out/before.jsonl, $out/after.jsonl   the generated answers"
echo "try it:"
echo "  $tune generate --model $out/pretrained --adapter $out/adapter --chat \\"
echo "      --input $data/task_eval_prompts.jsonl --output /tmp/answers.jsonl --max-new-tokens 8"
