"""Writes results/tune-study.md: `smartft tune` (plain, SMART, R3F; 12 trials per task) against
the SMART study's grid search (12 runs per task) on RTE and MRPC with MiniLM-L6: what each chose on
the held-out part of the training set, the CPU time each search spent (one thread: wall time is
CPU time), and its winner against plain on dev over seeds 1-5 (the tune's final seeds, the
study's phase 2). Run from the repository root during or after results/tune-study/run.sh:

    .venv/bin/python results/tune-study/write_results.py
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from smartft.report import (
    READING_RULE,
    VERDICT_RULE,
    Cell,
    Record,
    collect,
    minutes,
    publish,
    summarize,
    verdict,
)

ROOT = Path("results/tune-study")
OUT = Path("results/tune-study.md")
GRID = Path("results/smart-study/selection")
GRID_FINAL = Path("results/smart-study/final")
TASKS = ("rte", "mrpc")
ABLATIONS = ("train_fraction", "max_steps")  # the study's phase-2 extras, not its main runs
SEEDS = (1, 2, 3, 4, 5)  # the tune's final seeds; the study adds 6-10 (final-more.yaml)


def tune_search(task: str) -> dict[str, Any] | None:
    """The study's trials: how many in each state, and their summed duration."""
    db = ROOT / task / "study.db"
    if not db.is_file():
        return None
    import optuna

    study = optuna.load_study(study_name=task, storage=f"sqlite:///{db.resolve()}")
    found = study.get_trials(deepcopy=False)
    states = dict(Counter(trial.state.name for trial in found))
    seconds = sum(
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in found
        if t.datetime_complete is not None and t.datetime_start is not None
    )
    best = ROOT / task / "best.yaml"
    chosen = yaml.safe_load(best.read_text(encoding="utf-8")) if best.is_file() else None
    return {"states": states, "seconds": seconds, "chosen": chosen}


def grid_search(task: str) -> tuple[int, float, str]:
    """The study's selection runs of `task`: their number, summed run time, and the best one
    per method on the held-out part (its settings)."""
    runs = [r for r in collect(GRID) if r.task == task] if GRID.is_dir() else []
    seconds = sum(r.runtime_s for r in runs if math.isfinite(r.runtime_s))
    best: dict[str, Record] = {}
    for run in runs:
        if run.variant not in best or run.value > best[run.variant].value:
            best[run.variant] = run
    text = "; ".join(f"{v}: {r.setting} ({r.value:.4f})" for v, r in sorted(best.items()))
    return len(runs), seconds, text


def pair(records: list[Record], variant: str) -> Cell | None:
    """`variant` against plain over the seeds both have (each at its own chosen settings)."""
    same = [replace(r, setting="") for r in records]
    return next((c for c in summarize(same) if c.variant == variant), None)


def cell_text(cell: Cell | None) -> str:
    if cell is None or cell.ci_low is None or cell.ci_high is None:
        return "not run yet"
    interval = f"[{cell.ci_low:+.4f}, {cell.ci_high:+.4f}]"
    return f"{cell.diff_mean_paired:+.4f} {interval} {verdict(cell)} ({cell.paired_seeds} seeds)"


def row(task: str) -> str:
    search = tune_search(task)
    count, grid_seconds, grid_best = grid_search(task)
    final = ROOT / task / "final"
    tuned = collect(final) if final.is_dir() else []
    winner = search["chosen"]["method"] if search and search["chosen"] else None
    study = [
        r
        for r in (collect(GRID_FINAL / task) if (GRID_FINAL / task).is_dir() else [])
        if not any(a in r.setting for a in ABLATIONS) and r.seed in SEEDS
    ]
    if search is None:
        tune_text = "not run yet"
    else:
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(search["states"].items()))
        chosen = search["chosen"] or {}
        settings = ", ".join(
            f"{k} {chosen[k]:.3g}" if isinstance(chosen[k], float) else f"{k} {chosen[k]}"
            for k in ("method", "learning_rate", "num_train_epochs", "smart_lambda", "r3f_lambda")
            if k in chosen
        )
        tune_text = f"{states}; {minutes(search['seconds'], 0)}; chose {settings or '–'}"
    return (
        f"| {task.upper()} | {tune_text} | {count} runs; {minutes(grid_seconds, 0)}; "
        f"{grid_best or '–'} | {cell_text(pair(tuned, winner) if winner else None)} | "
        f"{cell_text(pair(study, 'smart'))} |"
    )


def main() -> None:
    lines = [
        "# `smartft tune` against the SMART study's grid search (all-MiniLM-L6-v2)",
        "",
        "Both searches choose on 10 % of the training set held out (the same examples: "
        "data_seed), never on dev; both then train the choice and plain on the full training "
        "set, seeds 1-5, and read dev once per run. The tune searched plain, SMART and R3F at "
        "its default ranges (docs/tuning.md) with 12 trials per task, the grid's size (plain: "
        "lr {5e-5, 1e-4} x epochs {3, 6}; SMART: the same x λ_s {1, 3}). Search time is the "
        "trials' (or runs') summed wall time on one thread each. "
        + READING_RULE
        + " "
        + VERDICT_RULE,
        "",
        "```bash",
        "bash results/tune-study/run.sh ../tune-src rte   # and mrpc, one per free core",
        ".venv/bin/python results/tune-study/write_results.py",
        "```",
        "",
        "| task | tune: trials; search time; its choice | grid: runs; search time; best per "
        "method on held-out | tune's winner − plain on dev [95 % t-interval] | grid's SMART − "
        "plain on dev |",
        "|---|---|---|---|---|",
        *(row(task) for task in TASKS),
    ]
    publish(OUT, lines, {})


if __name__ == "__main__":
    main()
