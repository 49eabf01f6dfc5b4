#!/usr/bin/env bash
# The teachers' own ensemble on dev, per task: the three plain teachers (seeds 11-13) scored as
# one model (`smartft eval` with three folders: their mean probabilities, or mean prediction for
# STS-B), what the `kd` students are distilled from. Run after the teachers, from the repo root:
#   bash results/multitask-minilm/ensemble.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=results/multitask-minilm/runs
for task in rte mrpc stsb cola; do
  teachers=$runs/$task/teacher/seed11,$runs/$task/teacher/seed12,$runs/$task/teacher/seed13
  OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python -m smartft.cli eval \
    --model_name_or_path "$teachers" --task_name "$task" --data_dir ../shared/data/glue \
    --max_seq_length 128 --output_file results/multitask-minilm/ensemble/$task.json
done
