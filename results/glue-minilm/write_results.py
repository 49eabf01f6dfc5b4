"""Writes results/glue-minilm.md: the study's settings and commands, `smartft report`'s tables
(and PNGs in results/glue-minilm/), every finished run with its wall time, and how far the sweep
has got. Run from the repository root after (or during) the sweep:

    .venv/bin/python results/glue-minilm/write_results.py
"""

from __future__ import annotations

import math
import os
import platform
from collections import Counter
from pathlib import Path

import torch
import yaml

from smartft.data.dataset import read_split
from smartft.data.tasks import get_task
from smartft.report import (
    READING_RULE,
    VERDICT_RULE,
    collect,
    markdown,
    publish,
    report,
    runs_table,
    summarize,
    tally,
    verdict,
)
from smartft.sweep import build, expand, from_file, is_done

ROOT = Path("results/glue-minilm")
SWEEP = ROOT / "sweep.yaml"
OUT = Path("results/glue-minilm.md")


def majority_accuracy(task: str, data_dir: Path) -> float:
    """Dev accuracy of always answering the dev set's most frequent label: the floor that a
    classifier has to clear before its accuracy means anything."""
    spec = get_task(task)
    if spec.label_column is None:
        raise ValueError(f"{task} has no labels to count")
    _, rows = read_split(spec, "validation", data_dir)
    counts = Counter(str(row.fields[spec.label_column]) for row in rows)
    return max(counts.values()) / sum(counts.values())


def smart_vs_plain(runs_dir: Path) -> list[str]:
    """One line per task and setting: SMART's median against plain's, the gap in units of the
    larger seed std, the paired interval and the report's verdict."""
    cells = {(c.task, c.setting, c.variant): c for c in summarize(collect(runs_dir))}
    lines = []
    for (task, setting, variant), smart in sorted(cells.items()):
        plain = cells.get((task, setting, "plain"))
        if variant != "smart" or plain is None:
            continue
        stds = [c.std for c in (plain, smart) if not math.isnan(c.std)]
        spread = max(stds, default=0.0)
        gap = f"{(smart.median - plain.median) / spread:+.1f}" if spread > 0 else "–"
        paired = "–" if smart.diff_mean_paired is None else f"{smart.diff_mean_paired:+.4f}"
        if smart.ci_low is not None and smart.ci_high is not None:
            paired += f" [{smart.ci_low:+.4f}, {smart.ci_high:+.4f}]"
        lines.append(
            f"- **{task}{f' ({setting})' if setting else ''}**, {smart.metric}: SMART median "
            f"{smart.median:.4f} (std {smart.std:.4f}) vs plain {plain.median:.4f} "
            f"(std {plain.std:.4f}), Δ median {smart.median - plain.median:+.4f} = "
            f"{gap} × the larger std; paired mean Δ {paired} over {smart.paired_seeds} seeds: "
            f"**{verdict(smart) or 'too few seeds'}**"
        )
    return lines


NAMES = {"rte": "RTE", "mrpc": "MRPC", "stsb": "STS-B", "cola": "CoLA"}


def blocks() -> dict[str, str]:
    """What README.md and docs/ quote from this study (tests/test_readme.py checks them)."""
    cells = {(c.task, c.setting, c.variant): c for c in summarize(collect(ROOT / "runs"))}
    rows = [
        "| task | plain: median (std) | SMART: median (std) | SMART − plain, paired mean "
        "[95 % t-interval] | verdict |",
        "|---|---|---|---|---|",
    ]
    named = []
    for (task, setting, variant), smart in sorted(cells.items()):
        plain = cells.get((task, setting, "plain"))
        if variant != "smart" or plain is None or smart.ci_low is None:
            continue
        label = NAMES[task] + (" at 10 % of train" if setting else "")
        named.append((label, smart))
        rows.append(
            f"| {label} ({smart.metric}) | {plain.median:.4f} ({plain.std:.4f}) | "
            f"{smart.median:.4f} ({smart.std:.4f}) | {smart.diff_mean_paired:+.4f} "
            f"[{smart.ci_low:+.4f}, {smart.ci_high:+.4f}] | {verdict(smart)} |"
        )
    finding = (
        "GLUE study (`results/glue-minilm.md`: MiniLM-L6, 3 epochs, lr 5e-5, 3 seeds, the "
        f"paper's SMART settings): SMART against plain is {tally(named)}."
    )
    fast = summarize(collect(ROOT / "runs" / "rte"), baseline="smart")
    shown = [c for c in fast if not c.setting and c.variant in ("plain", "smart", "smart-fast")]
    versus = markdown(shown, "smart")
    return {"glue": "\n".join(rows), "glue-finding": finding, "glue-fast": versus}


def main() -> None:
    sweep = build(from_file(str(SWEEP)))
    runs = expand(sweep)
    finished = [r for r in runs if is_done(sweep.runs_dir / r.name)]
    tables, images = report(sweep.runs_dir, ROOT)
    versus_smart, _ = report(
        sweep.runs_dir / "rte", ROOT / "rte-vs-smart", baseline="smart", plots=False
    )
    base = yaml.safe_load(SWEEP.read_text(encoding="utf-8"))["base"]
    lines = [
        "# The GLUE study: plain fine-tuning vs SMART on all-MiniLM-L6-v2",
        "",
        f"**Status: {len(finished)} of {len(runs)} runs finished.** The sweep resumes where it "
        "stopped; this file is rewritten from the finished runs by "
        "`.venv/bin/python results/glue-minilm/write_results.py`.",
        "",
        "Settings, identical for every method: "
        + ", ".join(f"`{k}: {v}`" for k, v in base.items() if k != "save_model")
        + ". SMART: the paper's defaults (λ_s = 1, ε = 1e-5, η = 1e-3, σ = 1e-5, K = 1, "
        "∞-norm per token, μ = 1, β = 0.99 then 0.999), `ball` projection; `smart-unit` is the "
        "reference code's unit renormalisation; `smart-fast` computes R_s and the Bregman term "
        "each on a random quarter of every batch. Metric: the task's dev-set main metric (RTE, "
        "MRPC: accuracy; STS-B: Pearson; CoLA: Matthews correlation) after the third epoch. "
        + READING_RULE
        + " (The runs kept their best epoch, `load_best_model_at_end`; earlier versions of "
        "this file reported that figure.)",
        "",
        f"Machine: {os.cpu_count()}-core {platform.machine()} CPU, no GPU, "
        f"torch {torch.__version__}, Python {platform.python_version()}. Runs went one at a time "
        "on two threads or two at a time on one thread each (`OMP_NUM_THREADS=1`); wall times "
        "below are per run and depend on which.",
        "",
        "Commands (from the repository root; the code is frozen at the commit named in "
        "`results/glue-minilm/sweep.yaml`, through a worktree):",
        "",
        "```bash",
        "PYTHONPATH=../glue-src/src .venv/bin/python -m smartft.cli sweep "
        "--config results/glue-minilm/sweep.yaml",
        ".venv/bin/smartft report results/glue-minilm/runs --out results/glue-minilm",
        "```",
        "",
        "Trivial baselines, to read the tables against: always answering the majority label "
        "scores "
        + ", ".join(
            f"{t.upper()} {majority_accuracy(t, Path(base['data_dir'])):.4f}"
            for t in ("rte", "mrpc")
        )
        + " dev accuracy; a constant predictor has CoLA MCC 0 and STS-B Pearson undefined (0).",
        "",
        "## SMART against plain, per task",
        "",
        VERDICT_RULE
        + " With 3 seeds the t-interval is wide (its half-width is 2.5 × the differences' "
        "std) and the sign-flip p cannot go below 0.25.",
        "",
        *smart_vs_plain(sweep.runs_dir),
        "",
        "## Results per task and method",
        "",
        tables,
        "",
        "Plots: " + ", ".join(f"`{p}`" for p in images if p.suffix == ".png"),
        "",
        "## RTE against exact SMART (the fast mode's accuracy check)",
        "",
        "The same RTE runs, each variant compared with exact SMART (`smart`), paired by seed "
        "(`smartft report results/glue-minilm/runs/rte --baseline smart`):",
        "",
        versus_smart,
        "",
        "## Every finished run",
        "",
        runs_table(collect(sweep.runs_dir), sweep.runs_dir),
    ]
    publish(OUT, lines, blocks())


if __name__ == "__main__":
    main()
