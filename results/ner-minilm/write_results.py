"""Writes results/ner-minilm.md: WNUT-17 entity F1 of plain fine-tuning, SMART and R3F on
MiniLM-L6 (3 seeds; dev at the end of training, and the test score of the model the run
kept), from the finished runs of results/ner-minilm/sweep.yaml. Run from the repository root
during or after the sweep:

    .venv/bin/python results/ner-minilm/write_results.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from smartft.report import (
    DEV_SELECTED_MARK,
    READING_RULE,
    VERDICT_RULE,
    Cell,
    Record,
    chosen_on,
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

ROOT = Path("results/ner-minilm")
SWEEP = ROOT / "sweep.yaml"
OUT = Path("results/ner-minilm.md")


def on_split(records: list[Record], prefix: str, metric: str = "f1") -> list[Record]:
    """The runs' `{prefix}_{metric}` as their value: dev (`eval`) at the end of the budget;
    test as the run scored it, after restoring its best epoch on dev, so marked dev-selected
    where that epoch was not the last."""
    out = []
    for record in records:
        results = json.loads((record.folder / "all_results.json").read_text(encoding="utf-8"))
        if prefix == "eval":
            results, selected = final_metrics(record.folder, results)
        else:
            selected = chosen_on(record.folder, results) == "dev"
        value = results.get(f"{prefix}_{metric}")
        value = float("nan") if value is None else float(value)
        out.append(replace(record, value=value, dev_selected=selected))
    return out


def precision_recall(records: list[Record], prefix: str, variant: str) -> str:
    """Median precision / recall of a method's runs: where its F1 comes from."""
    medians = [
        statistics.median(
            r.value for r in on_split(records, prefix, metric) if r.variant == variant
        )
        for metric in ("precision", "recall")
    ]
    return f"{medians[0]:.3f} / {medians[1]:.3f}"


def summary(records: list[Record]) -> str:
    """One row per method, dev and test side by side (docs/tagging.md quotes it)."""
    dev, test = summarize(on_split(records, "eval")), summarize(on_split(records, "test"))

    def columns(cell: Cell) -> str:
        mark = DEV_SELECTED_MARK if cell.dev_selected else ""
        value = f"{cell.median:.4f}{mark} ({cell.min:.4f}-{cell.max:.4f})"
        if cell.diff_mean_paired is None or cell.ci_low is None or cell.ci_high is None:
            return f"{value} | –"
        interval = f"[{cell.ci_low:+.4f}, {cell.ci_high:+.4f}]"
        return f"{value} | {cell.diff_mean_paired:+.4f} {interval} {verdict(cell)}"

    rows = [
        "| method | seeds | dev F1 median (min-max) | dev Δ vs plain [95 % t-interval] | "
        "dev P / R | test F1 median (min-max) | test Δ vs plain [95 % t-interval] | "
        "test P / R | run time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tests = {c.variant: c for c in test}
    for cell in dev:
        rows.append(
            f"| {cell.variant} | {len(cell.values)} | {columns(cell)} | "
            f"{precision_recall(records, 'eval', cell.variant)} | "
            f"{columns(tests[cell.variant])} | {precision_recall(records, 'test', cell.variant)} | "
            f"{minutes(cell.runtime_s, 0)} |"
        )
    return "\n".join(rows)


def blocks(records: list[Record] | None = None) -> dict[str, str]:
    """What README.md and docs/ quote from this study (tests/test_readme.py checks them)."""
    if records is None:
        records = collect(build(from_file(str(SWEEP))).runs_dir)
    named = [
        (f"{c.variant} {split}", c)
        for split, prefix in (("dev", "eval"), ("test", "test"))
        for c in summarize(on_split(records, prefix))
        if c.variant != "plain"
    ]
    finding = (
        "Token tagging (`results/ner-minilm.md`: WNUT-17 entity F1, 3 seeds, nothing tuned): "
        f"SMART and R3F against plain, dev and test, {tally(named)}."
    )
    return {"ner": summary(records), "ner-finding": finding}


def main() -> None:
    sweep = build(from_file(str(SWEEP)))
    runs = expand(sweep)
    finished = [r for r in runs if is_done(sweep.runs_dir / r.name)]
    records = collect(sweep.runs_dir) if sweep.runs_dir.is_dir() else []
    base = yaml.safe_load(SWEEP.read_text(encoding="utf-8"))["base"]
    settings = ", ".join(f"`{k}: {v}`" for k, v in base.items() if k != "save_model")
    lines = [
        "# Token-level SMART on WNUT-17 named-entity recognition (all-MiniLM-L6-v2)",
        "",
        f"**Status: {len(finished)} of {len(runs)} runs finished.** The sweep resumes where it "
        "stopped; this file is rewritten from the finished runs by "
        "`.venv/bin/python results/ner-minilm/write_results.py`.",
        "",
        f"Settings, identical for every method: {settings}. SMART and R3F run at the library's "
        "defaults; nothing is tuned, so neither dev nor test chooses anything. Metric: entity-"
        "level F1 (exact span and type, micro-averaged; seqeval's default mode), dev after the "
        "last epoch, and the F1 on the test set (`do_predict`) of the model each run kept: its "
        "best end-of-epoch evaluation on dev (`load_best_model_at_end`), so a test figure whose "
        "best epoch was not the last is marked as chosen on dev (\\*). "
        + READING_RULE
        + " "
        + VERDICT_RULE
        + " Every word is labelled through its first subword; the divergences "
        "of SMART and R3F are per labelled token (docs/tagging.md).",
        "",
        f"Machine: {os.cpu_count()}-core {platform.machine()} CPU, no GPU, "
        f"torch {torch.__version__}, Python {platform.python_version()}; one thread per run.",
        "",
        "```bash",
        "PYTHONPATH=../ner-src/src .venv/bin/python -m smartft.cli sweep "
        "--config results/ner-minilm/sweep.yaml",
        ".venv/bin/python results/ner-minilm/write_results.py",
        "```",
        "",
        "## Summary (docs/tagging.md quotes it)",
        "",
        summary(records) if records else "No run has finished.",
        "",
        "## Dev entity F1",
        "",
        markdown(summarize(on_split(records, "eval"))) if records else "No run has finished.",
        "",
        "## Test entity F1 (the model chosen on dev)",
        "",
        markdown(summarize(on_split(records, "test"))) if records else "No run has finished.",
        "",
        "## Every finished run",
        "",
        runs_table(records, Path("results")) if records else "None yet.",
    ]
    publish(OUT, lines, blocks(records) if records else {})


if __name__ == "__main__":
    main()
