#!/usr/bin/env bash
# The SMART study (issue 19) on the GPU machine, many sweeps at once. Run HERE first:
#   bash scripts/gpu/prepare.sh          (MiniLM in float16 and the four GLUE folders into .gpu/)
# then through the device tool:
#   run(command="bash scripts/gpu/smart_study.sh", carry=[".gpu"], timeout_s=590)
# and back here (first stop the CPU sweeps of the same grid, so no run is written twice):
#   tar xzf FILES_AT/smart-study-runs.tar.gz && bash results/commit_finished.sh \
#     results/smart-study/selection results/smart-study/final results/smart-study/radius
# The runs use the code the CPU runs use, frozen at 857661d (prepare.sh puts it in .gpu/study-src).
# 1. the selection grid (selection-a.yaml, selection-b.yaml), one sweep per task x learning rate x
#    epochs (8 at a time per half, 16 in all; finished runs, the committed ones included, are skipped);
#    and the radius grid (radius.yaml) beside it;
# 2. choose_settings.py writes final.yaml for each task whose selection is complete;
# 3. the final grid of those tasks, one sweep per task x seed, until the time runs out (a run cut off is
#    cleared and started again by the next sweep; only finished runs are committed).
# The runs load MiniLM saved in float16 (the 64 MiB carry limit) into float32 weights: a start
# within float16 rounding (~5e-4 relative) of the CPU runs', recorded in each run's config.yaml.
set -uo pipefail
cd "$(dirname "$0")/../.."
# The sweeps: this checkout's driver, the frozen code in every run (results/sweep_frozen.sh).
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 PYTHON=${PYTHON:-python3}
[ -d .gpu/study-src/src ] || { echo "run scripts/gpu/prepare.sh first" >&2; exit 2; }
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
BUDGET=${BUDGET:-540}  # seconds for the whole script, inside the device call's limit
start=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - start) )); }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
common=(--set data_dir=.gpu/glue --set model_name_or_path=.gpu/minilm ${SWEEP_FLAGS:-})  # SWEEP_FLAGS=--dry_run: a rehearsal

shards() {  # $1: sweep file, then the --tasks / --grid / --seeds arguments of each shard, one per line
  local config=$1; shift
  printf '%s\n' "$@" | xargs -P 8 -I{} bash -c \
    "timeout $(left) bash results/sweep_frozen.sh .gpu/study-src $config ${common[*]} {} \
       >> \"$OUT/sweeps.log\" 2>&1 || true"
}

selection=()
for lr in 5e-5 1e-4; do for epochs in 3 6; do
  selection+=("--tasks rte --grid learning_rate=$lr --grid num_train_epochs=$epochs")
done; done
shards results/smart-study/selection-a.yaml "${selection[@]}" "${selection[@]//rte/mrpc}" &
shards results/smart-study/selection-b.yaml "${selection[@]//rte/stsb}" "${selection[@]//rte/cola}" &
shards results/smart-study/radius.yaml "--tasks cola" "--tasks rte" &
wait
PYTHONPATH=src "$PYTHON" results/smart-study/choose_settings.py | tee "$OUT/choose.log"
if [ -f results/smart-study/final.yaml ] && [ "$(left)" -gt 60 ]; then
  final=()
  for task in rte mrpc stsb cola; do for seed in 1 2 3 4 5; do  # a task not in it yet: exit 2 at once
    final+=("--tasks $task --seeds $seed")
  done; done
  shards results/smart-study/final.yaml "${final[@]}"
fi
tar czf "$OUT/smart-study-runs.tar.gz" --exclude="checkpoint-*" --exclude=".checkpoint-*" results/smart-study/selection results/smart-study/final \
  results/smart-study/radius \
  results/smart-study/selected.md $( [ -f results/smart-study/final.yaml ] && echo results/smart-study/final.yaml ) \
  2>/dev/null
find results/smart-study/selection results/smart-study/final -name all_results.json 2>/dev/null \
  | wc -l | sed 's/^/finished selection and final runs: /'
