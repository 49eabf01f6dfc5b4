#!/usr/bin/env bash
# One-seed RTE comparison for the SMART issue: plain vs SMART (each projection) vs SMART without
# the Bregman term. Same model, data, epochs, batch, lr, max length and seed for every run.
# Two streams of one thread each run side by side on the 2-core machine.
# Usage: bash results/rte-seed42/run.sh [GLUE_DIR]   (outputs in runs/rte-seed42/, summary here)
set -euo pipefail
cd "$(dirname "$0")/../.."
GLUE=${1:-../shared/data/glue}
OUT=runs/rte-seed42
common=(--task_name rte --data_dir "$GLUE" --model_name_or_path all-MiniLM-L6-v2
        --max_seq_length 128 --per_device_train_batch_size 16 --learning_rate 5e-5
        --num_train_epochs 3 --warmup_ratio 0.1 --weight_decay 0.01 --group_by_length
        --seed 42 --num_threads 1 --disable_tqdm --overwrite_output_dir)
run() { local name=$1; shift; [ -f "$OUT/$name/all_results.json" ] ||
        .venv/bin/smartft train "${common[@]}" --output_dir "$OUT/$name" "$@" \
            > "$OUT/$name.log" 2>&1; }
mkdir -p "$OUT"
( run plain --method plain
  run smart-ball --method smart --smart_projection ball
  run smart-ball-no-bregman --method smart --smart_projection ball --bregman_mu 0 ) &
( run smart-unit --method smart --smart_projection unit
  run smart-unit-no-bregman --method smart --smart_projection unit --bregman_mu 0 ) &
wait
for run in "$OUT"/*/; do  # keep the small per-run records next to the summary (not the models)
  mkdir -p "results/rte-seed42/$(basename "$run")"
  cp "$run/all_results.json" "$run/metrics.jsonl" "$run/config.yaml" "results/rte-seed42/$(basename "$run")/"
done
.venv/bin/python - "$OUT" <<'PY' > results/rte-seed42/summary.md
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/all_results.json"))}
plain = rows["plain"]["step_time_median_s"]
print("| run | dev accuracy (best epoch) | final-epoch accuracy | median step s | step / plain | runtime s |")
print("|---|---|---|---|---|---|")
for name, r in rows.items():
    evals = [json.loads(l) for l in (out / name / "metrics.jsonl").read_text().splitlines()]
    last = [e for e in evals if e["event"] == "eval"][-1]["eval_accuracy"]
    print(f"| {name} | {r['eval_accuracy']:.4f} | {last:.4f} | {r['step_time_median_s']:.3f} "
          f"| {r['step_time_median_s'] / plain:.2f} | {r['train_runtime_s']:.0f} |")
PY
cat results/rte-seed42/summary.md
