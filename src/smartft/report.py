"""`smartft report RUNS_DIR [RUNS_DIR ...]`: per task and method, the main metric over seeds,
the difference to plain fine-tuning with a paired interval and verdict, plots, and a JSON summary.

Statistics are over seeds, never a best seed alone: median, mean, sample std, min, max, n. Each
run is read at the end of its training budget: a run that kept its best epoch on dev
(`load_best_model_at_end` with dev as the evaluation split) is read from its last evaluation in
`metrics.jsonl` instead, since picking the epoch on dev reads dev more than once (the rule and
its reasons: docs/verdicts.md). Against the baseline (plain) the seeds are paired: the mean
paired difference with a 95 % paired t-interval, whose level holds at any number of seeds (a
percentile bootstrap over 3 seeds is just [min, max] and calls a difference a third of the time
when there is none), an exact sign-flip p-value beside it, and the smallest difference the study
could have detected (80 % power at its n and spread), so that a tie says what it rules out.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray
from scipy import stats

from smartft.data.tasks import TASKS
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
    # the value comes from weights chosen by reading dev (a bare run folder of a best-on-dev run,
    # without the metrics.jsonl that holds its last evaluation)
    dev_selected: bool = False
    split: str = "dev"  # "holdout": a model-selection run's score on held-out training data
    # out-of-distribution scores (--ood_tasks): "paws" -> ("accuracy", value), each set's main
    ood: dict[str, tuple[str, float]] = field(default_factory=dict)
    chosen_on: str = "end"  # what chose the weights the run scored last (`chosen_on`)
    # a classifier's answers where `value` was scored (metrics.class_balance; nan: not recorded):
    # the share of its most common answer, and what answering the commonest gold label scores
    top_share: float = math.nan
    majority: float = math.nan
    # and per out-of-distribution set in `ood`: (top_share, majority)
    ood_balance: dict[str, tuple[float, float]] = field(default_factory=dict)


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
    p_sign_flip: float | None = None
    detectable: float | None = None  # the |Δ| found 80 % of the time at this n and spread
    paired_seeds: int = 0
    dev_selected: bool = False  # some seed's value was chosen on dev (see Record)
    top_share: float = math.nan  # median over seeds of Record.top_share
    majority: float = math.nan  # the commonest gold label's share (the same for every seed)


def collect(runs_dir: Path) -> list[Record]:
    """Every finished run below `runs_dir` (sweep folders, or plain `smartft train` outputs,
    `all_results.json` alone included), each read at the end of its budget (`final_metrics`)."""
    records = []
    for results_file in sorted(runs_dir.rglob("all_results.json")):
        folder = results_file.parent
        results = json.loads(results_file.read_text(encoding="utf-8"))
        axes: dict[str, Any] = {}
        if (folder / SWEEP_FILE).is_file():
            axes = yaml.safe_load((folder / SWEEP_FILE).read_text(encoding="utf-8")) or {}
        metric = results["main_metric"]
        metrics, dev_selected = final_metrics(folder, results)
        # --score_dev_at_end: dev's one reading of the checkpoint the held-out part chose
        prefix = "dev_" if f"dev_{metric}" in metrics else "eval_"
        value = metrics.get(f"{prefix}{metric}")
        held_out = results.get("eval_split") == "holdout" and f"dev_{metric}" not in metrics
        extra = {k: v for k, v in axes.items() if k not in ("task", "variant", "seed")}
        ood = ood_scores(results)
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
                dev_selected=dev_selected,
                split="holdout" if held_out else "dev",
                ood=ood,
                chosen_on=chosen_on(folder, results),
                top_share=_number(metrics.get(f"{prefix}top_prediction_share")),
                majority=_number(metrics.get(f"{prefix}majority_baseline")),
                ood_balance={name: _balance(results, f"ood_{name}_") for name in ood},
            )
        )
    return records


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _balance(results: dict[str, Any], prefix: str) -> tuple[float, float]:
    """(top_prediction_share, majority_baseline) under `prefix`; nan where not recorded."""
    return (
        _number(results.get(f"{prefix}top_prediction_share")),
        _number(results.get(f"{prefix}majority_baseline")),
    )


def ood_scores(results: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """A run's `ood_TASK_METRIC` figures: each out-of-distribution set's main metric."""
    found = {}
    for name, spec in TASKS.items():
        key = f"ood_{name}_{spec.main_metric}"
        if key in results and results[key] is not None:
            found[name] = (spec.main_metric, float(results[key]))
    return found


def ood_records(records: list[Record]) -> list[Record]:
    """The runs' out-of-distribution scores as records of their own, one "task → set" per
    set, so that they get the same statistics and paired verdicts as the dev scores. They were
    computed on the weights the run kept: chosen on dev where it kept its best epoch there."""
    return [
        replace(
            record,
            task=f"{record.task} → {name}",
            metric=metric,
            value=value,
            dev_selected=record.dev_selected or record.chosen_on == "dev",
            top_share=record.ood_balance[name][0] if name in record.ood_balance else math.nan,
            majority=record.ood_balance[name][1] if name in record.ood_balance else math.nan,
        )
        for record in records
        for name, (metric, value) in sorted(record.ood.items())
    ]


def chosen_on(folder: Path, results: dict[str, Any]) -> str:
    """What picked the weights a run's `eval_*` figures score: "dev" (the best evaluation on
    dev, `load_best_model_at_end`), "holdout" (the best on held-out training data) or "end"
    (the last update). Recorded by the run; for older runs, read from its config.yaml."""
    if "checkpoint_chosen_on" in results:
        return str(results["checkpoint_chosen_on"])
    config: dict[str, Any] = {}
    if (folder / "config.yaml").is_file():
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    best = config.get("load_best_model_at_end", True) and config.get("eval_strategy") != "no"
    if not best or results.get("best_step") in (None, results.get("train_steps")):
        return "end"
    return "holdout" if results.get("eval_split") == "holdout" else "dev"


def final_metrics(folder: Path, results: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The run's evaluation figures at the end of its budget, and whether they are dev-selected
    after all. A run that kept its best epoch on dev logged every evaluation, the last one at
    its final update: that one is its end-of-budget score. Runs chosen on held-out training data
    keep the chosen weights' figures (dev unread in the choice), and so do runs without
    metrics.jsonl (their figures are then marked dev-selected)."""
    if chosen_on(folder, results) != "dev":
        return results, upstream_chosen_on_dev(folder)
    log = folder / "metrics.jsonl"
    if not log.is_file():
        return results, True
    last = None
    for line in log.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("event") == "eval":
            last = event
    if last is None or last.get("step") != results.get("train_steps"):
        return results, True
    ended = {**results, **{k: v for k, v in last.items() if k.startswith("eval_")}}
    return ended, upstream_chosen_on_dev(folder)


def upstream_chosen_on_dev(folder: Path, depth: int = 4) -> bool:
    """Whether a run started from (`model_name_or_path`) or learned from (`teachers`) a saved
    run whose weights were chosen on dev: its own figures then depend on dev's choice too."""
    config_file = folder / "config.yaml"
    if depth == 0 or not config_file.is_file():
        return False
    config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    sources = [str(config.get("model_name_or_path") or "")]
    sources += str(config.get("teachers") or "").split(",")
    for source in filter(None, (s.strip() for s in sources)):
        results_file = Path(source) / "all_results.json"
        if not results_file.is_file():
            continue
        results = json.loads(results_file.read_text(encoding="utf-8"))
        if chosen_on(results_file.parent, results) == "dev":
            return True
        if upstream_chosen_on_dev(results_file.parent, depth - 1):
            return True
    return False


# The rules, in the words the results files quote them in.
VERDICT_RULE = (
    "Verdict: `better` / `worse` when the 95 % paired t-interval of the same-seed differences "
    "excludes 0, `tie` otherwise, `too few seeds` below 3 pairs (docs/verdicts.md). "
    "`detectable Δ` is the difference a study of this n and spread finds 80 % of the time: "
    "a tie rules out differences about that large, not smaller ones."
)
READING_RULE = (
    "Every run is read at the end of its training budget (its last evaluation, in its "
    "metrics.jsonl), never at its best epoch on dev: choosing the epoch on dev reads dev once "
    "per epoch and favours whichever method was given more epochs."
)

T_LEVEL = 0.95
POWER = 0.8


@dataclass(frozen=True)
class Comparison:
    """Paired differences summarized: the mean, its t-interval, an exact sign-flip p-value, the
    smallest difference detectable at this n, and the verdict."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    p_sign_flip: float
    detectable: float
    verdict: str


@functools.cache
def _t_quantile(q: float, df: int) -> float:
    return float(stats.t.ppf(q, df))


def t_interval(diffs: Sequence[float], level: float = T_LEVEL) -> tuple[float, float]:
    """The paired t-interval of the mean difference (exact for normal differences at any n)."""
    data = np.asarray(diffs, dtype=np.float64)
    n = len(data)
    if n < 2:
        return math.nan, math.nan
    half = _t_quantile(0.5 + level / 2, n - 1) * float(data.std(ddof=1)) / math.sqrt(n)
    mean = float(data.mean())
    return mean - half, mean + half


def detectable_difference(diffs: Sequence[float], level: float = T_LEVEL) -> float:
    """The true mean difference a paired t-test at this n and spread detects with 80 % power:
    (t_{1-α/2} + t_{power}) · sd / √n. A tie rules out differences about this large."""
    n = len(diffs)
    if n < 2:
        return math.nan
    t_alpha, t_power = _t_quantile(0.5 + level / 2, n - 1), _t_quantile(POWER, n - 1)
    return (t_alpha + t_power) * float(np.std(diffs, ddof=1)) / math.sqrt(n)


@functools.cache
def _signs(n: int) -> NDArray[np.float64]:
    """Every assignment of signs to n differences (2^n rows)."""
    grid = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    return grid.reshape(-1, n)


def sign_flip_p(diffs: Sequence[float], draws: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value of the paired sign-flip (permutation) test on the mean difference:
    exact up to 16 seeds, else from `draws` random flips. With 3 seeds it cannot go below 0.25."""
    data = np.asarray(diffs, dtype=np.float64)
    if len(data) == 0 or not np.any(data):
        return 1.0
    if len(data) <= 16:
        signs = _signs(len(data))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(draws, len(data)))
    observed = abs(data.mean())
    flipped = np.abs((signs * data).mean(axis=1))
    return float(np.mean(flipped >= observed - 1e-12))


MIN_PAIRED_SEEDS = 3


def compare(diffs: Sequence[float]) -> Comparison:
    """The paired comparison of one variant with the baseline over seeds. Better / worse when
    the t-interval excludes 0, else a tie; no verdict below 3 paired seeds."""
    n = len(diffs)
    low, high = t_interval(diffs)
    mean = statistics.fmean(diffs) if n else math.nan
    return Comparison(
        n, mean, low, high, sign_flip_p(diffs), detectable_difference(diffs), judge(n, low, high)
    )


def judge(n: int, low: float, high: float) -> str:
    """Better / worse when the interval excludes 0, else a tie; nothing below 3 paired seeds
    (two differences of one sign say little)."""
    if n < MIN_PAIRED_SEEDS:
        return "too few seeds" if n else ""
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "tie"


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
                top_share=_median_known([r.top_share for r in members]),
                majority=_median_known([r.majority for r in members]),
            )
        )
    by_key = {(c.task, c.setting, c.variant): c for c in cells}
    selected = {(r.task, r.setting, r.variant) for r in records if r.dev_selected}
    for cell in cells:
        cell.dev_selected = (cell.task, cell.setting, cell.variant) in selected
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
            found = compare(diffs)
            cell.ci_low, cell.ci_high = found.ci_low, found.ci_high
            cell.p_sign_flip, cell.detectable = found.p_sign_flip, found.detectable
    return cells


def _median_known(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return statistics.median(known) if known else math.nan


def _fmt(value: float | None, digits: int = 4, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def minutes(seconds: float, digits: int = 1) -> str:
    """A wall time in minutes; "–" where it is unknown (nan: e.g. every run resumed by code that
    did not record the time before the resume)."""
    return "–" if math.isnan(seconds) else f"{seconds / 60:.{digits}f} min"


def verdict(cell: Cell) -> str:
    """The cell's verdict against the baseline by the paired t-interval (`compare`)."""
    if cell.ci_low is None or cell.ci_high is None:
        return ""
    return judge(cell.paired_seeds, cell.ci_low, cell.ci_high)


def versus_text(cell: Cell | None, absent: str, with_detectable: bool = False) -> str:
    """A variant against the baseline in one table cell: the mean same-seed difference, its
    interval and verdict, and the number of pairs. One pair has no interval, but it has run: the
    cell says so rather than reading like a run still to come."""
    if cell is None or cell.diff_mean_paired is None:
        return absent
    diff = f"{cell.diff_mean_paired:+.4f}"
    if cell.ci_low is None or cell.ci_high is None:
        return f"{diff} ({cell.paired_seeds} pair: no interval yet)"
    pairs = str(cell.paired_seeds)
    if with_detectable and cell.detectable is not None:
        pairs = f"{cell.paired_seeds} seeds; detectable {cell.detectable:.4f}"
    return f"{diff} [{cell.ci_low:+.4f}, {cell.ci_high:+.4f}] {verdict(cell)} ({pairs})"


DEV_SELECTED_MARK = "\\*"  # a markdown asterisk


def tally(named: Sequence[tuple[str, Cell]]) -> str:
    """Verdicts in words: "better on 1 (stsb), tie on 3, worse on 0" for (name, cell) pairs,
    then "too few pairs yet on 1 (rte)" for cells whose pairs cannot carry a verdict yet."""
    said = [(name, verdict(cell)) for name, cell in named]
    parts = []
    for word in ("better", "tie", "worse"):
        names = [name for name, v in said if v == word]
        listed = f" ({', '.join(names)})" if names and word != "tie" else ""
        parts.append(f"{word} on {len(names)}{listed}")
    early = [name for name, cell in named if 0 < cell.paired_seeds < MIN_PAIRED_SEEDS]
    if early:  # pairs have landed but a verdict needs MIN_PAIRED_SEEDS: say so, not "0, 0, 0"
        parts.append(f"too few pairs yet on {len(early)} ({', '.join(early)})")
    return ", ".join(parts)


def markdown(cells: list[Cell], baseline: str = "plain") -> str:
    """A table per task: the seeds' statistics, and each variant against the baseline."""
    lines = []
    for (task, setting), group in _by_task(cells).items():
        title = f"{task}" + (f" ({setting})" if setting else "")
        lines += [
            f"### {title}: {group[0].metric}",
            "",
            f"| method | n | median | mean | std | min | max | Δ median vs {baseline} | "
            "Δ mean (paired) [95% t-interval] | sign-flip p | detectable Δ | verdict | "
            "median run time |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [_row(c) for c in group]
        lines.append("")
    lines += one_answer_notes(cells)
    if any(c.dev_selected for c in cells):
        lines += [
            f"{DEV_SELECTED_MARK} best epoch on dev: runs kept without metrics.jsonl, so their "
            "end-of-budget score is unknown; dev was read to choose the figure (not a fair "
            "comparison).",
            "",
        ]
    return "\n".join(lines)


ONE_ANSWER = 0.95  # a median share of one answer at or above this is flagged under the table


def one_answer_notes(cells: list[Cell]) -> list[str]:
    """A line under the tables for each method whose runs give nearly every example one answer:
    its score then sits near the constant predictor's, and a difference to another such method
    measures how far it moved that bias rather than what it learned."""
    notes = [
        f"{c.task}{f' ({c.setting})' if c.setting else ''}, `{c.variant}`: "
        f"{c.top_share:.1%} of answers are one label (median over seeds); answering the "
        f"commonest label everywhere scores accuracy {c.majority:.4f} here."
        for c in cells
        if c.top_share >= ONE_ANSWER
    ]
    if not notes:
        return []
    return (
        ["Near one answer (a score at the constant predictor's floor):", ""]
        + [f"- {note}" for note in notes]
        + [""]
    )


def _row(c: Cell) -> str:
    ci = (
        ""
        if c.ci_low is None
        else f" [{_fmt(c.ci_low, signed=True)}, {_fmt(c.ci_high, signed=True)}]"
    )
    mark = DEV_SELECTED_MARK if c.dev_selected else ""
    return (
        f"| {c.variant}{mark} | {len(c.values)} | {_fmt(c.median)} | "
        f"{_fmt(c.mean)} | {_fmt(c.std)} | {_fmt(c.min)} | {_fmt(c.max)} | "
        f"{_fmt(c.diff_median, signed=True)} | {_fmt(c.diff_mean_paired, signed=True)}{ci} | "
        f"{_fmt(c.p_sign_flip, 3)} | {_fmt(c.detectable)} | {verdict(c)} | "
        f"{minutes(c.runtime_s)} |"
    )


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
            log = record.folder / "metrics.jsonl"
            if record.task != task or record.setting != setting or not log.is_file():
                continue  # (a run kept as all_results.json alone has no curves)
            events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
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
    shifted = summarize(ood_records(records), baseline)
    if shifted:
        text += "\n## Out of distribution\n\n" + markdown(shifted, baseline)
    (out / "report.md").write_text(text + "\n", encoding="utf-8")
    summary = [asdict(c) for c in cells + shifted]
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


# Figures quoted in README.md and docs/ live between markers that name the results script which
# writes them; tests/test_readme.py checks every such block against its script.
BLOCK = re.compile(
    r"<!-- begin (?P<name>[\w-]+): written by (?P<script>\S+) -->\n(?P<body>.*?)"
    r"<!-- end (?P=name) -->",
    re.DOTALL,
)


def written_blocks(text: str) -> list[tuple[str, str, str]]:
    """(name, script, body) of every written block in a page."""
    return [(m["name"], m["script"], m["body"].strip()) for m in BLOCK.finditer(text)]


def write_blocks(pages: Sequence[Path], blocks: dict[str, str]) -> list[Path]:
    """Put each block's text between its markers wherever a page has them; returns the pages
    changed. A page holds a block once its author has placed the two markers."""
    changed = []
    for page in pages:
        text = page.read_text(encoding="utf-8")

        def fill(match: re.Match[str]) -> str:
            body = blocks.get(match["name"])
            if body is None:
                return match[0]
            head = match[0][: match.start("body") - match.start()]
            return f"{head}{body.strip()}\n<!-- end {match['name']} -->"

        new = BLOCK.sub(fill, text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed.append(page)
    return changed


def doc_pages(root: Path = Path(".")) -> list[Path]:
    """README.md and every page of docs/: where written blocks may stand."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def publish(out: Path, lines: list[str], blocks: dict[str, str]) -> None:
    """A results script's last step: write its results file, then the blocks README.md and
    docs/ quote from it, and say what was written."""
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    changed = write_blocks(doc_pages(), blocks)
    print(f"wrote {out}" + "".join(f" and {page}" for page in changed))
