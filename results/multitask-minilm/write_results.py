"""Writes results/multitask-minilm.md: single-task fine-tuning against MT-DNN and MT-DNN-SMART
(the multi-task stage alone, and followed by per-task fine-tuning) and against a student distilled
from a 3-teacher ensemble, on RTE, MRPC, STS-B and CoLA, 3 seeds, MiniLM-L6. Single-task runs are
the GLUE study's; the teachers' ensemble is `ensemble.sh`'s. It also rewrites the summary table
in README.md (between its two markers). Run from the repository root during or after the sweep:

    .venv/bin/python results/multitask-minilm/write_results.py
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from smartft.data.tasks import get_task
from smartft.report import (
    DEV_SELECTED_MARK,
    READING_RULE,
    VERDICT_RULE,
    Cell,
    Record,
    chosen_on,
    collect,
    collect_many,
    final_metrics,
    markdown,
    publish,
    runs_table,
    summarize,
    verdict,
)
from smartft.sweep import build, expand, from_file, is_done

ROOT = Path("results/multitask-minilm")
SWEEP = ROOT / "sweep.yaml"
OUT = Path("results/multitask-minilm.md")
TASKS = ("rte", "mrpc", "stsb", "cola")
NAMES = {"rte": "RTE", "mrpc": "MRPC", "stsb": "STS-B", "cola": "CoLA"}
GLUE_RUNS = Path("results/glue-minilm/runs")
SINGLE = [GLUE_RUNS / task / variant for task in TASKS for variant in ("plain", "smart")]
ENSEMBLE = ROOT / "ensemble"  # ensemble.sh: the three teachers scored as one model
UPSTREAM_NOTE = (
    f"{DEV_SELECTED_MARK}: the figure depends on dev's choice of an epoch upstream: two of "
    "MRPC's three teachers kept their best epoch on dev, which was not their last, so MRPC's "
    "ensemble and the student distilled from it learned from dev-chosen weights."
)
ROWS = {
    "plain": "single-task, plain",
    "smart": "single-task, SMART",
    "mt": "MT-DNN: the multi-task stage",
    "mt-ft": "MT-DNN, then fine-tuned per task",
    "mt-smart": "MT-DNN-SMART: the multi-task stage",
    "mt-smart-ft": "MT-DNN-SMART, then fine-tuned per task with SMART",
    "ensemble": "the 3 plain teachers (seeds 11-13) as one ensemble",
    "kd": "1 student distilled from that ensemble",
}


def per_task(record: Record) -> list[Record]:
    """A multi-task run as one record per task: its score on that task's dev set."""
    results = json.loads((record.folder / "all_results.json").read_text(encoding="utf-8"))
    results, selected = final_metrics(record.folder, results)
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
                dev_selected=selected,
            )
        )
    return out


def ensemble_records() -> list[Record]:
    """The teachers' ensemble per task, seed 0: it pairs with no single run, being 3 models."""
    records = []
    for task in TASKS:
        path = ENSEMBLE / f"{task}.json"
        if path.is_file():
            metric = get_task(task).main_metric
            value = json.loads(path.read_text(encoding="utf-8"))[metric]
            teachers = [f for f in (ROOT / "runs" / task / "teacher").glob("seed*") if f.is_dir()]
            selected = any(
                chosen_on(f, json.loads((f / "all_results.json").read_text(encoding="utf-8")))
                == "dev"
                for f in teachers
            )
            records.append(
                Record(
                    path.parent,
                    task,
                    "ensemble",
                    0,
                    "",
                    metric,
                    float(value),
                    float("nan"),
                    dev_selected=selected,
                )
            )
    return records


def glance(cells: list[Cell], planned: set[str]) -> str:
    """Method × task: the median over seeds and the paired difference to single-task plain."""
    by_key = {(c.task, c.variant): c for c in cells}
    header = " | ".join(f"{NAMES[t]} ({get_task(t).main_metric})" for t in TASKS)
    lines = [f"| 3 seeds, dev | {header} |", "|---|" + "---|" * len(TASKS)]
    for variant, label in ROWS.items():
        row = []
        for task in TASKS:
            cell = by_key.get((task, variant))
            mark = DEV_SELECTED_MARK if cell is not None and cell.dev_selected else ""
            if cell is None:
                row.append("running" if variant in planned else "–")
            elif cell.diff_mean_paired is not None and cell.ci_low is not None:
                row.append(
                    f"{cell.median:.4f}{mark}, {cell.diff_mean_paired:+.4f} [{cell.ci_low:+.4f}, "
                    f"{cell.ci_high:+.4f}] {verdict(cell)}"
                    + (f" ({len(cell.values)} seeds)" if len(cell.values) != 3 else "")
                )
            elif cell.diff_median is not None:
                row.append(f"{cell.median:.4f}{mark}, {cell.diff_median:+.4f} (unpaired)")
            else:
                row.append(f"{cell.median:.4f} (std {cell.std:.4f})")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return "\n".join(lines)


@dataclass
class Study:
    """What the runs finished so far say."""

    runs: int
    finished: int
    ours: list[Record]  # this sweep's runs, as collected
    records: list[Record]  # everything compared, one record per task and seed
    cells: list[Cell]
    table: str  # the at-a-glance table README.md holds


def study() -> Study:
    sweep = build(from_file(str(SWEEP)))
    runs = expand(sweep)
    unfinished = [r for r in runs if not is_done(sweep.runs_dir / r.name)]
    ours = collect(sweep.runs_dir) if sweep.runs_dir.is_dir() else []
    records = [
        split
        for record in ours
        if record.variant != "teacher"
        for split in (per_task(record) if "," in record.task else [record])
    ]
    records += collect_many([f for f in SINGLE if f.is_dir()]) + ensemble_records()
    cells = summarize(records)
    planned = {str(r.axes["variant"]) for r in unfinished}
    table = glance(cells, planned | ({"ensemble"} if not ENSEMBLE.is_dir() else set()))
    return Study(len(runs), len(runs) - len(unfinished), ours, records, cells, table)


def main() -> None:
    found = study()
    lines = [
        "# Multi-task learning and distillation (all-MiniLM-L6-v2)",
        "",
        f"**Status: {found.finished} of {found.runs} runs finished.** Rewritten from the runs by "
        "`.venv/bin/python results/multitask-minilm/write_results.py`; the protocol is in "
        "`results/multitask-minilm/sweep.yaml`.",
        "",
        "Rows: `plain` / `smart` single-task fine-tuning (the GLUE study's runs); `mt` / "
        "`mt-smart` the multi-task stage's own score on each task (MT-DNN / MT-DNN-SMART; the "
        "stage kept its best epoch by the mean of the four dev scores, which for every seed was "
        "its last, so the models fine-tuned from it start from its end of training); "
        "`mt-ft` / `mt-smart-ft` each task fine-tuned from "
        "the multi-task model of the same seed; `kd` a student distilled from its task's ensemble "
        "of three plain teachers (seeds 11-13). All: 3 epochs, batch 16, lr 5e-5, dev metric, "
        "differences paired by seed against single-task plain. `ensemble` is the three teachers "
        "scored on dev as one model (`ensemble.sh`: `smartft eval` with their three folders; "
        "the mean of their probabilities, or of their predictions for STS-B), what `kd` is "
        "distilled from; being one score, it pairs with no seed.",
        "",
        "## At a glance",
        "",
        "Median over seeds, then the mean paired difference to single-task plain with its 95 % "
        "t-interval and the verdict (`running`: not finished yet). "
        + READING_RULE
        + " "
        + VERDICT_RULE
        + " "
        + UPSTREAM_NOTE,
        "",
        found.table,
        "",
        "## Per task",
        "",
        markdown(found.cells) if found.records else "No run has finished.",
        "",
        "## Every finished run",
        "",
        runs_table(found.ours, Path("results")) if found.ours else "None yet.",
    ]
    publish(OUT, lines, blocks(found))


def blocks(found: Study | None = None) -> dict[str, str]:
    """What README.md and docs/ quote from this study (tests/test_readme.py checks them)."""
    found = found or study()
    cells = {(c.task, c.variant): c for c in found.cells}
    verdicts = {
        variant: [verdict(cells[(t, variant)]) for t in TASKS if (t, variant) in cells]
        for variant in ("mt-ft", "mt-smart-ft", "kd")
    }

    def tally(variant: str) -> str:
        said = verdicts[variant]
        return ", ".join(f"{word} on {said.count(word)}" for word in ("better", "tie", "worse"))

    finding = (
        "Multi-task (`results/multitask-minilm.md`, 3 seeds, the GLUE study's settings): against "
        f"single-task plain on RTE, MRPC, STS-B and CoLA, MT-DNN then fine-tuning is "
        f"{tally('mt-ft')}; MT-DNN-SMART then SMART {tally('mt-smart-ft')}; a student distilled "
        f"from three teachers {tally('kd')}."
    )
    return {"multitask": found.table, "multitask-finding": finding}


if __name__ == "__main__":
    main()
