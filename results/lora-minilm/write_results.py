"""Writes results/lora-minilm.md: SMART on LoRA adapters against full fine-tuning (RTE and MRPC,
3 seeds, MiniLM-L6), from the finished runs of results/lora-minilm/sweep.yaml, the GLUE study's
full fine-tuning runs (plain and SMART, same seeds) and the side-by-side step-time and memory
measurement in benchmarks/results/lora.json. Run from the repository root:

    .venv/bin/python results/lora-minilm/write_results.py
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import yaml

from smartft.report import (
    READING_RULE,
    VERDICT_RULE,
    Cell,
    Record,
    collect_many,
    markdown,
    publish,
    runs_table,
    summarize,
    tally,
    verdict,
)
from smartft.sweep import build, expand, from_file, is_done

ROOT = Path("results/lora-minilm")
SWEEP = ROOT / "sweep.yaml"
OUT = Path("results/lora-minilm.md")
GLUE_RUNS = Path("results/glue-minilm/runs")
FULL = [GLUE_RUNS / task / variant for task in ("rte", "mrpc") for variant in ("plain", "smart")]
BENCH = Path("benchmarks/results/lora.json")
NAMES = {
    "plain": "full",
    "smart": "full + SMART",
    "plain:peft=lora": "LoRA",
    "smart:peft=lora": "LoRA + SMART",
    "lora": "LoRA",
    "lora-smart": "LoRA + SMART",
}


TASKS = ("rte", "mrpc")


def summary_table(records: list[Record]) -> str:
    """Both tasks side by side: each variant against full fine-tuning's plain run, and SMART's
    effect within each regime (full + SMART vs full, LoRA + SMART vs LoRA), paired by seed."""

    def cells(baseline: str, subset: list[Record]) -> dict[tuple[str, str], Cell]:
        return {(c.task, c.variant): c for c in summarize(subset, baseline)}

    def delta(cell: Cell | None) -> str:
        if cell is None or cell.diff_mean_paired is None:
            return "–"
        if cell.ci_low is None or cell.ci_high is None:
            return f"{cell.diff_mean_paired:+.4f} (one seed)"
        return (
            f"{cell.diff_mean_paired:+.4f} [{cell.ci_low:+.4f}, {cell.ci_high:+.4f}] "
            f"{verdict(cell)}"
        )

    vs_full = cells("plain", records)
    lora = [r for r in records if r.variant.startswith("lora")]
    vs_lora = cells("lora", lora)
    rows = [
        "| variant | "
        + " | ".join(
            f"{t.upper()} acc. median (min-max) | {t.upper()} Δ vs full [95 % t-interval] | "
            f"{t.upper()} SMART's effect [95 % t-interval]"
            for t in TASKS
        )
        + " |",
        "|---|" + "---|---|---|" * len(TASKS),
    ]
    for variant in ("plain", "smart", "lora", "lora-smart"):
        columns = []
        for task in TASKS:
            cell = vs_full.get((task, variant))
            if cell is None:
                columns += ["not run yet", "", ""]
                continue
            within = {"smart": vs_full, "lora-smart": vs_lora}.get(variant, {})
            columns += [
                f"{cell.median:.4f} ({cell.min:.4f}-{cell.max:.4f}) n={len(cell.values)}",
                delta(cell) if variant != "plain" else "–",
                delta(within.get((task, variant))),
            ]
        rows.append(f"| {NAMES[variant]} | {' | '.join(columns)} |")
    return "\n".join(rows)


def cost_table() -> str:
    """Step time and peak memory of each variant, as ratios to full fine-tuning's plain step."""
    if not BENCH.is_file():
        return "Not measured yet (`benchmarks/results/lora.json` is missing)."
    result = json.loads(BENCH.read_text(encoding="utf-8"))["results"][0]
    setting = result["setting"]
    lines = [
        f"{setting['model']}, real RTE batches of {setting['batch_size']} padded to "
        f"{setting['seq_len']}, {setting['threads']} thread, {setting['repeats']} interleaved "
        f"repetitions of {setting['steps']} steps (medians); peak memory in a fresh process "
        "per variant (`smartft bench`):",
        "",
        "| variant | median step s | step time x full | peak RSS MB | peak x full | in-step "
        "memory x full |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {NAMES.get(row['variant'], row['variant'])} | {row['median_s']:.3f} | "
            f"{row['ratio_to_plain']:.2f} | {row['peak_rss_mb']:.0f} | "
            f"{row['peak_ratio_to_plain']:.2f} | {row['step_memory_ratio_to_plain']:.2f} |"
        )
    return "\n".join(lines)


def teacher_memory() -> str:
    """SMART's teacher: the bytes of the parameters it averages, full model against LoRA (it
    shares the frozen base weights with the student)."""
    from smartft.config import resolve
    from smartft.data.tasks import get_task
    from smartft.modeling import load_model, with_lora
    from smartft.teacher import MeanTeacher, own_bytes

    warnings.filterwarnings("ignore", category=FutureWarning)  # peft asks transformers' old name

    base = yaml.safe_load(SWEEP.read_text(encoding="utf-8"))["base"]
    lora = {k: v for k, v in base.items() if k.startswith(("peft", "lora_"))}
    sizes = {}
    for name, options in (("full", {}), ("LoRA", lora)):
        model, _ = load_model(base["model_name_or_path"], get_task("rte"))
        if options:
            model = with_lora(model, resolve(options, yaml_name="lora").train)
        sizes[name] = own_bytes(MeanTeacher(model))
    return (
        f"SMART's teacher averages {sizes['full'] / 2**20:.1f} MiB of parameters with full "
        f"fine-tuning and {sizes['LoRA'] / 2**20:.2f} MiB with LoRA "
        f"({sizes['full'] / sizes['LoRA']:.0f} x less; `all_results.json`: `teacher_own_bytes`)."
    )


def lora_records() -> list[Record]:
    sweep = build(from_file(str(SWEEP)))
    return collect_many([f for f in (sweep.runs_dir, *FULL) if f.is_dir()])


def blocks(records: list[Record] | None = None) -> dict[str, str]:
    """What README.md and docs/ quote from this study (tests/test_readme.py checks them)."""
    records = lora_records() if records is None else records
    lora = [r for r in records if r.variant.startswith("lora")]
    vs_full = [(f"LoRA {c.task.upper()}", c) for c in summarize(records) if c.variant == "lora"]
    smart = [(f"{c.task.upper()}", c) for c in summarize(lora, "lora") if c.variant == "lora-smart"]
    finding = (
        "LoRA (`results/lora-minilm.md`: r 8 on query and value, RTE and MRPC, 3 seeds): LoRA "
        f"against full fine-tuning is {tally(vs_full)}; LoRA + SMART against LoRA alone "
        f"{tally(smart)}."
    )
    return {"lora": summary_table(records), "lora-finding": finding}


def main() -> None:
    sweep = build(from_file(str(SWEEP)))
    runs = expand(sweep)
    finished = [r for r in runs if is_done(sweep.runs_dir / r.name)]
    records = lora_records()
    base = yaml.safe_load(SWEEP.read_text(encoding="utf-8"))["base"]
    lines = [
        "# SMART on LoRA adapters against full fine-tuning (all-MiniLM-L6-v2)",
        "",
        f"**Status: {len(finished)} of {len(runs)} LoRA runs finished.** Rewritten from the "
        "runs by `.venv/bin/python results/lora-minilm/write_results.py`.",
        "",
        "LoRA runs: "
        + ", ".join(f"`{k}: {v}`" for k, v in base.items() if k != "save_model")
        + ". Full fine-tuning (`plain`, `smart`) is the GLUE study's runs: the same settings "
        "but lr 5e-5 and every weight trained. Dev accuracy at the end of training; differences "
        "are paired by seed against full fine-tuning's plain run. " + READING_RULE,
        "",
        "## Cost, measured side by side",
        "",
        cost_table(),
        "",
        teacher_memory(),
        "",
        "## Summary",
        "",
        "Dev accuracy, median (min-max) over seeds; the mean paired difference from full "
        "fine-tuning (plain) with its 95 % t-interval and verdict; SMART's effect: "
        "full + SMART against full, LoRA + SMART against LoRA, paired the same way. "
        + VERDICT_RULE,
        "",
        summary_table(records) if records else "No run has finished.",
        "",
        "## Dev accuracy against full fine-tuning",
        "",
        markdown(summarize(records)) if records else "No run has finished.",
        "",
        "## LoRA + SMART against LoRA",
        "",
        markdown(summarize([r for r in records if r.variant.startswith("lora")], "lora"), "lora")
        if any(r.variant == "lora" for r in records)
        else "No LoRA run has finished.",
        "",
        "## Every finished run",
        "",
        runs_table(records, Path("results")) if records else "None yet.",
    ]
    publish(OUT, lines, blocks(records) if records else {})


if __name__ == "__main__":
    main()
