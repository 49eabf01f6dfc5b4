"""Writes results/mpnet-study.md: plain fine-tuning against SMART (the paper's settings) on
all-mpnet-base-v2 (109.5 M parameters), RTE and MRPC, seeds 1-5, dev read once after the last
update; beside it the same comparison on MiniLM-L6 (the GLUE study, 22 M parameters), what a
seed costs here, and every run. Run from the repository root during or after the sweep:

    .venv/bin/python results/mpnet-study/write_results.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from smartft.report import (
    MIN_PAIRED_SEEDS,
    READING_RULE,
    VERDICT_RULE,
    Cell,
    Record,
    collect,
    markdown,
    minutes,
    publish,
    runs_table,
    summarize,
    tally,
    versus_text,
)
from smartft.sweep import build, expand, from_file, is_done

ROOT = Path("results/mpnet-study")
SWEEP = ROOT / "sweep.yaml"
OUT = Path("results/mpnet-study.md")
MINILM = Path("results/glue-minilm/runs")
TASKS = ("rte", "mrpc")
BENCH = Path("benchmarks/results/mpnet.json")


def records() -> list[Record]:
    runs = build(from_file(str(SWEEP))).runs_dir
    return collect(runs) if runs.is_dir() else []


def minilm_records() -> list[Record]:
    """The GLUE study's full-data plain and SMART runs on RTE and MRPC (MiniLM-L6)."""
    return [
        r
        for task in TASKS
        for variant in ("plain", "smart")
        if (MINILM / task / variant).is_dir()
        for r in collect(MINILM / task / variant)
    ]


def smart_cells(found: list[Record]) -> dict[str, Cell]:
    return {c.task: c for c in summarize(found) if c.variant == "smart"}


def size_table(mpnet: list[Record]) -> str:
    """SMART − plain per task on both models: does the effect grow with size?"""
    ours, small = smart_cells(mpnet), smart_cells(minilm_records())
    plain = {c.task: c for c in summarize(mpnet) if c.variant == "plain"}
    rows = [
        "| task | MPNet plain: median (seeds) | MPNet: SMART − plain [95 % t-interval] | "
        "MiniLM-L6: SMART − plain (the GLUE study) |",
        "|---|---|---|---|",
    ]
    for task in TASKS:
        base = plain.get(task)
        median = f"{base.median:.4f} ({len(base.values)})" if base else "not run yet"
        mpnet_smart, minilm_smart = (
            versus_text(cells.get(task), "not paired yet", with_detectable=True)
            for cells in (ours, small)
        )
        rows.append(f"| {task.upper()} | {median} | {mpnet_smart} | {minilm_smart} |")
    return "\n".join(rows)


def cost(mpnet: list[Record]) -> str:
    """CPU time spent and what a run costs, from the records (one thread per run)."""
    known = [r for r in mpnet if not r.runtime_partial and not math.isnan(r.runtime_s)]
    total = sum(r.runtime_s for r in mpnet if not math.isnan(r.runtime_s)) / 3600
    lines = [f"CPU time of the finished runs: {total:.1f} core-hours (one thread per run)."]
    for task in TASKS:
        for variant in ("plain", "smart"):
            times = sorted(r.runtime_s for r in known if r.task == task and r.variant == variant)
            if times:
                lines.append(
                    f"- {task.upper()} {variant}: {minutes(times[len(times) // 2], 0)} per run "
                    f"(median of {len(times)})"
                )
    return "\n".join(lines)


def bench_rows() -> str:
    """`smartft bench` on MPNet, if it has been run (benchmarks/results/mpnet.md)."""
    if not BENCH.is_file():
        return "Not measured yet (`smartft bench --models all-mpnet-base-v2 ... --name mpnet`)."
    data = json.loads(BENCH.read_text(encoding="utf-8"))
    rows = ["| variant | median step s | x plain |", "|---|---|---|"]
    for result in data["results"]:
        for row in result["rows"]:
            rows.append(
                f"| {row['variant']} | {row['median_s']:.3f} | {row['ratio_to_plain']:.2f} |"
            )
    setting = data["results"][0]["setting"]
    return (
        f"`benchmarks/results/mpnet.md`: batch {setting['batch_size']} x {setting['seq_len']}, "
        f"{setting['threads']} thread, {data['machine']['processor']}, interleaved medians "
        "(measured while other work shared the machine: the ratios hold, the seconds are "
        "slower than on an idle core).\n\n" + "\n".join(rows)
    )


def blocks(mpnet: list[Record] | None = None) -> dict[str, str]:
    """What README.md and docs/ quote from this study (tests/test_readme.py checks them)."""
    mpnet = records() if mpnet is None else mpnet
    named = [(c.task.upper(), c) for c in smart_cells(mpnet).values()]
    seeds = sorted({c.paired_seeds for _, c in named})
    if any(c.paired_seeds >= MIN_PAIRED_SEEDS for _, c in named):
        said = f"SMART against plain is {tally(named)} ({'/'.join(map(str, seeds))} seeds)."
    elif named:  # pairs, but too few for a verdict: the differences so far, marked as such
        said = (
            "SMART − plain so far "
            + ", ".join(
                f"{name} {c.diff_mean_paired:+.4f} ({c.paired_seeds} pair"
                + ("s)" if c.paired_seeds > 1 else ")")
                for name, c in named
                if c.diff_mean_paired is not None
            )
            + f"; no verdict below {MIN_PAIRED_SEEDS} pairs."
        )
    else:
        said = "no pair of runs has finished yet."
    finding = (
        "110 M parameters (`results/mpnet-study.md`: all-mpnet-base-v2, RTE and MRPC, lr 2e-5, "
        "3 epochs, the paper's SMART settings): " + said
    )
    return {"mpnet-finding": finding, "mpnet": size_table(mpnet)}


def main() -> None:
    sweep = build(from_file(str(SWEEP)))
    runs = expand(sweep)
    finished = [r for r in runs if is_done(sweep.runs_dir / r.name)]
    mpnet = records()
    base = yaml.safe_load(SWEEP.read_text(encoding="utf-8"))["base"]
    settings = ", ".join(f"`{k}: {v}`" for k, v in base.items() if k != "save_model")
    lines = [
        "# SMART on a 110 M-parameter model: all-mpnet-base-v2 on RTE and MRPC",
        "",
        f"**Status: {len(finished)} of {len(runs)} runs finished.** Rewritten from the runs by "
        "`.venv/bin/python results/mpnet-study/write_results.py`.",
        "",
        f"Settings, fixed before any dev number existed and the same for both methods: {settings}."
        " SMART runs at the paper's settings (`--method smart` and nothing else). "
        + READING_RULE
        + " "
        + VERDICT_RULE,
        "",
        "## Does SMART's effect grow with model size?",
        "",
        size_table(mpnet),
        "",
        "The MiniLM-L6 column is the GLUE study's (lr 5e-5, 3 epochs, 3 seeds, read the same "
        "way); the two studies differ in learning rate and number of seeds, so compare the "
        "verdicts and intervals, not the figures to the last digit.",
        "",
        "## Per task",
        "",
        markdown(summarize(mpnet)) if mpnet else "No run has finished yet.",
        "",
        "## Cost",
        "",
        cost(mpnet) if mpnet else "No run has finished yet.",
        "",
        bench_rows(),
        "",
        "## Every finished run",
        "",
        runs_table(mpnet, Path("results")) if mpnet else "None yet.",
    ]
    publish(OUT, lines, blocks(mpnet))


if __name__ == "__main__":
    main()
