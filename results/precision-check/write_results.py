"""Writes results/precision-check.md: bf16 against float32 for plain fine-tuning and SMART on RTE
and MRPC (3 seeds), paired by seed, from the runs of results/precision-check/sweep.yaml, with
the CPU each half ran on (bf16 needs native support to be worth running: docs/precision.md).
A tie (the paired interval holds 0) is what issue 18 requires before any study uses bf16. Run
from the repository root:

    .venv/bin/python results/precision-check/write_results.py
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from smartft.report import (
    VERDICT_RULE,
    Record,
    collect,
    compare,
    minutes,
    publish,
    runs_table,
)
from smartft.sweep import build, expand, from_file, is_done

ROOT = Path("results/precision-check")
SWEEP = ROOT / "sweep.yaml"
OUT = Path("results/precision-check.md")
PRECISIONS = ("float32", "bf16")


def precision_of(record: Record) -> str:
    return "bf16" if "bf16=True" in record.setting else "float32"


def pairs(records: list[Record]) -> dict[tuple[str, str], dict[int, dict[str, Record]]]:
    """(task, method) -> seed -> {"float32": run, "bf16": run}."""
    table: dict[tuple[str, str], dict[int, dict[str, Record]]] = defaultdict(dict)
    for record in records:
        table[(record.task, record.variant)].setdefault(record.seed, {})[precision_of(record)] = (
            record
        )
    return table


def rows(records: list[Record]) -> list[str]:
    lines = [
        "| task | method | seeds paired | float32 median | bf16 median | bf16 − float32, "
        "paired mean [95 % t-interval] | sign-flip p | detectable Δ | verdict | "
        "median run time float32 / bf16 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, method), seeds in sorted(pairs(records).items()):
        both = {s: v for s, v in seeds.items() if len(v) == 2}
        ran = {p: [v[p] for v in seeds.values() if p in v] for p in PRECISIONS}
        times = " / ".join(
            minutes(statistics.median(r.runtime_s for r in ran[p])) if ran[p] else "–"
            for p in PRECISIONS
        )
        if not both:
            lines.append(
                f"| {task} | {method} | 0 | – | – | – | – | – | not paired yet | {times} |"
            )
            continue
        found = compare([v["bf16"].value - v["float32"].value for v in both.values()])
        medians = [statistics.median(v[p].value for v in both.values()) for p in PRECISIONS]
        interval = f"[{found.ci_low:+.4f}, {found.ci_high:+.4f}]" if found.n > 1 else ""
        lines.append(
            f"| {task} | {method} | {found.n} | {medians[0]:.4f} | {medians[1]:.4f} | "
            f"{found.mean:+.4f} {interval} | {found.p_sign_flip:.3f} | "
            f"{f'{found.detectable:.4f}' if found.n > 1 else '–'} | "
            f"{found.verdict} | {times} |"
        )
    return lines


def machines(records: list[Record]) -> list[str]:
    """The CPUs and code each precision's runs used, from their records."""
    seen: dict[str, set[str]] = defaultdict(set)
    for record in records:
        results = json.loads((record.folder / "all_results.json").read_text(encoding="utf-8"))
        native = "native bf16" if results.get("cpu_native_bf16") else "no native bf16"
        seen[precision_of(record)].add(
            f"{results.get('cpu_model', 'unrecorded CPU')} ({native}), code "
            f"{str(results.get('git_commit'))[:7]}"
        )
    return [f"- {p}: " + "; ".join(sorted(seen[p])) for p in PRECISIONS if seen[p]]


def matched(seeds: dict[int, dict[str, Record]]) -> list[dict[str, Record]]:
    """The seeds that ran in both precisions."""
    return [v for v in seeds.values() if len(v) == 2]


def same_everywhere(records: list[Record]) -> list[str]:
    """A paragraph for rows whose every pair scored exactly the same: their interval and
    detectable Δ are 0 because the differences have no spread, not because the study is exact."""
    rows = [
        f"{method} {task.upper()}"
        for (task, method), seeds in sorted(pairs(records).items())
        if len(both := matched(seeds)) >= 3
        and all(v["bf16"].value == v["float32"].value for v in both)
    ]
    if not rows:
        return []
    return [
        f"{', '.join(rows)}: each seed reached exactly the same accuracy in float32 and in "
        "bf16, so the differences have no spread and the interval and detectable Δ print as 0. "
        "That says bf16 changed no seed's score here; it does not make three seeds able to "
        "see any small difference.",
        "",
    ]


def finding(records: list[Record]) -> str:
    """One sentence for the README: the verdicts of the four rows, and what bf16 saved in wall
    time over the runs that have both halves (their time ratio, median over the pairs)."""
    said: dict[str, list[str]] = {"better": [], "tie": [], "worse": []}
    waiting, ratios = [], []
    for (task, method), seeds in sorted(pairs(records).items()):
        both = matched(seeds)
        found = compare([v["bf16"].value - v["float32"].value for v in both]) if both else None
        name = f"{method} {task.upper()}"
        if found is None or found.verdict not in said:
            waiting.append(name)
        else:
            said[found.verdict].append(name)
        ratios += [v["bf16"].runtime_s / v["float32"].runtime_s for v in both]
    counts = ", ".join(
        f"{word} on {len(names)}" + (f" ({', '.join(names)})" if names and word != "tie" else "")
        for word, names in said.items()
    )
    ratios = [r for r in ratios if not math.isnan(r)]  # a run resumed by code that kept no time
    time = (
        f"; a bf16 run took {statistics.median(ratios):.2f}x the wall time of its float32 pair "
        f"(median of {len(ratios)})"
        if ratios
        else ""
    )
    left = f"; below 3 pairs yet: {', '.join(waiting)}" if waiting else ""
    return (
        "bf16 against float32 (`results/precision-check.md`: MiniLM-L6, plain and SMART on RTE "
        f"and MRPC, 3 seeds, a CPU with native bf16): bf16 − float32 is {counts}{left}{time}."
    )


def blocks(records: list[Record] | None = None) -> dict[str, str]:
    """What README.md and docs/precision.md quote (tests/test_readme.py checks them)."""
    if records is None:
        runs = build(from_file(str(SWEEP))).runs_dir
        records = collect(runs) if runs.is_dir() else []
    return {
        "precision-check": "\n".join(rows(records)) if records else "No run has finished.",
        "precision-finding": finding(records),
    }


def main() -> None:
    sweep = build(from_file(str(SWEEP)))
    runs = expand(sweep)
    finished = [r for r in runs if is_done(sweep.runs_dir / r.name)]
    records = collect(sweep.runs_dir) if sweep.runs_dir.is_dir() else []
    lines = [
        "# bf16 against float32 (issues 18 and 56)",
        "",
        f"**Status: {len(finished)} of {len(runs)} runs finished.** Rewritten from the runs by "
        "`.venv/bin/python results/precision-check/write_results.py`.",
        "",
        "Plain fine-tuning and SMART (the paper's settings, `ball` projection) on RTE and MRPC, "
        "seeds 1-3, the GLUE study's settings (3 epochs, batch 16, lr 5e-5), once in float32 "
        "and once with `--bf16`; dev accuracy read once, after the third epoch (no evaluation "
        "during training, no epoch chosen), paired by seed. " + VERDICT_RULE,
        "",
        "The CPUs the runs used (from their records):",
        "",
        *(machines(records) or ["- none yet"]),
        "",
        *(rows(records) if records else ["No run has finished."]),
        "",
        *same_everywhere(records),
        "SMART's ball of ε = 1e-5 is below what bf16 represents on MiniLM's word embeddings "
        "(smartft warns: docs/precision.md), so a bf16 SMART run's R_s measures rounding noise "
        "and dropout rather than the perturbation; a tie here says the two precisions reach "
        "the same accuracy, not that they optimize the same objective.",
        "",
        "## Every finished run",
        "",
        runs_table(records, Path("results")) if records else "None yet.",
    ]
    publish(OUT, lines, blocks(records))


if __name__ == "__main__":
    main()
