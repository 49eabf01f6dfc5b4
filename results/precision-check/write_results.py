"""Writes results/precision-check.md: bf16 against float32 for plain fine-tuning and SMART on RTE
and MRPC (3 seeds), paired by seed, from the runs of results/precision-check/sweep.yaml (made on
a GPU by scripts/gpu/check.sh). A tie (the paired interval holds 0) is what issue 18 requires
before any study uses bf16. Run from the repository root:

    .venv/bin/python results/precision-check/write_results.py
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from smartft.report import Record, bootstrap_ci, collect

ROOT = Path("results/precision-check")
OUT = Path("results/precision-check.md")


def pairs(records: list[Record]) -> dict[tuple[str, str], dict[int, dict[str, float]]]:
    """(task, method) -> seed -> {"float32": value, "bf16": value}."""
    table: dict[tuple[str, str], dict[int, dict[str, float]]] = defaultdict(dict)
    for record in records:
        precision = "bf16" if "bf16=True" in record.setting else "float32"
        table[(record.task, record.variant)].setdefault(record.seed, {})[precision] = record.value
    return table


def rows(records: list[Record]) -> list[str]:
    lines = [
        "| task | method | seeds paired | float32 median | bf16 median | bf16 − float32, "
        "paired mean [95 % CI] | reading |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, method), seeds in sorted(pairs(records).items()):
        both = {s: v for s, v in seeds.items() if len(v) == 2}
        if not both:
            lines.append(f"| {task} | {method} | 0 | – | – | – | not run yet |")
            continue
        diffs = [v["bf16"] - v["float32"] for v in both.values()]
        low, high = bootstrap_ci(diffs) if len(diffs) > 1 else (float("nan"), float("nan"))
        reading = "tie" if low <= 0 <= high else ("bf16 better" if low > 0 else "bf16 worse")
        if len(diffs) < 3:
            reading = "too few seeds"
        f32 = statistics.median(v["float32"] for v in both.values())
        b16 = statistics.median(v["bf16"] for v in both.values())
        lines.append(
            f"| {task} | {method} | {len(both)} | {f32:.4f} | {b16:.4f} | "
            f"{statistics.fmean(diffs):+.4f} [{low:+.4f}, {high:+.4f}] | {reading} |"
        )
    return lines


def main() -> None:
    runs = ROOT / "runs"
    records = collect(runs) if runs.is_dir() else []
    lines = [
        "# bf16 against float32 (issue 18's accuracy check)",
        "",
        "Plain fine-tuning and SMART (`ball` projection) on RTE and MRPC, seeds 1-3, the GLUE "
        "study's settings, once in float32 and once with `--bf16`; dev accuracy at the best "
        "epoch, paired by seed. Written by `.venv/bin/python results/precision-check/"
        "write_results.py` from `results/precision-check/runs` (a GPU's runs: "
        "`scripts/gpu/check.sh`).",
        "",
        *(rows(records) if records else ["No run has finished: this check needs a GPU."]),
    ]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
