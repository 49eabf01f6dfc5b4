"""Writes results/smart-study.md, the SMART study's results file (issue 19), from its committed
runs: the protocol, the pilot (which short-run options), phase 1 (every method's settings chosen
on held-out training data), the radius grid, and phase 2 (5 seeds on dev at the chosen settings,
the ablation, the low-resource rows) with medians, spread, paired differences to plain, the
verdict on SMART's defaults, plots, and every run with its cost. Parts not run yet say so. Run
from the repository root, during or after the study:

    .venv/bin/python results/smart-study/write_results.py
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from choose_settings import GRID, TASKS, choose, selected_table

from smartft.data.dataset import read_split
from smartft.data.tasks import get_task
from smartft.report import (
    MIN_PAIRED_SEEDS,
    VERDICT_RULE,
    Cell,
    Record,
    collect,
    markdown,
    minutes,
    ood_records,
    plot,
    publish,
    runs_table,
    summarize,
    tally,
    verdict,
    versus_text,
)
from smartft.sweep import build, expand, from_file, is_done

ROOT = Path("results/smart-study")
OUT = Path("results/smart-study.md")
OOD_DATA = Path("../shared/data/ood")  # PAWS's label counts, for reading its accuracies
PLOTS = ROOT / "plots"
LOW_RESOURCE = "low-resource"  # the setting of the rows with 10 % of train, 300 updates
ABLATION = ("smart-rs-only", "smart-bregman-only", "smart-fast", "smart-paper")


def progress(config: Path) -> str:
    """ "k of n runs" for one sweep file ("not written yet" before choose_settings.py makes it)."""
    if not config.is_file():
        return "not written yet (choose_settings.py writes it as tasks complete phase 1)"
    sweep = build(from_file(str(config)))
    runs = expand(sweep)
    missing = [run for run in runs if not is_done(sweep.runs_dir / run.name)]
    tasks = sorted({run.axes["task"] for run in runs}, key=TASKS.index)
    text = f"{len(runs) - len(missing)} of {len(runs)} runs finished (tasks: {', '.join(tasks)})"
    if missing and len(missing) < len(runs):
        seeds: dict[str, dict[str, list[int]]] = {}
        for run in missing:
            by_task = seeds.setdefault(str(run.axes["variant"]), {})
            by_task.setdefault(str(run.axes["task"]), []).append(int(run.axes["seed"]))
        parts = []
        for variant, by_task in seeds.items():
            tasks_of: dict[str, list[str]] = {}
            for task, s in by_task.items():
                tasks_of.setdefault(seed_ranges(s), []).append(task)
            parts += [f"`{variant}` seeds {r} ({', '.join(t)})" for r, t in tasks_of.items()]
        text += "; not run: " + "; ".join(parts)
    return text


def seed_ranges(seeds: list[int]) -> str:
    """Seeds as short ranges, "1, 3-5", so a progress line stays one readable line."""
    spans: list[list[int]] = []
    for seed in sorted(set(seeds)):
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def records_of(folder: Path) -> list[Record]:
    return collect(folder) if folder.is_dir() else []


def tail_mean(record: Record, key: str, tail: float = 0.1) -> float:
    """Mean of `key` over the last `tail` of a run's logged training events: e.g. its task loss,
    how far it fitted the training data (the issue's first finding: SMART ended every short run
    higher than plain), or SMART's R_s at the end."""
    lines = (record.folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    values = [e[key] for e in map(json.loads, lines) if e["event"] == "train" and key in e]
    if not values:
        return math.nan
    return statistics.fmean(values[-max(1, round(tail * len(values))) :])


def single_seed_table(records: list[Record], note: dict[str, str]) -> str:
    """One row per (task, variant) of a one-seed grid: held-out score, end-of-run task loss, the
    SMART regularizer's size at the end, and the run's wall time; per task, the variants `note`
    marks (reference runs) come first."""
    rows = [
        "| task | variant | held-out score | task loss, last 10 % | R_s, last 10 % | run time |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (r.task, r.variant not in note, r.variant)):
        rs = tail_mean(r, "smart_rs")
        rows.append(
            f"| {r.task} | {r.variant}{note.get(r.variant, '')} | {r.metric} {r.value:.4f} | "
            f"{tail_mean(r, 'task_loss'):.3f} | {'–' if math.isnan(rs) else f'{rs:.2e}'} | "
            f"{'≥ ' if r.runtime_partial else ''}{minutes(r.runtime_s, 0)} |"
        )
    return "\n".join(rows)


def rows_of(records: list[Record]) -> list[tuple[str, list[Record]]]:
    """(row label, its runs) per task, the full-data rows first, then the low-resource ones."""
    out = []
    for setting in ("", LOW_RESOURCE):
        for task in TASKS:
            runs = [r for r in records if r.task == task and r.setting == setting]
            if runs:
                out.append((f"{task} ({setting})" if setting else task, runs))
    return out


def fit_table(records: list[Record]) -> str:
    """Median over seeds of each run's end-of-training task loss, per task and method."""
    variants = sorted({r.variant for r in records})
    rows = ["| task | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for label, runs in rows_of(records):
        cells = []
        for variant in variants:
            losses = [tail_mean(r, "task_loss") for r in runs if r.variant == variant]
            cells.append(f"{statistics.median(losses):.3f}" if losses else "–")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def terms_table(records: list[Record]) -> str:
    """Median over seeds of SMART's two weighted terms at the end of training, beside its task
    loss: which of them the optimizer still pays for when the run ends."""
    rows = [
        "| task | method | task loss | λ_s·R_s | μ·D_Breg |",
        "|---|---|---|---|---|",
    ]
    keys = ("task_loss", "loss_smart", "loss_bregman")
    for label, runs in rows_of(records):
        for variant in sorted({r.variant for r in runs if r.variant != "plain"}):
            cells = []
            for key in keys:
                values = [tail_mean(r, key) for r in runs if r.variant == variant]
                values = [v for v in values if not math.isnan(v)]
                cells.append(f"{statistics.median(values):.4f}" if values else "–")
            rows.append(f"| {label} | {variant} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def radius_references(selection: list[Record], tasks: set[str]) -> list[Record]:
    """Phase 1's runs that share the radius grid's settings (learning rate 5e-5, 3 epochs, λ_s 1,
    seed 1, the same held-out part): plain and SMART at the paper's radius, the grid's baselines."""
    settings = {
        "plain": "learning_rate=5e-05,num_train_epochs=3",
        "smart": "learning_rate=5e-05,num_train_epochs=3,smart_lambda=1",
    }
    return [
        r
        for r in selection
        if r.task in tasks and r.seed == 1 and settings.get(r.variant) == r.setting
    ]


def final_records() -> list[Record]:
    """Phase 2's runs keyed for pairing: the chosen learning rate, epochs and lambda differ
    between methods, so they leave the setting; the low-resource rows keep a setting of their
    own."""
    out = []
    for record in records_of(ROOT / "final"):
        setting = LOW_RESOURCE if "train_fraction" in record.setting else ""
        out.append(replace(record, setting=setting))
    return out


def defaults_verdict(cells: list[Cell], variant: str) -> list[str]:
    """The issue's bar for SMART's defaults: never worse than plain beyond the paired interval
    on any of the four tasks, better on at least two (judged on 5 paired seeds)."""
    runs = {c.task: c for c in cells if c.variant == variant and not c.setting}
    if any(t not in runs or runs[t].paired_seeds < 5 for t in TASKS):
        done = sum(t in runs and runs[t].paired_seeds >= 5 for t in TASKS)
        return [f"`{variant}`: not decidable yet (5 paired seeds with plain on {done} of 4 tasks)."]
    verdicts = {t: verdict(runs[t]) for t in TASKS}
    worse = [t for t, v in verdicts.items() if v == "worse"]
    better = [t for t, v in verdicts.items() if v == "better"]
    met = not worse and len(better) >= 2
    return [
        f"`{variant}` per task: " + ", ".join(f"{t} {v}" for t, v in verdicts.items()) + ".",
        "",
        f"**The bar {'is met' if met else 'is not met'} by `{variant}`** (never worse on any task: "
        f"{'yes' if not worse else 'no, ' + ', '.join(worse)}; better on at least two: "
        f"{len(better)} of 4).",
    ]


CANDIDATES = {"smart": "the short-run recipe", "smart-paper": "the paper's settings"}
HALF = "smart-rs-only"  # judged by the bar too; not a candidate: it switches the teacher off


def defaults_choice(records: list[Record]) -> list[str]:
    """Which settings `--method smart` should default to, where neither meets the bar: the
    short-run recipe (`smart`) and the paper's settings (`smart-paper`, today's defaults), each
    against plain on the seeds all three share; the one worse than plain on fewer tasks does less
    harm (then: better on more tasks, then the larger mean paired difference over the tasks)."""
    shown = (*CANDIDATES, HALF)
    rows = [
        "| task | paired seeds | " + " | ".join(f"{v} − plain [95% CI]" for v in shown) + " |",
        "|---|---|" + "---|" * len(shown),
    ]
    score = {v: [0, 0, 0.0] for v in shown}  # worse, better, sum of paired differences
    half_done = 0
    decided = 0
    for task in TASKS:
        runs = [r for r in records if r.task == task and not r.setting]
        seeds = set.intersection(
            *({r.seed for r in runs if r.variant == v} for v in ("plain", *CANDIDATES))
        )
        if len(seeds) < MIN_PAIRED_SEEDS:
            continue
        decided += 1
        half_seeds = {r.seed for r in runs if r.variant == HALF}
        half_done += seeds <= half_seeds
        cells = {
            c.variant: c
            for c in summarize([r for r in runs if r.seed in seeds])
            if c.variant in CANDIDATES or (c.variant == HALF and seeds <= half_seeds)
        }
        text = []
        for variant in shown:
            if variant not in cells:
                text.append("not on these seeds yet")
                continue
            cell = cells[variant]
            v = verdict(cell)
            score[variant][0] += v == "worse"
            score[variant][1] += v == "better"
            score[variant][2] += cell.diff_mean_paired or 0.0
            text.append(
                f"{cell.diff_mean_paired:+.4f} [{cell.ci_low:+.4f}, {cell.ci_high:+.4f}] {v}"
            )
        rows.append(f"| {task} | {len(seeds)} | " + " | ".join(text) + " |")
    if decided < len(TASKS):
        return [
            f"Not decidable yet: plain, `smart` and `smart-paper` share {MIN_PAIRED_SEEDS} seeds "
            f"on {decided} of {len(TASKS)} tasks.",
            "",
            *(rows if decided else []),
        ]
    best = min(CANDIDATES, key=lambda v: (score[v][0], -score[v][1], -score[v][2]))
    return [
        *rows,
        "",
        f"**Least harm: {CANDIDATES[best]} (`{best}`)**, worse than plain on {score[best][0]} "
        f"of {len(TASKS)} tasks and better on {score[best][1]} (the other: worse on "
        + ", ".join(f"{score[v][0]}, better on {score[v][1]}" for v in CANDIDATES if v != best)
        + ").",
        "",
        (
            f"R_s alone (`{HALF}`: half of SMART, so not a candidate for `--method smart`) on "
            f"the same seeds: worse than plain on {score[HALF][0]} of {len(TASKS)} tasks and "
            f"better on {score[HALF][1]}; summed paired differences over the tasks "
            f"{score[HALF][2]:+.4f} against {score[best][2]:+.4f} for `{best}`."
            if half_done == len(TASKS)
            else f"R_s alone (`{HALF}`) shares these seeds on {half_done} of {len(TASKS)} tasks."
        ),
    ]


def phase2(records: list[Record]) -> list[str]:
    if not records:
        return ["## Phase 2: dev, 5 seeds at the chosen settings", "", "No run has finished yet."]
    cells = summarize(records)
    main = [c for c in cells if not c.setting]
    versus_smart = summarize(
        [r for r in records if not r.setting and r.variant != "plain"], baseline="smart"
    )
    PLOTS.mkdir(parents=True, exist_ok=True)
    images = plot(records, cells, PLOTS)
    return [
        "## Phase 2: SMART's defaults against plain (dev, 5 seeds)",
        "",
        "The study's SMART (`smart`, the short-run recipe) and the paper's settings "
        "(`smart-paper`, today's defaults), each against plain on 5 seeds; and R_s alone "
        "(`smart-rs-only`: `--bregman_mu 0`, so not SMART but half of it, the one ablated "
        "variant run at seeds 4 and 5 as well).",
        *(line for v in (*CANDIDATES, HALF) for line in ("", *defaults_verdict(cells, v))),
        "",
        "## Phase 2: which defaults do least harm",
        "",
        "Neither candidate has to meet the bar for this: the short-run recipe and the paper's "
        "settings against plain on the seeds the three share (the ablation runs seeds 1-3 first); "
        "R_s alone is shown beside them.",
        "",
        *defaults_choice(records),
        "",
        "## Phase 2: every method against plain (paired by seed)",
        "",
        markdown(main),
        "## Phase 2: the ablation against full SMART (paired by seed)",
        "",
        markdown([c for c in versus_smart if c.variant in ABLATION], baseline="smart")
        or "No ablation run has finished yet.\n",
        "## Phase 2: low-resource rows (10 % of the training set, 300 updates)",
        "",
        markdown([c for c in cells if c.setting == LOW_RESOURCE])
        or "No low-resource run has finished yet.\n",
        "## Phase 2: how far each method fitted the training data",
        "",
        "Mean task loss over the last 10 % of the logged updates, median over seeds:",
        "",
        fit_table(records),
        "",
        "SMART's terms as added to the loss, over the same last 10 % (median over seeds; – where "
        "a variant switches the term off). R_s runs its extra passes under fresh dropout masks "
        "(`smart_dropout independent`, the paper's), so it also counts the disagreement between "
        "two dropout masks; without dropout the paper's ball of 1e-5 gives an R_s many orders of "
        "magnitude smaller (`benchmarks/results/epsilon.md`), so here it is mostly a "
        "dropout-consistency penalty:",
        "",
        terms_table(records),
        "",
        "Plots (seeds per method; training loss and dev curves): "
        + ", ".join(f"`{p}`" for p in images),
    ]


NAMES = {"rte": "RTE", "mrpc": "MRPC", "stsb": "STS-B", "cola": "CoLA", "paws": "PAWS"}


def ood_scored(final: list[Record]) -> tuple[list[Record], list[Record]]:
    """(the reruns of ood.yaml, every run with out-of-distribution scores)."""
    reruns = [replace(r, setting="") for r in records_of(ROOT / "ood")]
    return reruns, reruns + [r for r in final if r.ood and not r.setting]


def headline(final: list[Record]) -> str:
    """SMART − plain per task on dev and out of distribution: the README's table."""
    rows = [
        "| task (metric) | plain: median (seeds) | SMART, the paper's settings − plain "
        "[95 % t-interval] | SMART, short-run teacher − plain | detectable Δ (paper's) |",
        "|---|---|---|---|---|",
    ]
    _, scored = ood_scored(final)
    groups = [
        (summarize([r for r in final if not r.setting]), TASKS),
        (summarize(ood_records(scored)), ("mrpc → paws", "stsb → sick")),
    ]
    for cells, tasks in groups:
        by_key = {(c.task, c.variant): c for c in cells}
        for task in tasks:
            plain = by_key.get((task, "plain"))
            label = " → ".join(NAMES.get(t, t.upper()) for t in task.split(" → "))
            if plain is None:
                rows.append(f"| {label} | not run yet | | | |")
                continue

            paper, short = (by_key.get((task, v)) for v in ("smart-paper", "smart"))
            detectable = "–" if paper is None or paper.detectable is None else paper.detectable
            rows.append(
                f"| {label} ({plain.metric}) | {plain.median:.4f} ({len(plain.values)}) | "
                f"{versus_text(paper, 'not run yet')} | {versus_text(short, 'not run yet')} | "
                + (f"{detectable:.4f} |" if isinstance(detectable, float) else "– |")
            )
    return "\n".join(rows)


def blocks(final: list[Record] | None = None) -> dict[str, str]:
    """What README.md and docs/ quote from this study (tests/test_readme.py checks them)."""
    final = final_records() if final is None else final
    cells = [c for c in summarize([r for r in final if not r.setting]) if c.detectable]
    words = []
    for variant, name in (
        ("smart-paper", "the paper's settings"),
        ("smart", "the short-run teacher"),
    ):
        named = [(NAMES[c.task], c) for c in cells if c.variant == variant]
        seeds = sorted({c.paired_seeds for _, c in named})
        words.append(f"with {name} {tally(named)} ({'/'.join(map(str, seeds))} seeds)")
    detectable = [c.detectable for c in cells if c.variant == "smart-paper" and c.detectable]
    finding = (
        "On dev, SMART against plain is " + "; ".join(words) + ". At these seeds the study "
        f"would detect differences of {min(detectable):.4f} to {max(detectable):.4f} (by task) "
        "80 % of the time: a tie here rules out large effects, not small ones."
    )
    return {"smart-study": headline(final), "smart-study-finding": finding}


def ood_section(final: list[Record]) -> list[str]:
    """PAWS (MRPC models) and SICK (STS-B models) against plain, paired by seed: the reruns of
    ood.yaml (seeds 1-5); and whether each rerun's dev score reproduces its phase-2 run's
    end-of-budget score."""
    reruns, scored = ood_scored(final)
    lines = [
        "## Out of distribution: PAWS and SICK (issue 51)",
        "",
        "The reruns of `ood.yaml` (seeds 1-5; progress in the status list at the top); seeds "
        "6-10 of `final-more.yaml` are scored on dev only and land in `final/`.",
        "",
        "Each MRPC model scored on PAWS-Wiki's test split (8,000 pairs, accuracy) and each STS-B "
        "model on SICK's test split (4,906 pairs, Pearson), by the run itself after its last "
        "update (`ood_tasks`); the same paired statistics as on dev.",
        "",
    ]
    if not scored:
        return [*lines, "No run has finished yet."]
    lines.append(markdown(summarize(ood_records(scored))))
    lines += paws_reading(scored)
    phase2 = {(r.task, r.variant, r.seed): r.value for r in final if not r.setting}
    same = [
        (r, phase2[(r.task, r.variant, r.seed)])
        for r in reruns
        if (r.task, r.variant, r.seed) in phase2
    ]
    if same:
        exact = sum(abs(r.value - old) < 1e-9 for r, old in same)
        worst = max(abs(r.value - old) for r, old in same)
        lines += [
            f"Against phase 2: {exact} of {len(same)} reruns score exactly their phase-2 run's "
            f"dev figure at the end of training (largest difference {worst:.4f}). They are not "
            "expected to: phase 2 evaluated dev after every epoch, and starting a data loader "
            "draws from torch's global random generator, so from the first evaluation on the "
            "two runs draw other dropout masks; a rerun is another sample of the same method "
            "and settings, not a copy.",
            "",
        ]
    return lines


def paws_reading(scored: list[Record]) -> list[str]:
    """What a PAWS accuracy means here: against the two constant predictors, and the share of
    pairs each MRPC model calls paraphrases, solved from its accuracy and F1 and the set's label
    counts (N pairs, P paraphrases: TP = N(1 - acc)F1 / 2(1 - F1), FP from F1's definition)."""
    runs = [r for r in scored if "paws" in r.ood]
    if not runs:
        return []
    _, rows = read_split(get_task("paws"), "test", OOD_DATA)
    n, p = len(rows), sum(row.fields["label"] == "1" for row in rows)
    shares = []
    for r in sorted(runs, key=lambda r: (r.variant, r.seed)):
        results = json.loads((r.folder / "all_results.json").read_text(encoding="utf-8"))
        acc, f1 = results["ood_paws_accuracy"], results["ood_paws_f1"]
        tp = n * (1 - acc) * f1 / (2 * (1 - f1))
        fp = tp * (2 - f1) / f1 - p
        shares.append(f"{r.variant} seed {r.seed} {(tp + fp) / n:.3f}")
    return [
        f"Reading PAWS: {p:,} of its {n:,} test pairs are paraphrases, so calling every pair a "
        f"paraphrase scores accuracy {p / n:.4f} (F1 {2 * p / (n + p):.4f}) and calling none "
        f"scores {1 - p / n:.4f}. PAWS pairs share nearly all their words (built by swapping words "
        "and by back-translation), and the models trained on MRPC take that for a paraphrase: "
        "the share of PAWS pairs each model calls paraphrases "
        "(solved from its accuracy and F1) is " + "; ".join(shares) + ". A model near 1 there "
        "sits at the constant predictor's floor, so differences between such models measure how "
        "far a method moves that bias, not whether it reads word order.",
        "",
    ]


def main() -> None:
    selection = records_of(ROOT / "selection")
    chosen = choose(selection) if selection else {}
    # "Fixed for every run" lists only what both phases share: the selection runs' holdout is
    # phase 1's alone (protocol item 1), and the dev runs train on the whole training set.
    base, final_base = (
        yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))["base"]
        for name in ("selection-a.yaml", "final.yaml")
    )
    settings = ", ".join(
        f"`{k}: {v}`" for k, v in base.items() if k != "save_model" and final_base.get(k) == v
    )
    complete = all(
        sum(r.task == t and r.variant == v for r in selection) >= n
        for t in TASKS
        for v, n in GRID.items()
    )
    final = final_records()
    radius = records_of(ROOT / "radius")
    references = radius_references(selection, {r.task for r in radius})
    lines = [
        "# The SMART study: SMART against plain fine-tuning, settings chosen fairly (MiniLM-L6)",
        "",
        "This file is rewritten from the committed runs by "
        "`.venv/bin/python results/smart-study/write_results.py`; no figure in it is typed by "
        "hand. Status:",
        "",
        f"- pilot (`pilot.yaml`): {progress(ROOT / 'pilot.yaml')}",
        f"- phase 1, selection (`selection-a.yaml`, `selection-b.yaml`): "
        f"{progress(ROOT / 'selection-a.yaml')} and {progress(ROOT / 'selection-b.yaml')}",
        f"- the radius grid (`radius.yaml`): {progress(ROOT / 'radius.yaml')}",
        f"- phase 2, dev (`final.yaml`): {progress(ROOT / 'final.yaml')}",
        f"- seeds 6-10 of plain and `smart-paper` (`final-more.yaml`): "
        f"{progress(ROOT / 'final-more.yaml')}",
        f"- the out-of-distribution reruns (`ood.yaml`): {progress(ROOT / 'ood.yaml')}",
        "",
        "## Protocol",
        "",
        "1. **Selection on training data only.** Each run holds out 10 % of the task's training "
        "set (`holdout_fraction: 0.1`), trains on the rest and is scored on the held-out part; "
        "dev is not read. Every method gets the same grid: learning rate {5e-5, 1e-4} × epochs "
        "{3, 6}; SMART also λ_s ∈ {1, 3}, seed 1. The best held-out score wins, a tie goes to "
        "the cheaper setting (`choose_settings.py`, which also writes `selected.md`).",
        "2. **Dev at the end of the chosen budget, 5 seeds** at each method's chosen settings "
        "on RTE, MRPC, STS-B and CoLA (`final.yaml`, written from phase 1). The runs evaluated "
        "dev after every epoch and kept their best epoch (`load_best_model_at_end`); this file "
        "reads each at its last evaluation instead, so no figure depends on which epoch dev "
        "preferred (the best-epoch reading favoured whichever method was given more epochs). "
        "Reported: median, mean, std, min/max, and the paired (same-seed) difference to plain "
        "with its 95 % t-interval. " + VERDICT_RULE,
        "3. **The ablation** at SMART's chosen settings, seeds 1-3 first, then 4 and 5: R_s "
        "only (`bregman_mu 0`), the Bregman teacher only (`smart_lambda 0`), both, the fast "
        "mode (each term on a random quarter of the batch; its teacher runs under its own "
        "dropout masks, since replaying the student's masks needs the whole batch), and the "
        "paper's teacher (`smart-paper`: `--method smart` and nothing else, so β 0.99 then "
        "0.999 from the first update, in eval mode), which says whether the short-run recipe "
        "does less harm than today's defaults.",
        "4. **Low-resource rows**: 10 % of the training set and a budget counted in updates "
        "(300), not epochs, at each method's chosen learning rate.",
        "",
        f"Fixed for every run: {settings}. SMART here is the short-run recipe the pilot chose "
        "(`configs/smart-short.yaml`): the teacher starts after the warm-up's 10 % (a copy of "
        "the student until then, not the random head), averages about the last 10 % of the run "
        "(`bregman_horizon 0.1`) and is compared with the student under the student's dropout "
        "masks (`bregman_dropout replay`); R_s keeps the paper's ball of 1e-5.",
        "",
        f"Machine: {os.cpu_count()}-core {platform.machine()} CPU, no GPU, "
        f"torch {torch.__version__}, Python {platform.python_version()}; one thread per run, "
        "two or three runs side by side, so wall times are comparable only within a phase. A run "
        "the frozen code resumed records only the wall time after its last resume: the pilot and "
        "radius tables show it as a lower bound (≥), the list of every run marks it, and the "
        "median run times leave it out (– where every seed was resumed).",
        "",
        "```bash",
        "git worktree add ../study-src 857661d   # the code every run of the study uses",
        "bash results/sweep_frozen.sh ../study-src results/smart-study/selection-a.yaml"
        "   # and selection-b.yaml beside it; resumes interrupted runs",
        ".venv/bin/python results/smart-study/choose_settings.py   # selected.md; final.yaml",
        "bash results/sweep_frozen.sh ../study-src results/smart-study/final.yaml",
        ".venv/bin/python results/smart-study/write_results.py",
        "```",
        "",
        "## Pilot: which short-run options (CoLA, held-out 10 %, seed 1)",
        "",
        "`smart-paper` is the paper's SMART (β 0.99 then 0.999, teacher from the first update, "
        "independent dropout); `smart-teacher` the short-run teacher above; `smart-full` adds "
        "replayed dropout masks in R_s and a radius relative to each token's embedding norm "
        "(0.05).",
        "",
        single_seed_table(records_of(ROOT / "pilot"), {}),
        "",
        "## Phase 1: settings chosen on held-out training data",
        "",
        (
            ""
            if complete
            else "**Incomplete**: the choices below are among the finished runs "
            "only; a task's phase 2 starts once all its selection runs have finished. "
        ),
        "",
        selected_table(selection, chosen) if selection else "No selection run has finished.",
        "",
        "## The radius (CoLA and RTE, held-out 10 %, seed 1)",
        "",
        "The short-run teacher, R_s under the clean pass's dropout masks; the ball radii and the "
        "per-token relative radius (`smart_projection relative`) of `radius.yaml`. For "
        "reference, phase 1's runs at the same settings (learning rate 5e-5, 3 epochs, λ_s 1): "
        "plain, and the same teacher with the paper's ball of 1e-5 and R_s under independent "
        "dropout masks (`smart`).",
        "",
        single_seed_table(references + radius, {"plain": " (phase 1)", "smart": " (phase 1)"})
        if radius
        else "No radius run has finished yet.",
        "",
        *phase2(final),
        "",
        *ood_section(final),
        "",
        "## Every finished run",
        "",
        runs_table(
            records_of(ROOT / "pilot")
            + selection
            + radius
            + records_of(ROOT / "final")
            + records_of(ROOT / "ood"),
            ROOT,
        ),
    ]
    publish(OUT, lines, blocks(final))


if __name__ == "__main__":
    main()
