"""Writes results/multitask-minilm.md: single-task fine-tuning against MT-DNN and MT-DNN-SMART
(the multi-task stage alone, and followed by per-task fine-tuning) and against a student distilled
from a 3-teacher ensemble, on RTE, MRPC, STS-B and CoLA, 3 seeds, MiniLM-L6. Single-task runs are
the GLUE study's. Run from the repository root during or after the sweep:

    .venv/bin/python results/multitask-minilm/write_results.py
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from smartft.data.tasks import get_task
from smartft.report import Record, collect, collect_many, markdown, runs_table, summarize
from smartft.sweep import build, expand, from_file, is_done

ROOT = Path("results/multitask-minilm")
SWEEP = ROOT / "sweep.yaml"
OUT = Path("results/multitask-minilm.md")
TASKS = ("rte", "mrpc", "stsb", "cola")
GLUE_RUNS = Path("results/glue-minilm/runs")
SINGLE = [GLUE_RUNS / task / variant for task in TASKS for variant in ("plain", "smart")]


def per_task(record: Record) -> list[Record]:
    """A multi-task run as one record per task: its score on that task's dev set."""
    results = json.loads((record.folder / "all_results.json").read_text(encoding="utf-8"))
    out = []
    for task in record.task.split(","):
        metric = get_task(task).main_metric
        value = results.get(f"eval_{task}_{metric}")
        out.append(
            replace(
                record,
                task=task,
                metric=metric,
                value=float("nan") if value is None else float(value),
            )
        )
    return out


def main() -> None:
    sweep = build(from_file(str(SWEEP)))
    runs = expand(sweep)
    finished = [r for r in runs if is_done(sweep.runs_dir / r.name)]
    ours = collect(sweep.runs_dir) if sweep.runs_dir.is_dir() else []
    records = [
        split
        for record in ours
        if record.variant != "teacher"
        for split in (per_task(record) if "," in record.task else [record])
    ]
    records += collect_many([f for f in SINGLE if f.is_dir()])
    lines = [
        "# Multi-task learning and distillation (all-MiniLM-L6-v2)",
        "",
        f"**Status: {len(finished)} of {len(runs)} runs finished.** Rewritten from the runs by "
        "`.venv/bin/python results/multitask-minilm/write_results.py`; the protocol is in "
        "`results/multitask-minilm/sweep.yaml`.",
        "",
        "Rows: `plain` / `smart` single-task fine-tuning (the GLUE study's runs); `mt` / "
        "`mt-smart` the multi-task stage's own score on each task (MT-DNN / MT-DNN-SMART, best "
        "epoch by the mean of the four tasks); `mt-ft` / `mt-smart-ft` each task fine-tuned from "
        "the multi-task model of the same seed; `kd` a student distilled from its task's ensemble "
        "of three plain teachers (seeds 11-13). All: 3 epochs, batch 16, lr 5e-5, dev metric, "
        "differences paired by seed against single-task plain.",
        "",
        markdown(summarize(records)) if records else "No run has finished.",
        "",
        "## Every finished run",
        "",
        runs_table(ours, Path("results")) if ours else "None yet.",
    ]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
