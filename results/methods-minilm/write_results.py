"""Writes results/methods-minilm.md: every peer method against plain fine-tuning and SMART on RTE
and MRPC (3 seeds, the GLUE study's settings), from the finished runs. Plain and SMART are the
GLUE study's own runs, joined in by the report. Run from the repository root during or after the
sweep:

    .venv/bin/python results/methods-minilm/write_results.py
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch
import yaml

from smartft.report import Cell, collect_many, report, runs_table, summarize, verdict
from smartft.sweep import build, expand, from_file, is_done

ROOT = Path("results/methods-minilm")
SWEEP = ROOT / "sweep.yaml"
OUT = Path("results/methods-minilm.md")
STUDY_RUNS = Path("results/glue-minilm/runs")
TASKS = ("rte", "mrpc")


ORDER = "plain smart alice r3f r4f freelb child-tuning mixout l2sp lnsr dps".split()  # README's


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
        "| method | RTE acc. median (min-max) | RTE Δ vs plain [95 % CI] | MRPC acc. median "
        "(min-max) | MRPC Δ vs plain [95 % CI] | run time RTE / MRPC |",
        "|---|---|---|---|---|---|",
    ]
    for variant in ORDER:
        columns = [c for task in TASKS for c in task_columns(task, variant)]
        times = " / ".join(
            f"{by_key[(task, variant)].runtime_s / 60:.1f}" if (task, variant) in by_key else "–"
            for task in TASKS
        )
        rows.append(f"| {variant.replace('-', '_')} | {' | '.join(columns)} | {times} min |")
    return "\n".join(rows)


def main() -> None:
    sweep = build(from_file(str(SWEEP)))
    runs = expand(sweep)
    finished = [r for r in runs if is_done(sweep.runs_dir / r.name)]
    baselines = [
        STUDY_RUNS / task / variant
        for task in TASKS
        for variant in ("plain", "smart")
        if (STUDY_RUNS / task / variant).is_dir()
    ]
    folders = [d for d in (sweep.runs_dir, *baselines) if d.is_dir()]
    tables, images = report(folders, ROOT)
    versus_smart, _ = report(folders, ROOT / "vs-smart", baseline="smart", plots=False)
    base = yaml.safe_load(SWEEP.read_text(encoding="utf-8"))["base"]
    lines = [
        "# Robust fine-tuning methods against plain fine-tuning and SMART (all-MiniLM-L6-v2)",
        "",
        f"**Status: {len(finished)} of {len(runs)} method runs finished.** The sweep resumes "
        "where it stopped; this file is rewritten from the finished runs by "
        "`.venv/bin/python results/methods-minilm/write_results.py`.",
        "",
        "Settings, identical for every method (the GLUE study's): "
        + ", ".join(f"`{k}: {v}`" for k, v in base.items() if k != "save_model")
        + ". Each method runs with its preset's defaults (`smartft methods` lists them; L2-SP "
        "replaces weight decay, so its runs set `weight_decay: 0`). Metric: dev accuracy, the "
        "best of the end-of-epoch evaluations, the same for every method.",
        "",
        "Plain fine-tuning and SMART (`ball` projection) are the GLUE study's runs "
        "(`results/glue-minilm/runs/{rte,mrpc}/{plain,smart}`, same settings and seeds, code of "
        "the commit named in `results/glue-minilm/sweep.yaml`); the training losses of plain "
        "and SMART at that commit and at the methods' (named in "
        "`results/methods-minilm/sweep.yaml`) agree to the last digit on the same steps "
        "(`bash results/methods-minilm/same_baseline.sh`).",
        "",
        f"Machine: {os.cpu_count()}-core {platform.machine()} CPU, no GPU, "
        f"torch {torch.__version__}, Python {platform.python_version()}; runs went two at a time "
        "on one thread each (`OMP_NUM_THREADS=1`). Step-time ratios to plain are measured side "
        "by side in `benchmarks/results/methods.md`, not from these wall times.",
        "",
        "Commands (from the repository root):",
        "",
        "```bash",
        "PYTHONPATH=../methods-src/src .venv/bin/python -m smartft.cli sweep "
        "--config results/methods-minilm/sweep.yaml",
        ".venv/bin/smartft report results/methods-minilm/runs "
        + " ".join(str(f) for f in baselines)
        + " --out results/methods-minilm",
        "```",
        "",
        "## Summary (the README's table)",
        "",
        "Dev accuracy median (min-max), mean paired difference from plain [95 % bootstrap "
        "interval] and verdict, median wall time of a run:",
        "",
        summary_table(summarize(collect_many(folders))),
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
        "## Every finished run",
        "",
        runs_table(collect_many(folders), Path("results")),
    ]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
