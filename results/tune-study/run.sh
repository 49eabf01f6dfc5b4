#!/usr/bin/env bash
# Issue 55's measurement: `smartft tune` against the SMART study's grid search on the same data
# and seeds. RTE and MRPC, all-MiniLM-L6-v2, the study's fixed options (results/smart-study/
# selection-a.yaml: batch 16, 128 tokens, 10 % warm-up, weight decay 0.01, 10 % of the training
# set held out; SMART with the short-run teacher), methods plain, SMART and R3F at smartft tune's
# default ranges (docs/tuning.md), a budget of 12 trials per task: the study's grid had 12 runs
# per task (plain 4, SMART 8). Then the winner and plain at their chosen settings on the full
# training set, seeds 1-5, dev read once: the study's phase 2 seeds. One worker per task, one
# thread each; a stopped session resumes the study (a trial cut off is marked FAIL, and the
# worker runs its remaining trials). From the repository root, with the code frozen:
#   git worktree add ../tune-src bdf34c1
#   bash results/tune-study/run.sh ../tune-src rte &  bash results/tune-study/run.sh ../tune-src mrpc &
set -euo pipefail
cd "$(dirname "$0")/../.."
code=$1
task=$2
out=results/tune-study/$task
done_trials=0
if [ -f "$out/study.db" ]; then
  done_trials=$(.venv/bin/python -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from trials where state in ('COMPLETE', 'PRUNED')\").fetchone()[0])" "$out/study.db")
fi
export PYTHONPATH="$(cd "$code" && pwd)/src" OMP_NUM_THREADS=1
exec .venv/bin/python -m smartft.cli tune --output_dir "$out" --study_name "$task" \
    --task_name "$task" --data_dir ../shared/data/glue --model_name_or_path all-MiniLM-L6-v2 \
    --methods plain,smart,r3f --n_trials $((12 > done_trials ? 12 - done_trials : 0)) \
    --holdout_fraction 0.1 --max_seq_length 128 --per_device_train_batch_size 16 \
    --warmup_ratio 0.1 --weight_decay 0.01 --group_by_length true --num_threads 1 \
    --bregman_start 0.1 --bregman_horizon 0.1 --bregman_dropout replay \
    --final_seeds 1,2,3,4,5
