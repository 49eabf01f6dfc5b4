#!/usr/bin/env bash
# Checks the claim that lets the methods comparison reuse the GLUE study's plain and SMART runs:
# 4 updates of MiniLM on real RTE log the same losses with the study's frozen code (../study-src,
# see results/glue-minilm/sweep.yaml) and with the methods' (../methods-src, see sweep.yaml here).
# Run from the repository root.
set -euo pipefail
out=$(mktemp -d)
for method in plain smart; do
  for tag in study methods; do
    code=../$tag-src/src
    OMP_NUM_THREADS=1 PYTHONPATH=$code .venv/bin/python -m smartft.cli train --task_name rte \
      --data_dir ../shared/data/glue --model_name_or_path all-MiniLM-L6-v2 --method "$method" \
      --max_train_samples 64 --max_eval_samples 32 --max_steps 4 --logging_steps 1 \
      --per_device_train_batch_size 16 --learning_rate 5e-5 --warmup_ratio 0.1 \
      --weight_decay 0.01 --group_by_length --seed 1 --save_model false --disable_tqdm \
      --output_dir "$out/$method-$tag" > "$out/$method-$tag.log" 2>&1
  done
  .venv/bin/python - "$out/$method-study" "$out/$method-methods" "$method" <<'PY'
import json, sys
from pathlib import Path
logs = [
    [{k: v for k, v in e.items() if k != "step_time_s"}
     for e in map(json.loads, (Path(d) / "metrics.jsonl").read_text().splitlines())
     if e["event"] == "train"]
    for d in sys.argv[1:3]
]
assert logs[0] == logs[1], f"{sys.argv[3]}: the two codes log different losses"
print(f"{sys.argv[3]}: {len(logs[0])} updates, every logged loss identical")
PY
done
rm -rf "$out"
