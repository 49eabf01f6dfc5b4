#!/usr/bin/env bash
# Checks the claim that lets the methods, NEFTune and LoRA comparisons reuse the GLUE study's
# plain and SMART runs: 4 updates of MiniLM on real RTE log the same losses with the GLUE study's
# frozen code and with each later study's. Run from the repository root; the codes are
# worktrees at the commits the sweep files name (defaults shown):
#   git worktree add ../glue-src 9d99685      # results/glue-minilm/sweep.yaml
#   git worktree add ../methods-src 6388aa9   # results/methods-minilm/sweep.yaml
#   git worktree add ../fidelity-src 5e731c3  # fidelity.yaml here, results/lora-minilm/sweep.yaml
#   bash results/methods-minilm/same_baseline.sh [GLUE_CODE [OTHER_CODE...]]
set -euo pipefail
reference=${1:-../glue-src}
if [ $# -gt 1 ]; then others=("${@:2}"); else others=(../methods-src ../fidelity-src); fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() {  # CODE METHOD FOLDER: 4 logged updates of the GLUE study's settings
  OMP_NUM_THREADS=1 PYTHONPATH=$1/src .venv/bin/python -m smartft.cli train --task_name rte \
    --data_dir ../shared/data/glue --model_name_or_path all-MiniLM-L6-v2 --method "$2" \
    --max_train_samples 64 --max_eval_samples 32 --max_steps 4 --logging_steps 1 \
    --per_device_train_batch_size 16 --learning_rate 5e-5 --warmup_ratio 0.1 \
    --weight_decay 0.01 --group_by_length --seed 1 --save_model false --disable_tqdm \
    --output_dir "$3" > "$3.log" 2>&1 || { cat "$3.log" >&2; exit 1; }
}
for method in plain smart; do
  run "$reference" "$method" "$out/$method-reference"
  for code in "${others[@]}"; do
    run "$code" "$method" "$out/$method-other"
    .venv/bin/python - "$out/$method-reference" "$out/$method-other" "$method" "$reference" "$code" <<'PY'
import json, sys
from pathlib import Path
logs = [
    [{k: v for k, v in e.items() if k != "step_time_s"}
     for e in map(json.loads, (Path(d) / "metrics.jsonl").read_text().splitlines())
     if e["event"] == "train"]
    for d in sys.argv[1:3]
]
method, reference, code = sys.argv[3:6]
assert logs[0] == logs[1], f"{method}: {reference} and {code} log different losses"
print(f"{method}: {reference} and {code}: {len(logs[0])} updates, every logged loss identical")
PY
    rm -rf "$out/$method-other"
  done
done
