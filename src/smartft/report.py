"""`smartft report RUNS_DIR [RUNS_DIR ...]`: per task and method, the main metric over seeds,
the difference to plain fine-tuning with a paired significance indication, plots, and a JSON
summary.

Statistics are over seeds, never a best seed alone: median, mean, sample std, min, max, n. Against
the baseline (plain) the seeds are paired: the mean paired difference, a 95 % bootstrap interval
over seeds and a two-sided Wilcoxon signed-rank p-value (with 3 seeds no p can fall below 0.25, so
read the interval and the spread as much as the p).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats

from smartft.errors import ConfigError
from smartft.metrics import json_safe
from smartft.sweep import SWEEP_FILE


@dataclass
class Record:
    """One finished run."""

    folder: Path
    task: str
    variant: str
    seed: int
    setting: str  # other grid axes, e.g. "train_fraction=0.1"; "" for none
    metric: str
    value: float
    runtime_s: float
    # resumed by code that did not record the time before the resume: runtime_s is the last part
    runtime_partial: bool = False


@dataclass
class Cell:
    """A task × setting × variant: its seeds' values and their statistics."""

    task: str
    setting: str
    variant: str
    metric: str
    seeds: list[int]
    values: list[float]
    median: float
    mean: float
    std: float
    min: float
    max: float
    runtime_s: float  # median over the runs whose whole wall time is known (nan: none)
    diff_median: float | None = None
    diff_mean_paired: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_wilcoxon: float | None = None
    paired_seeds: int = 0


def collect(runs_dir: Path) -> list[Record]:
    """Every finished run below `runs_dir` (sweep folders, or plain `smartft train` outputs)."""
    records = []
    for results_file in sorted(runs_dir.rglob("all_results.json")):
        folder = results_file.parent
        results = json.loads(results_file.read_text(encoding="utf-8"))
        axes: dict[str, Any] = {}
        if (folder / SWEEP_FILE).is_file():
            axes = yaml.safe_load((folder / SWEEP_FILE).read_text(encoding="utf-8")) or {}
        metric = results["main_metric"]
        value = results.get(f"eval_{metric}")
        extra = {k: v for k, v in axes.items() if k not in ("task", "variant", "seed")}
        records.append(
            Record(
                folder=folder,
                task=str(axes.get("task", results["task"])),
                variant=str(axes.get("variant", results["method"])),
                seed=int(axes.get("seed", results["seed"])),
                setting=",".join(f"{k}={v}" for k, v in sorted(extra.items())),
                metric=metric,
                value=math.nan if value is None else float(value),
                runtime_s=float(results.get("train_runtime_s", math.nan)),
                runtime_partial=bool(results.get("resumed_from"))
                and results.get("train_runtime_before_resume_s") is None,
            )
        )
    return records


def bootstrap_ci(diffs: list[float], resamples: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean paired difference, resampling seeds."""
    data = np.asarray(diffs)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def wilcoxon_p(diffs: list[float]) -> float:
    if all(d == 0 for d in diffs):
        return 1.0
    return float(stats.wilcoxon(diffs, zero_method="zsplit").pvalue)


def summarize(records: list[Record], baseline: str = "plain") -> list[Cell]:
    groups: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for record in records:
        groups[(record.task, record.setting, record.variant)].append(record)
    cells: list[Cell] = []
    for (task, setting, variant), members in sorted(groups.items()):
        members.sort(key=lambda r: r.seed)
        values = [r.value for r in members]
        finite = [v for v in values if not math.isnan(v)] or [math.nan]
        cells.append(
            Cell(
                task=task,
                setting=setting,
                variant=variant,
                metric=members[0].metric,
                seeds=[r.seed for r in members],
                values=values,
                median=statistics.median(finite),
                mean=statistics.fmean(finite),
                std=statistics.stdev(finite) if len(finite) > 1 else math.nan,
                min=min(finite),
                max=max(finite),
                runtime_s=statistics.median(
                    [r.runtime_s for r in members if not r.runtime_partial] or [math.nan]
                ),
            )
        )
    by_key = {(c.task, c.setting, c.variant): c for c in cells}
    for cell in cells:
        base = by_key.get((cell.task, cell.setting, baseline))
        if base is None or cell.variant == baseline:
            continue
        cell.diff_median = cell.median - base.median
        base_by_seed = dict(zip(base.seeds, base.values, strict=True))
        diffs = [
            v - base_by_seed[s]
            for s, v in zip(cell.seeds, cell.values, strict=True)
            if s in base_by_seed and not math.isnan(v) and not math.isnan(base_by_seed[s])
        ]
        cell.paired_seeds = len(diffs)
        if diffs:
            cell.diff_mean_paired = statistics.fmean(diffs)
        if len(diffs) >= 2:
            cell.ci_low, cell.ci_high = bootstrap_ci(diffs)
            cell.p_wilcoxon = wilcoxon_p(diffs)
    return cells


def _fmt(value: float | None, digits: int = 4, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def minutes(seconds: float, digits: int = 1) -> str:
    """A wall time in minutes; "–" where it is unknown (nan: e.g. every run resumed by code that
    did not record the time before the resume)."""
    return "–" if math.isnan(seconds) else f"{seconds / 60:.{digits}f} min"


MIN_PAIRED_SEEDS = 3


def verdict(cell: Cell) -> str:
    """Better / worse when the bootstrap interval excludes 0, else a tie within the noise; no
    verdict below 3 paired seeds (two differences of one sign already exclude 0)."""
    if cell.ci_low is None or cell.ci_high is None:
        return ""
    if cell.paired_seeds < MIN_PAIRED_SEEDS:
        return "too few seeds"
    if cell.ci_low > 0:
        return "better"
    if cell.ci_high < 0:
        return "worse"
    return "tie"


def markdown(cells: list[Cell], baseline: str = "plain") -> str:
    lines = []
    for (task, setting), group in _by_task(cells).items():
        title = f"{task}" + (f" ({setting})" if setting else "")
        lines += [
            f"### {title}: {group[0].metric}",
            "",
            f"| method | n | median | mean | std | min | max | Δ median vs {baseline} | "
            "Δ mean (paired) [95% CI] | Wilcoxon p | verdict | median run time |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in group:
            ci = (
                ""
                if c.ci_low is None
                else f" [{_fmt(c.ci_low, signed=True)}, {_fmt(c.ci_high, signed=True)}]"
            )
            lines.append(
                f"| {c.variant} | {len(c.values)} | {_fmt(c.median)} | {_fmt(c.mean)} | "
                f"{_fmt(c.std)} | {_fmt(c.min)} | {_fmt(c.max)} | "
                f"{_fmt(c.diff_median, signed=True)} | "
                f"{_fmt(c.diff_mean_paired, signed=True)}{ci} | {_fmt(c.p_wilcoxon, 3)} | "
                f"{verdict(c)} | {minutes(c.runtime_s)} |"
            )
        lines.append("")
    return "\n".join(lines)


def _by_task(cells: list[Cell]) -> dict[tuple[str, str], list[Cell]]:
    grouped: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        grouped[(cell.task, cell.setting)].append(cell)
    return grouped


def plot(records: list[Record], cells: list[Cell], out: Path) -> list[Path]:
    """Per task: a box + strip plot of seeds per method, and training curves. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib not installed (pip install 'smartft[plots]'); no plots")
        return []
    written = []
    for (task, setting), group in _by_task(cells).items():
        slug = task + (f"-{setting}".replace("=", "").replace(",", "-") if setting else "")
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(group), 3.6))
        ax.boxplot([c.values for c in group], widths=0.5)
        for i, cell in enumerate(group, start=1):
            ax.scatter([i] * len(cell.values), cell.values, s=18, zorder=3, alpha=0.8)
        ax.set_xticks(range(1, len(group) + 1), [c.variant for c in group], rotation=20)
        ax.set_ylabel(f"dev {group[0].metric}")
        ax.set_title(f"{task}{' ' + setting if setting else ''}: seeds per method")
        fig.tight_layout()
        path = out / f"{slug}-seeds.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

        fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
        colors = {c.variant: f"C{i}" for i, c in enumerate(group)}
        for record in records:
            if record.task != task or record.setting != setting:
                continue
            events = [
                json.loads(line)
                for line in (record.folder / "metrics.jsonl")
                .read_text(encoding="utf-8")
                .splitlines()
            ]
            train = [e for e in events if e["event"] == "train"]
            evals = [e for e in events if e["event"] == "eval"]
            label = (
                record.variant
                if record.seed == min(r.seed for r in records if r.variant == record.variant)
                else None
            )
            color = colors.get(record.variant)
            few = 50  # markers where they can be told apart; a line alone for long curves
            loss_ax.plot(
                [e["step"] for e in train],
                [e["task_loss"] for e in train],
                color=color,
                alpha=0.6,
                lw=1,
                marker="o" if len(train) <= few else None,
                ms=3,
                label=label,
            )
            metric_ax.plot(
                [e["step"] for e in evals],
                [e.get(f"eval_{record.metric}") for e in evals],
                color=color,
                alpha=0.6,
                lw=1,
                marker="o" if len(evals) <= few else None,
                ms=3,
                label=label,
            )
        loss_ax.set(xlabel="update", ylabel="task loss", title=f"{task}: training loss")
        metric_ax.set(xlabel="update", ylabel=f"dev {group[0].metric}", title="dev metric")
        for axis in (loss_ax, metric_ax):
            if axis.get_legend_handles_labels()[1]:
                axis.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{slug}-curves.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def collect_many(runs_dirs: Sequence[Path]) -> list[Record]:
    """The finished runs below several folders, e.g. new methods' runs plus an earlier study's
    plain and SMART runs as their baseline; a run (task, setting, variant, seed) found twice is
    an error rather than a silent pick."""
    records: list[Record] = []
    seen: dict[tuple[str, str, str, int], Path] = {}
    for runs_dir in runs_dirs:
        if not runs_dir.is_dir():
            raise ConfigError(f"report: {runs_dir} is not a folder")
        for record in collect(runs_dir):
            key = (record.task, record.setting, record.variant, record.seed)
            if key in seen:
                raise ConfigError(
                    f"report: {record.folder} and {seen[key]} are the same run "
                    f"({'/'.join(str(k) for k in key if k != '')}); pass only one of them"
                )
            seen[key] = record.folder
            records.append(record)
    return records


def report(
    runs_dirs: Path | Sequence[Path],
    out: Path | None = None,
    baseline: str = "plain",
    plots: bool = True,
) -> tuple[str, list[Path]]:
    """Write report.md, report.json and the PNGs to `out` (default: the first runs folder)."""
    folders = [runs_dirs] if isinstance(runs_dirs, Path) else list(runs_dirs)
    records = collect_many(folders)
    if not records:
        raise ConfigError(
            "report: no finished runs (all_results.json) under "
            + ", ".join(str(f) for f in folders)
        )
    return write_report(records, out or folders[0], baseline, plots)


def write_report(
    records: list[Record], out: Path, baseline: str = "plain", plots: bool = True
) -> tuple[str, list[Path]]:
    """`report` for records already collected, e.g. a results script's chosen subset."""
    out.mkdir(parents=True, exist_ok=True)
    cells = summarize(records, baseline)
    text = markdown(cells, baseline)
    (out / "report.md").write_text(text + "\n", encoding="utf-8")
    summary = [asdict(c) for c in cells]
    (out / "report.json").write_text(
        json.dumps(json_safe(summary), indent=2) + "\n", encoding="utf-8"
    )
    images = plot(records, cells, out) if plots else []
    return text, [out / "report.md", out / "report.json", *images]


def runs_table(records: list[Record], root: Path) -> str:
    """A markdown row per run: its folder (relative to `root`), score, wall time and median step
    time, so that a results file shows what every figure cost. A run resumed from a checkpoint
    that predates `train_runtime_before_resume_s` knows only the wall time of the part after
    its last resume, and its row says so rather than understate the cost."""
    lines = ["| run | score | wall time (train) | median step |", "|---|---|---|---|"]
    for record in sorted(records, key=lambda r: r.folder.parts):
        results = json.loads((record.folder / "all_results.json").read_text(encoding="utf-8"))
        name = record.folder.resolve().relative_to(root.resolve())
        resumed = results.get("resumed_from")
        part = f" (after resuming from {Path(resumed).name})" if record.runtime_partial else ""
        lines.append(
            f"| {name} | {record.metric} {record.value:.4f} | {record.runtime_s / 60:.1f} min"
            f"{part} | {results.get('step_time_median_s', math.nan):.3f} s |"
        )
    return "\n".join(lines)
