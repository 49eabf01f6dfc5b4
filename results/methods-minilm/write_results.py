"""Writes results/methods-minilm.md: every peer method against plain fine-tuning and SMART on RTE
and MRPC (3 seeds, the GLUE study's settings), from the finished runs. Plain and SMART are the
GLUE study's own runs, joined in by the report. The methods whose definitions issue 20 changed
rerun in fidelity.yaml (with NEFTune, new there): a method's row comes from its rerun once all
of that task's seeds have finished, and from its first runs, labelled "(old definition)", until
then. Run from the repository root during or after the sweeps:

    .venv/bin/python results/methods-minilm/write_results.py
"""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from dataclasses import replace
from pathlib import Path
from statistics import median

import torch
import yaml

from smartft.report import (
    READING_RULE,
    VERDICT_RULE,
    Cell,
    Record,
    collect_many,
    compare,
    minutes,
    publish,
    runs_table,
    summarize,
    tally,
    verdict,
    write_report,
)
from smartft.sweep import build, expand, from_file, is_done

ROOT = Path("results/methods-minilm")
SWEEP = ROOT / "sweep.yaml"
FIDELITY = ROOT / "fidelity.yaml"
OUT = Path("results/methods-minilm.md")
STUDY_RUNS = Path("results/glue-minilm/runs")
TASKS = ("rte", "mrpc")


ORDER = "plain smart alice r3f r4f neftune freelb child-tuning mixout l2sp lnsr dps".split()
OLD = " (old definition)"


def chosen_records() -> tuple[list[Record], list[tuple[Record, Record]], int, int]:
    """The runs the report compares, the (old, rerun) pairs of the changed definitions, and how
    many runs of both sweeps have finished out of how many."""
    first, rerun = build(from_file(str(SWEEP))), build(from_file(str(FIDELITY)))
    new = collect_many([rerun.runs_dir]) if rerun.runs_dir.is_dir() else []
    runs = [(first, r) for r in expand(first)] + [(rerun, r) for r in expand(rerun)]
    finished = sum(is_done(sweep.runs_dir / r.name) for sweep, r in runs)
    planned = Counter((str(r.axes["task"]), str(r.axes["variant"])) for r in expand(rerun))
    done = Counter((r.task, r.variant) for r in new)
    landed = {key for key, n in planned.items() if done[key] == n}
    old = collect_many([first.runs_dir])
    old_variants = {r.variant for r in old}
    records = [
        r if (r.task, r.variant) not in planned else replace(r, variant=r.variant + OLD)
        for r in old
        if (r.task, r.variant) not in landed
    ]
    records += [r for r in new if (r.task, r.variant) in landed or r.variant not in old_variants]
    by_key = {(r.task, r.variant, r.seed): r for r in old}
    pairs = [
        (by_key[(r.task, r.variant, r.seed)], r)
        for r in new
        if (r.task, r.variant) in landed and (r.task, r.variant, r.seed) in by_key
    ]
    return records, pairs, finished, len(runs)


def before_after(pairs: list[tuple[Record, Record]]) -> str:
    """Each changed definition against its first one, paired by seed (same data and settings)."""
    if not pairs:
        return "No rerun has finished all its seeds yet."
    lines = [
        "| task | method | old definition median | faithful median | faithful − old, paired "
        "mean [95 % CI] | seeds |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[tuple[Record, Record]]] = {}
    for old, new in pairs:
        groups.setdefault((new.task, new.variant), []).append((old, new))
    for (task, variant), group in sorted(groups.items()):
        found = compare([new.value - old.value for old, new in group])
        lines.append(
            f"| {task} | {variant} | {median([o.value for o, _ in group]):.4f} | "
            f"{median([n.value for _, n in group]):.4f} | {found.mean:+.4f} "
            f"[{found.ci_low:+.4f}, {found.ci_high:+.4f}] | {len(group)} |"
        )
    return "\n".join(lines)


def summary_table(cells: list[Cell]) -> str:
    """One row per method, both tasks side by side: the README's table."""
    by_key = {(c.task, c.variant): c for c in cells}

    def task_columns(task: str, variant: str) -> tuple[str, str]:
        cell = by_key.get((task, variant))
        if cell is None:
            return "not run yet", ""
        acc = f"{cell.median:.4f} ({cell.min:.4f}-{cell.max:.4f})"
        if cell.ci_low is None or cell.ci_high is None or cell.diff_mean_paired is None:
            return acc, "–"
        diff = f"{cell.diff_mean_paired:+.4f} [{cell.ci_low:+.4f}, {cell.ci_high:+.4f}]"
        return acc, f"{diff} {verdict(cell)}"

    rows = [
        "| method | RTE acc. median (min-max) | RTE Δ vs plain [95 % t-interval] | "
        "MRPC acc. median (min-max) | MRPC Δ vs plain [95 % t-interval] | run time RTE / MRPC |",
        "|---|---|---|---|---|---|",
    ]
    shown = {c.variant for c in cells}
    for variant in [v for name in ORDER for v in (name, name + OLD) if v in shown]:
        columns = [c for task in TASKS for c in task_columns(task, variant)]
        times = " / ".join(
            minutes(by_key[(task, variant)].runtime_s) if (task, variant) in by_key else "–"
            for task in TASKS
        )
        label = variant.replace("-", "_").replace("_(old_definition)", OLD)
        rows.append(f"| {label} | {' | '.join(columns)} | {times} |")
    return "\n".join(rows)


def fit_table(records: list[Record]) -> str:
    """How far each run fitted its training data, from its metrics.jsonl: the last logged task
    loss and, for FreeLB, its adversarial excess (mean perturbed loss minus the clean one) at
    its first and last logged update."""
    rows = ["| run | last logged task loss | `loss_freelb` first → last |", "|---|---|---|"]
    for record in sorted(records, key=lambda r: str(r.folder)):
        lines = (record.folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        train = [e for e in map(json.loads, lines) if e["event"] == "train"]
        excess = [e["loss_freelb"] for e in train if "loss_freelb" in e]
        shown = f"{excess[0]:.4f} → {excess[-1]:.4f}" if excess else ""
        name = record.folder.relative_to(Path("results"))
        rows.append(f"| {name} | {train[-1]['task_loss']:.3f} | {shown} |")
    return "\n".join(rows)


def all_records() -> tuple[list[Record], list[tuple[Record, Record]], int, int]:
    """`chosen_records` plus the GLUE study's plain and SMART runs, the baseline."""
    records, pairs, finished, planned = chosen_records()
    baselines = [
        STUDY_RUNS / task / variant
        for task in TASKS
        for variant in ("plain", "smart")
        if (STUDY_RUNS / task / variant).is_dir()
    ]
    return records + collect_many(baselines), pairs, finished, planned


def blocks(records: list[Record] | None = None) -> dict[str, str]:
    """What README.md and docs/ quote from this study (tests/test_readme.py checks them)."""
    records = all_records()[0] if records is None else records
    cells = summarize(records)
    peers = [
        (f"{c.variant} {c.task.upper()}", c)
        for c in cells
        if c.variant not in ("plain", "smart") and OLD not in c.variant
    ]
    finding = (
        f"The peers (`results/methods-minilm.md`: {len({c.variant for _, c in peers})} methods at "
        "their defaults, RTE and MRPC, 3 seeds, the GLUE study's settings): against plain, "
        f"{tally(peers)}."
    )
    return {"methods": summary_table(cells), "methods-finding": finding}


def main() -> None:
    records, pairs, finished, planned = all_records()
    tables, images = write_report(records, ROOT)
    versus_smart, _ = write_report(records, ROOT / "vs-smart", baseline="smart", plots=False)
    base = yaml.safe_load(SWEEP.read_text(encoding="utf-8"))["base"]
    lines = [
        "# Robust fine-tuning methods against plain fine-tuning and SMART (all-MiniLM-L6-v2)",
        "",
        f"**Status: {finished} of {planned} method runs finished** (`sweep.yaml`, then the "
        "reruns of `fidelity.yaml`). The sweeps resume where they stopped; this file is "
        "rewritten from the finished runs by "
        "`.venv/bin/python results/methods-minilm/write_results.py`.",
        "",
        "Settings, identical for every method (the GLUE study's): "
        + ", ".join(
            f"`{k}: {v}`" for k, v in base.items() if k not in ("save_model", "num_threads")
        )
        + ". Each method runs with its preset's defaults (`smartft methods` lists them; L2-SP "
        "replaces weight decay, so its runs set `weight_decay: 0`; NEFTune runs at "
        "`neftune_alpha: 5`). Metric: dev accuracy after the third epoch, the same for every "
        "method. " + READING_RULE,
        "",
        "ALICE, FreeLB, Child-Tuning, Mixout and DPS changed to follow their papers (issue 20) "
        "and rerun with the same settings and seeds at the commit named in `fidelity.yaml`, "
        "beside NEFTune (runs in `runs-fidelity/`). Until all of a task's seeds of a rerun have "
        'finished, that row shows the first definition\'s runs, marked "(old definition)"; '
        "then the rerun replaces it and the section *Faithful definitions against the first "
        "ones* pairs the two.",
        "",
        "Plain fine-tuning and SMART (`ball` projection) are the GLUE study's runs "
        "(`results/glue-minilm/runs/{rte,mrpc}/{plain,smart}`, same settings and seeds, code of "
        "the commit named in `results/glue-minilm/sweep.yaml`); the training losses of plain "
        "and SMART at that commit and at the methods' and the reruns' commits agree to the "
        "last digit on the same steps (`bash results/methods-minilm/same_baseline.sh`).",
        "",
        f"Machine: {os.cpu_count()}-core {platform.machine()} CPU, no GPU, "
        f"torch {torch.__version__}, Python {platform.python_version()}; runs went two or "
        "three at a time on one thread each (`OMP_NUM_THREADS=1`). Step-time ratios to plain "
        "are measured side by side in `benchmarks/results/methods.md`, not from these wall "
        "times.",
        "",
        "Commands (from the repository root; worktrees at the commits the two files name):",
        "",
        "```bash",
        "bash results/sweep_frozen.sh ../methods-src results/methods-minilm/sweep.yaml",
        "bash results/sweep_frozen.sh ../fidelity-src results/methods-minilm/fidelity.yaml",
        ".venv/bin/python results/methods-minilm/write_results.py",
        "```",
        "",
        "## Summary (the README's table)",
        "",
        READING_RULE + " " + VERDICT_RULE + " "
        "Dev accuracy median (min-max), mean paired difference from plain [95 % t-interval] "
        "and verdict, median wall time of a run (over the seeds whose whole wall "
        "time is known: a run the frozen code resumed records only the part after its last "
        "resume; – where every seed was resumed):",
        "",
        summary_table(summarize(records)),
        "",
        "## Faithful definitions against the first ones",
        "",
        "Dev accuracy of each rerun against the same method's first definition, paired by "
        "seed (same data, settings and seeds; only the method's code differs):",
        "",
        before_after(pairs),
        "",
        "## Against plain fine-tuning",
        "",
        tables,
        "",
        "Plots: " + ", ".join(f"`{p}`" for p in images if p.suffix == ".png"),
        "",
        "## Against SMART",
        "",
        "The same runs, each compared with SMART, paired by seed (`--baseline smart`):",
        "",
        versus_smart,
        "",
        "## How far each run fitted the training data",
        "",
        fit_table(records),
        "",
        "## Every finished run",
        "",
        runs_table(records, Path("results")),
    ]
    publish(OUT, lines, blocks(records))


if __name__ == "__main__":
    main()
