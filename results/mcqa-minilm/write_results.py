"""Writes results/mcqa-minilm.md: plain fine-tuning, SMART and ALICE on multiple choice (Cosmos
QA, accuracy) and extractive QA (SQuAD v1.1, F1 and exact match), all-MiniLM-L6-v2, seeds 1-3,
on the training and evaluation parts scripts/split_mc_qa.py cuts from the official evaluation
sets; the cost of a step beside plain (benchmarks/results/cosmosqa.json, squad.json); every run.
Run from the repository root during or after the sweep:

    .venv/bin/python results/mcqa-minilm/write_results.py
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import yaml

from smartft.report import (
    READING_RULE,
    VERDICT_RULE,
    Cell,
    Record,
    collect,
    final_metrics,
    markdown,
    minutes,
    publish,
    runs_table,
    summarize,
    tally,
    verdict,
)
from smartft.sweep import build, expand, from_file, is_done

ROOT = Path("results/mcqa-minilm")
SWEEP = ROOT / "sweep.yaml"
OUT = Path("results/mcqa-minilm.md")
BENCH = Path("benchmarks/results")
TASKS = {"cosmosqa": "Cosmos QA (accuracy)", "squad": "SQuAD v1.1 (F1)"}
PARTS = (
    "on the parts of the official evaluation sets that scripts/split_mc_qa.py cuts (Cosmos QA by "
    "context: 2,397 training / 588 evaluation questions; SQuAD by article: 9,236 / 1,334), not "
    "the official dev sets, training on 40 % and 20 % of the training parts"
)


def settings() -> str:
    """The sweep's options, as its YAML file gives them: shared ones, then each task's."""
    sweep = yaml.safe_load(SWEEP.read_text(encoding="utf-8"))
    shared = ("per_device_train_batch_size", "learning_rate", "warmup_ratio", "weight_decay")
    text = ", ".join(f"`{k}: {sweep['base'][k]}`" for k in shared)
    tasks = {}
    for entry in sweep["grid"]:
        axes = {k: v[0] for k, v in entry.items() if k not in ("seed", "task_name")}
        tasks[entry["task_name"][0]] = ", ".join(f"`{k}: {v}`" for k, v in axes.items())
    return text + "; " + "; ".join(f"{task}: {axes}" for task, axes in tasks.items())


def records() -> list[Record]:
    runs = build(from_file(str(SWEEP))).runs_dir
    return collect(runs) if runs.is_dir() else []


def exact_match(found: list[Record]) -> list[Record]:
    """The SQuAD runs with exact match as their value (read at the end of the budget)."""
    out = []
    for record in found:
        if record.task != "squad":
            continue
        results = json.loads((record.folder / "all_results.json").read_text(encoding="utf-8"))
        metrics, _ = final_metrics(record.folder, results)
        value = metrics.get("eval_exact_match")
        out.append(
            replace(
                record,
                metric="exact_match",
                value=math.nan if value is None else float(value),
                task="squad (exact match)",
            )
        )
    return out


def step_cost(task: str) -> dict[str, float]:
    """Each variant's median step time as a multiple of plain's, from `smartft bench`."""
    path = BENCH / f"{task}.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text(encoding="utf-8"))["results"][0]["rows"]
    return {row["variant"]: float(row["ratio_to_plain"]) for row in rows}


def cell_text(cell: Cell | None) -> str:
    if cell is None:
        return "not run yet"
    if cell.diff_mean_paired is None or cell.ci_low is None or cell.ci_high is None:
        return f"{cell.median:.4f} ({len(cell.values)})"
    interval = f"[{cell.ci_low:+.4f}, {cell.ci_high:+.4f}]"
    return f"{cell.diff_mean_paired:+.4f} {interval} {verdict(cell)} ({cell.paired_seeds})"


def summary(found: list[Record]) -> str:
    """One row per task: plain's median, each method − plain, and a step's cost."""
    cells = {(c.task, c.variant): c for c in summarize(found + exact_match(found))}
    rows = [
        "| task (metric) | plain: median (seeds) | SMART − plain [95 % t-interval] | "
        "ALICE − plain [95 % t-interval] | step time × plain: SMART, ALICE |",
        "|---|---|---|---|---|",
    ]
    names = {**TASKS, "squad (exact match)": "SQuAD v1.1 (exact match)"}
    for task, name in names.items():
        cost = step_cost(task.split()[0])
        costs = ", ".join(f"{cost[v]:.2f}" if v in cost else "–" for v in ("smart", "alice"))
        rows.append(
            f"| {name} | {cell_text(cells.get((task, 'plain')))} | "
            f"{cell_text(cells.get((task, 'smart')))} | {cell_text(cells.get((task, 'alice')))} | "
            f"{costs} |"
        )
    return "\n".join(rows)


def finding(found: list[Record]) -> str:
    named = [(f"{c.variant} {c.task}", c) for c in summarize(found) if c.variant != "plain"]
    return (
        "Multiple choice and extractive QA (`results/mcqa-minilm.md`: MiniLM-L6, Cosmos QA and "
        "SQuAD v1.1 "
        + PARTS
        + ", 3 seeds, nothing tuned): SMART and ALICE against plain, "
        + (f"{tally(named)}." if named else "no pair has finished yet.")
    )


def blocks(found: list[Record] | None = None) -> dict[str, str]:
    """What README.md and docs/ quote from this study (tests/test_readme.py checks them)."""
    found = records() if found is None else found
    return {"mcqa": summary(found), "mcqa-finding": finding(found)}


def main() -> None:
    sweep = build(from_file(str(SWEEP)))
    runs = expand(sweep)
    finished = [r for r in runs if is_done(sweep.runs_dir / r.name)]
    found = records()
    lines = [
        "# Multiple choice and extractive QA: plain, SMART and ALICE on all-MiniLM-L6-v2",
        "",
        f"**Status: {len(finished)} of {len(runs)} runs finished.** The sweep resumes where it "
        "stopped; this file is rewritten from the finished runs by "
        "`.venv/bin/python results/mcqa-minilm/write_results.py`.",
        "",
        "Every figure is " + PARTS + ". One setting per task, fixed before any run and the same "
        f"for every method (results/mcqa-minilm/sweep.yaml): {settings()}; SMART and ALICE at "
        "the library's defaults. The evaluation part is read once, after the last update, so "
        "nothing is chosen on it. "
        + READING_RULE
        + " "
        + VERDICT_RULE
        + " SMART's and ALICE's divergences are over each question's answers (multiple choice) "
        "and over the start and end distributions of each window (QA): docs/multiple-choice.md, "
        "docs/extractive-qa.md. Step times are medians of `smartft bench --task_name` (real "
        "batches, one thread) measured side by side with plain: benchmarks/results/cosmosqa.md "
        "and squad.md.",
        "",
        "```bash",
        ".venv/bin/python scripts/split_mc_qa.py",
        "bash results/sweep_frozen.sh ../mcqa-src results/mcqa-minilm/sweep.yaml",
        ".venv/bin/python results/mcqa-minilm/write_results.py",
        "```",
        "",
        "## Summary (the README quotes it)",
        "",
        summary(found),
        "",
        "## Each task",
        "",
        markdown(summarize(found + exact_match(found))) if found else "No run has finished.",
        "",
        "## Every finished run",
        "",
        runs_table(found, Path("results")) if found else "None yet.",
        "",
        f"Median run time so far: {minutes(median_runtime(found))}.",
    ]
    publish(OUT, lines, blocks(found))


def median_runtime(found: list[Record]) -> float:
    times = sorted(r.runtime_s for r in found if math.isfinite(r.runtime_s))
    return times[len(times) // 2] if times else math.nan


if __name__ == "__main__":
    main()
