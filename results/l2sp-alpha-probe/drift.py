"""Prints the L2-SP figures the README quotes: for each L2-SP run (the methods comparison's at
α = 0.1 and the probe's at smaller α) and for plain fine-tuning, the last logged ½‖w − w₀‖²
(`l2sp_drift`), task loss and the best dev accuracy. Run from the repository root:

    .venv/bin/python results/l2sp-alpha-probe/drift.py
"""

from __future__ import annotations

import json
from pathlib import Path

FOLDERS = {
    "l2sp α=0.1": "results/methods-minilm/runs/{task}/l2sp",
    "l2sp α=0.01": "results/l2sp-alpha-probe/runs/{task}/alpha-0.01",
    "l2sp α=0.001": "results/l2sp-alpha-probe/runs/{task}/alpha-0.001",
    "plain": "results/glue-minilm/runs/{task}/plain",
}


def last_train_record(metrics: Path) -> dict[str, float]:
    """The final `train` event of a run's metrics.jsonl."""
    records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
    last: dict[str, float] = [r for r in records if r.get("event") == "train"][-1]
    return last


def main() -> None:
    print("| task | run | seed | final drift | final task loss | best dev accuracy |")
    print("|---|---|---|---|---|---|")
    for task in ("rte", "mrpc"):
        for label, pattern in FOLDERS.items():
            for run in sorted(Path(pattern.format(task=task)).glob("seed*")):
                if not (run / "all_results.json").is_file():
                    continue
                last = last_train_record(run / "metrics.jsonl")
                best = json.loads((run / "all_results.json").read_text(encoding="utf-8"))
                drift = f"{last['l2sp_drift']:.3f}" if "l2sp_drift" in last else "–"
                loss = last.get("task_loss", last["loss"])
                print(
                    f"| {task} | {label} | {run.name[4:]} | {drift} | {loss:.3f} "
                    f"| {best['best_metric']:.4f} |"
                )


if __name__ == "__main__":
    main()
