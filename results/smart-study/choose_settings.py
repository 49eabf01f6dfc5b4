"""Phase 1 -> phase 2 of the SMART study: reads the selection runs (held-out 10 % of each training
set, dev untouched), picks each method's settings per task, and writes

- results/smart-study/selected.md: every selection run's score and the choice, and
- results/smart-study/final.yaml: 5 seeds on dev at the chosen settings, the ablation at SMART's
  choice (R_s only, Bregman only, both, the fast mode, the paper's teacher) and the low-resource
  rows, for each task whose selection is complete (a task's choice depends on its own runs only,
  so its phase 2 can start while another task's selection still runs; the file grows as tasks
  complete, and the sweep skips the runs already finished).

The choice is the best held-out score; a tie goes to the cheaper setting (fewer epochs, then the
smaller learning rate, then the smaller lambda). Run from the repository root:

    .venv/bin/python results/smart-study/choose_settings.py
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from smartft.report import Record, collect

ROOT = Path("results/smart-study")
TASKS = ("rte", "mrpc", "stsb", "cola")
SEEDS = [1, 2, 3, 4, 5]
GRID = {"plain": 4, "smart": 8}  # settings per task in the selection grid
SHORT_RUN = {"bregman_start": 0.1, "bregman_horizon": 0.1, "bregman_dropout": "replay"}
LOW_RESOURCE = {"train_fraction": [0.1], "max_steps": [300]}  # updates, not epochs


class PlainDumper(yaml.SafeDumper):
    """Writes every value out in full: no `&id001` anchors, since people read final.yaml."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def parse(setting: str) -> dict[str, Any]:
    """ "learning_rate=5e-05,num_train_epochs=3" -> {"learning_rate": 5e-05, ...}."""
    out: dict[str, Any] = {}
    for part in filter(None, setting.split(",")):
        key, _, value = part.partition("=")
        out[key] = yaml.safe_load(value)
    return out


def cost(settings: dict[str, Any]) -> tuple[float, float, float]:
    return (
        settings["num_train_epochs"],
        settings["learning_rate"],
        settings.get("smart_lambda", 0.0),
    )


def choose(records: list[Record]) -> dict[tuple[str, str], tuple[dict[str, Any], float]]:
    """(task, variant) -> (the chosen settings, their held-out score)."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in records:
        groups[(record.task, record.variant)].append(record)
    chosen = {}
    for key, members in groups.items():
        scored = [(r.value, parse(r.setting)) for r in members if not math.isnan(r.value)]
        best = max(value for value, _ in scored)
        settings = min((s for value, s in scored if value == best), key=cost)
        chosen[key] = (settings, best)
    return chosen


def selected_table(records: list[Record], chosen: dict[Any, Any]) -> str:
    rows = [
        "| task | method | setting | held-out score | chosen |",
        "|---|---|---|---|---|",
    ]
    for record in sorted(records, key=lambda r: (TASKS.index(r.task), r.variant, r.setting)):
        settings, _ = chosen[(record.task, record.variant)]
        mark = "**yes**" if parse(record.setting) == settings else ""
        rows.append(
            f"| {record.task} | {record.variant} | {record.setting} | {record.value:.4f} | {mark} |"
        )
    return "\n".join(rows)


def final_config(
    chosen: dict[tuple[str, str], tuple[dict[str, Any], float]], tasks: list[str]
) -> dict[str, Any]:
    selection = yaml.safe_load((ROOT / "selection-a.yaml").read_text(encoding="utf-8"))
    base = {k: v for k, v in selection["base"].items() if k != "holdout_fraction"}
    variants = {
        "plain": {"method": "plain"},
        "smart": {"method": "smart", **SHORT_RUN},
        "smart-rs-only": {"method": "smart", **SHORT_RUN, "bregman_mu": 0.0},
        "smart-bregman-only": {"method": "smart", **SHORT_RUN, "smart_lambda": 0.0},
        # What `--method smart` does with no other flag: the paper's teacher (beta 0.99, then
        # 0.999, from the first update, in eval mode), so the ablation also says whether the
        # short-run recipe does less harm than the defaults.
        "smart-paper": {"method": "smart"},
        "smart-fast": {
            "method": "smart",
            "bregman_start": 0.1,
            "bregman_horizon": 0.1,
            "smart_fraction": 0.25,
            "bregman_fraction": 0.25,
        },
    }

    def row(task: str, names: list[str], **axes: Any) -> dict[str, Any]:
        return {"task_name": [task], "seed": SEEDS, "variants": names, **axes}

    grid: list[dict[str, Any]] = []
    for task in tasks:
        plain, _ = chosen[(task, "plain")]
        smart, _ = chosen[(task, "smart")]
        lam = [smart["smart_lambda"]]
        lr, epochs = [smart["learning_rate"]], [smart["num_train_epochs"]]
        grid += [
            row(task, ["plain"], **{k: [v] for k, v in plain.items()}),
            row(
                task,
                ["smart", "smart-rs-only", "smart-fast", "smart-paper"],
                learning_rate=lr,
                num_train_epochs=epochs,
                smart_lambda=lam,
            ),
            row(task, ["smart-bregman-only"], learning_rate=lr, num_train_epochs=epochs),
            row(task, ["plain"], learning_rate=[plain["learning_rate"]], **LOW_RESOURCE),
            row(task, ["smart"], learning_rate=lr, smart_lambda=lam, **LOW_RESOURCE),
        ]
    return {"runs_dir": str(ROOT / "final"), "base": base, "variants": variants, "grid": grid}


def main() -> None:
    records = collect(ROOT / "selection")
    chosen = choose(records)
    finished = {
        (task, variant): sum(r.task == task and r.variant == variant for r in records)
        for task in TASKS
        for variant in GRID
    }
    missing = [
        f"{task}/{variant}: {finished[task, variant]} of {n}"
        for task in TASKS
        for variant, n in GRID.items()
        if finished[task, variant] < n
    ]
    complete = [t for t in TASKS if all(finished[t, v] >= n for v, n in GRID.items())]
    lines = [
        "# SMART study, phase 1: settings chosen on held-out training data",
        "",
        "Written by `.venv/bin/python results/smart-study/choose_settings.py` from the runs in "
        "`results/smart-study/selection` (10 % of each training set held out, seed 1; dev is "
        "not read). The best held-out score wins; ties go to the cheaper setting.",
        "",
        ("**Incomplete:** " + "; ".join(missing) + " runs finished.")
        if missing
        else "**Complete:** every selection run has finished.",
        "",
        selected_table(records, chosen),
    ]
    (ROOT / "selected.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {ROOT / 'selected.md'}")
    if missing:
        print("selection incomplete: " + "; ".join(missing))
    if not complete:
        print("no task's selection is complete; final.yaml not written")
        return
    waiting = [t for t in TASKS if t not in complete]
    header = (
        "# Written by results/smart-study/choose_settings.py from the selection runs.\n"
        "# Phase 2 of the SMART study: 5 seeds on dev at each method's chosen settings.\n"
    )
    if waiting:
        header += f"# Tasks still in selection, added when it completes: {', '.join(waiting)}\n"
    text = header + yaml.dump(
        final_config(chosen, complete), Dumper=PlainDumper, sort_keys=False, width=100
    )
    (ROOT / "final.yaml").write_text(text, encoding="utf-8")
    print(f"wrote {ROOT / 'final.yaml'}")


if __name__ == "__main__":
    main()
