"""`smartft bench`: training-step time and peak memory of every method against plain fine-tuning.

Each variant gets its own copy of the same model, optimizer settings and batches. Steps are timed
after a warm-up, the variants take turns in every repetition (the order rotates) so that machine
drift hits all of them alike, and each one's median step time is divided by plain's median from
the same run. Peak memory is measured in a fresh process per variant: glibc is told to return
freed blocks to the system, the resident-set high-water mark is reset after the warm-up, and the
peak over the timed steps is read back from /proc.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smartft.config import resolve
from smartft.errors import ConfigError
from smartft.provenance import code_version, cpu_model, native_cpu_bf16

LEARNING_RATE = 5e-5
WEIGHT_DECAY = 0.01


@dataclass(frozen=True)
class Variant:
    """One benchmarked step: a smartft method with option overrides, or a peer's step."""

    name: str
    runner: str  # smartft | trainer | smart-pytorch
    method: str = "plain"
    options: dict[str, Any] = field(default_factory=dict)
    note: str = ""


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("plain", "smartft", note="smartft's own step, task loss only"),
        Variant("trainer", "trainer", note="transformers Trainer.training_step + its update"),
        Variant(
            "smart-rs", "smartft", "smart", {"bregman_mu": 0.0}, "exact R_s, K = 1, no Bregman"
        ),
        Variant("smart", "smartft", "smart", {}, "exact R_s + Bregman, K = 1"),
        Variant(
            "smart-fast",
            "smartft",
            "smart",
            {"smart_fraction": 0.25, "bregman_fraction": 0.25},
            "fast mode: R_s and the Bregman term each on a random quarter of each batch",
        ),
        Variant(
            "smart-low-memory",
            "smartft",
            "smart",
            {"smart_low_memory": True},
            "exact R_s + Bregman, one graph alive at a time (--smart_low_memory)",
        ),
        Variant("smart-pytorch", "smart-pytorch", note="PyPI smart-pytorch 0.0.4, R_s only"),
    )
}
DEFAULT_VARIANTS = (
    "plain",
    "trainer",
    "smart-rs",
    "smart",
    "smart-low-memory",
    "smart-fast",
    "smart-pytorch",
)


# ----------------------------------------------------------------------------- model and data


def tiny_model(task: str = "rte") -> nn.Module:
    """A 2-layer, 64-wide random BERT with the task's head: fast, and enough to exercise every
    code path."""
    from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

    from smartft.data.tasks import get_task
    from smartft.modeling import head_options, task_view

    spec = get_task(task)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        **head_options(spec),
    )
    kind = BertForQuestionAnswering if spec.shape == "span" else BertForSequenceClassification
    return task_view(kind(config), spec)  # type: ignore[no-any-return]


def load_bench_model(name: str, task: str = "rte") -> tuple[nn.Module, Any]:
    """(model, tokenizer or None): `tiny` is built in memory, anything else loads from disk;
    either with the head and output view of `task` (multiple choice, span: modeling.task_view)."""
    if name == "tiny":
        return tiny_model(task), None
    from smartft.data.tasks import get_task
    from smartft.modeling import load_model, task_view

    spec = get_task(task)
    model, tokenizer = load_model(name, spec)
    return task_view(model, spec), tokenizer


def make_batches(
    tokenizer: Any,
    data_dir: str | None,
    batch_size: int,
    seq_len: int,
    count: int,
    vocab: int,
    task: str = "rte",
) -> list[dict[str, torch.Tensor]]:
    """`count` batches padded to exactly `seq_len`: the task's training examples when the data
    and a tokenizer are there (so the padding pattern is real), random token ids otherwise."""
    from smartft.data.tasks import get_task

    spec = get_task(task)
    if tokenizer is not None and data_dir:
        from smartft.data.dataset import Collator, load_examples, tokenize

        examples = load_examples(spec, "train", Path(data_dir))
        features = tokenize(examples, tokenizer, seq_len, spec.is_regression)
        collate = Collator(tokenizer.pad_token_id or 0, spec.is_regression)
        if len(features) < batch_size * count:
            raise ConfigError(f"bench: {task} has {len(features)} training rows, too few")
        batches = [
            collate([features[i] for i in range(b * batch_size, (b + 1) * batch_size)])
            for b in range(count)
        ]
        for batch in batches:  # every batch exactly seq_len wide
            for key in ("input_ids", "token_type_ids", "attention_mask"):
                if key in batch:
                    fill = tokenizer.pad_token_id or 0 if key == "input_ids" else 0
                    width = batch[key].shape[-1]
                    batch[key] = nn.functional.pad(batch[key], (0, seq_len - width), value=fill)
        return batches
    generator = torch.Generator().manual_seed(0)
    rows = batch_size * spec.num_labels if spec.shape == "choice" else batch_size
    # answer numbers (choice), start and end positions (span), classes (sentence)
    high, size = {"choice": (spec.num_labels, batch_size), "span": (seq_len, 2 * batch_size)}.get(
        spec.shape, (2, batch_size)
    )
    return [
        {
            "input_ids": torch.randint(5, vocab, (rows, seq_len), generator=generator),
            "attention_mask": torch.ones(rows, seq_len, dtype=torch.long),
            "labels": torch.randint(0, high, (size,), generator=generator),
        }
        for _ in range(count)
    ]


# ----------------------------------------------------------------------------- steppers

Step = Callable[[dict[str, torch.Tensor]], None]


def smartft_step(
    model: nn.Module, variant: Variant, total_steps: int, batches: list[dict[str, torch.Tensor]]
) -> Step:
    """The recipe's own `train_step` with the variant's method, AdamW and linear schedule."""
    from accelerate import Accelerator

    from smartft.methods import SetupInfo, get_method
    from smartft.optim import make_optimizer, make_scheduler
    from smartft.precision import choose
    from smartft.step import train_step

    run = resolve({"method": variant.method, **variant.options}, yaml_name="bench variant")
    if run.train.peft == "lora":  # e.g. smart:peft=lora;lora_target_modules=query,value
        from smartft.modeling import with_lora

        model = with_lora(model, run.train)
    method = get_method(variant.method)(run.methods)
    cuda = torch.cuda.is_available()  # on a GPU the bench times GPU steps
    precision = choose(run.train.bf16, run.train.fp16, None, cuda=cuda)
    accelerator = Accelerator(cpu=not cuda)
    optimizer = make_optimizer(model, LEARNING_RATE, WEIGHT_DECAY)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    scheduler = make_scheduler(optimizer, total_steps, 0.1, "linear")
    device = accelerator.device
    on_device = [{k: v.to(device) for k, v in b.items()} for b in batches]
    info = SetupInfo(
        total_steps, False, 0, train_batches=lambda: iter(on_device), precision=precision
    )
    with precision.autocast():
        method.setup(model, info)
    prepared.train()

    def step(batch: dict[str, torch.Tensor]) -> None:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = train_step(
            prepared, model, batch, method, accelerator, optimizer, 1.0, False, precision
        )
        scheduler.step()
        if out.finite:
            method.after_step(model)
        if cuda:  # the step's kernels are done before the clock stops
            torch.cuda.synchronize()

    return step


def trainer_step(model: nn.Module, total_steps: int) -> Step:
    """transformers' Trainer: its `training_step` (forward, loss, backward) and the update its
    loop performs after it (clip, optimizer, scheduler, zero_grad)."""
    from transformers import Trainer, TrainingArguments

    folder = tempfile.mkdtemp(prefix="smartft-bench-")
    args = TrainingArguments(
        output_dir=folder,
        learning_rate=LEARNING_RATE,
        weight_decay=WEIGHT_DECAY,
        warmup_steps=0.1,  # a float is a fraction of the updates
        max_grad_norm=1.0,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        save_strategy="no",
    )
    trainer = Trainer(model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=total_steps)
    trainer.current_gradient_accumulation_steps = 1  # what Trainer's own loop sets per window
    assert trainer.optimizer is not None and trainer.lr_scheduler is not None
    optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
    model.train()

    def step(batch: dict[str, torch.Tensor]) -> None:
        trainer.training_step(model, batch)
        trainer.accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        model.zero_grad()

    return step


def smart_pytorch_step(model: nn.Module, total_steps: int) -> Step:
    """The PyPI port wired as its README shows: word embeddings in, `inputs_embeds` through the
    model, KL for the ascent and symmetric KL for the final term, weight 1, K = 1."""
    try:
        from smart_pytorch import SMARTLoss, kl_loss, sym_kl_loss
    except ImportError as err:
        raise ConfigError(
            "smart-pytorch is not installed; `make bench-deps` (or "
            "`pip install --no-deps smart-pytorch==0.0.4`) adds it for benchmarks"
        ) from err
    from smartft.optim import make_optimizer, make_scheduler

    optimizer = make_optimizer(model, LEARNING_RATE, WEIGHT_DECAY)  # the same as smartft's
    scheduler = make_scheduler(optimizer, total_steps, 0.1, "linear")
    embeddings = model.get_input_embeddings()  # type: ignore[operator]
    model.train()

    def step(batch: dict[str, torch.Tensor]) -> None:
        mask = batch["attention_mask"]

        def eval_fn(embed: torch.Tensor) -> torch.Tensor:
            return model(inputs_embeds=embed, attention_mask=mask).logits  # type: ignore[no-any-return]

        regularizer = SMARTLoss(eval_fn=eval_fn, loss_fn=kl_loss, loss_last_fn=sym_kl_loss)
        embed = embeddings(batch["input_ids"])
        logits = eval_fn(embed)
        loss = nn.functional.cross_entropy(logits, batch["labels"]) + regularizer(embed, logits)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

    return step


def make_step(
    model: nn.Module, variant: Variant, total_steps: int, batches: list[dict[str, torch.Tensor]]
) -> Step:
    if variant.runner == "trainer":
        return trainer_step(model, total_steps)
    if variant.runner == "smart-pytorch":
        return smart_pytorch_step(model, total_steps)
    return smartft_step(model, variant, total_steps, batches)


def get_variant(name: str) -> Variant:
    """A named variant, or `METHOD` / `METHOD:key=value;...` for any registered method; a
    `@bf16` or `@fp16` (GPU) suffix runs a smartft variant in that mixed precision."""
    base, at, precision = name.partition("@")
    if at:
        variant = get_variant(base)
        if variant.runner != "smartft" or precision not in ("bf16", "fp16"):
            raise ConfigError(f"bench variant '{name}': only smartft variants take @bf16/@fp16")
        return Variant(name, "smartft", variant.method, {**variant.options, precision: True})
    if name in VARIANTS:
        return VARIANTS[name]
    method, _, rest = name.partition(":")
    options: dict[str, Any] = {}
    for pair in filter(None, rest.split(";")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"bench variant '{name}': expected key=value, got '{pair}'")
        options[key] = value  # converted and checked like a command-line flag
    from smartft.methods import METHODS

    if method not in METHODS:
        known = ", ".join(dict.fromkeys([*VARIANTS, *METHODS]))
        raise ConfigError(
            f"unknown bench variant '{name}' (known: {known}, or METHOD:key=value;...)"
        )
    return Variant(name, "smartft", method, options)


# ----------------------------------------------------------------------------- timing


@dataclass
class Setting:
    model: str
    batch_size: int
    seq_len: int
    variants: tuple[str, ...]
    data_dir: str | None = None
    threads: int = 1
    warmup: int = 2
    steps: int = 3  # timed steps per variant and repetition
    repeats: int = 4
    options: dict[str, Any] = field(default_factory=dict)  # applied to every smartft variant
    task: str = "rte"  # whose head, output view and (with data_dir) training batches


def build(setting: Setting) -> tuple[dict[str, Step], list[dict[str, torch.Tensor]]]:
    torch.set_num_threads(setting.threads)
    base, tokenizer = load_bench_model(setting.model, setting.task)
    config: Any = base.config
    vocab = int(config.vocab_size)
    batches = make_batches(
        tokenizer, setting.data_dir, setting.batch_size, setting.seq_len, 4, vocab, setting.task
    )
    total = setting.warmup + setting.steps * setting.repeats + 1
    steps: dict[str, Step] = {}
    for name in setting.variants:
        variant = get_variant(name)
        if variant.runner != "smartft" and setting.task != "rte":
            raise ConfigError(f"bench variant {name} times sentence classification only")
        if variant.runner == "smartft" and setting.options and variant.method != "plain":
            variant = Variant(
                variant.name, "smartft", variant.method, {**variant.options, **setting.options}
            )
        steps[name] = make_step(copy.deepcopy(base), variant, total, batches)
    return steps, batches


def time_steps(setting: Setting) -> dict[str, list[float]]:
    """Per-variant step times in seconds, interleaved by repetition (allocator tuned as
    `smartft train` tunes it, for every variant alike)."""
    from smartft.runtime import tune_cpu_allocator

    tune_cpu_allocator()
    steps, batches = build(setting)
    cycle = itertools.cycle(batches)
    for step in steps.values():
        for _ in range(setting.warmup):
            step(next(cycle))
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for rep in range(setting.repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            for batch in itertools.islice(cycle, setting.steps):
                start = time.perf_counter()
                steps[name](batch)
                times[name].append(time.perf_counter() - start)
    return times


def summarize(setting: Setting, times: dict[str, list[float]]) -> list[dict[str, Any]]:
    plain = statistics.median(times["plain"]) if "plain" in times else None
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [median] * 3
        single, _, precision = name.partition("@")
        float32 = statistics.median(times[single]) if precision and single in times else None
        rows.append(
            {
                "variant": name,
                "note": get_variant(name).note,
                "ratio_to_float32": round(median / float32, 3) if float32 else None,
                "median_s": round(median, 5),
                "q1_s": round(quartiles[0], 5),
                "q3_s": round(quartiles[2], 5),
                "timed_steps": len(values),
                "ratio_to_plain": round(median / plain, 3) if plain else None,
                "examples_per_s": round(setting.batch_size / median, 2),
            }
        )
    return rows


# ----------------------------------------------------------------------------- memory

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def probe_memory(setting: Setting) -> dict[str, float]:
    """In this process (meant to be a fresh one): RSS before the steps and its peak during them."""
    steps, batches = build(setting)
    (step,) = steps.values()
    for batch in batches[: setting.warmup]:
        step(batch)
    resident = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark (VmHWM)
    for batch in itertools.islice(itertools.cycle(batches), setting.steps):
        step(batch)
    peak = _status_kb("VmHWM")
    return {"rss_between_steps_mb": resident / 1024, "peak_rss_mb": peak / 1024}


def measure_memory(setting: Setting, name: str) -> dict[str, float]:
    """`probe_memory` for one variant in a child process with allocator settings that make RSS
    follow live memory."""
    one = Setting(**{**asdict(setting), "variants": (name,)})
    env = {**os.environ, **MALLOC_ENV, "OMP_NUM_THREADS": str(setting.threads)}
    code = (
        "import json, sys; from smartft.bench import Setting, probe_memory; "
        "s = json.loads(sys.argv[1]); s['variants'] = tuple(s['variants']); "
        "print(json.dumps(probe_memory(Setting(**s))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(asdict(one))],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory probe for {name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- reports


def machine() -> dict[str, Any]:
    """The machine and code a bench ran on: timings (and bf16's above all) depend on the CPU."""
    return {
        "cpu_count": os.cpu_count(),
        "processor": cpu_model(),
        "native_bf16": native_cpu_bf16(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        **code_version(),
    }


def run_setting(setting: Setting, memory: bool) -> dict[str, Any]:
    rows = summarize(setting, time_steps(setting))
    if memory:
        for row in rows:
            row.update(measure_memory(setting, row["variant"]))
        plain = next((r for r in rows if r["variant"] == "plain"), None)
        for row in rows:
            if plain:
                row["peak_ratio_to_plain"] = round(row["peak_rss_mb"] / plain["peak_rss_mb"], 3)
                extra = row["peak_rss_mb"] - row["rss_between_steps_mb"]
                base = plain["peak_rss_mb"] - plain["rss_between_steps_mb"]
                row["step_memory_ratio_to_plain"] = round(extra / base, 3) if base > 0 else None
    return {"setting": asdict(setting), "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    s = result["setting"]
    extra = f", options {s['options']}" if s["options"] else ""
    task = f" on {s['task']}" if s.get("task", "rte") != "rte" else ""
    head = (
        f"**{s['model']}**{task}, batch {s['batch_size']} x length {s['seq_len']}, "
        f"{s['threads']} thread(s), {s['warmup']} warm-up + {s['repeats']} x {s['steps']} timed "
        f"steps per variant{extra}\n\n"
    )
    memory = "peak_rss_mb" in result["rows"][0]
    precision = any(r.get("ratio_to_float32") for r in result["rows"])
    cols = ["variant", "median step s", "x plain", *(["x float32"] if precision else [])]
    cols.append("examples/s")
    if memory:
        cols += ["peak RSS MB", "peak x plain", "in-step MB x plain"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in result["rows"]:
        cells = [
            r["variant"],
            f"{r['median_s']:.4f}",
            f"{r['ratio_to_plain']:.2f}" if r["ratio_to_plain"] is not None else "-",
            *(
                [f"{r['ratio_to_float32']:.2f}" if r.get("ratio_to_float32") else "-"]
                if precision
                else []
            ),
            f"{r['examples_per_s']:.1f}",
        ]
        if memory:
            cells += [
                f"{r['peak_rss_mb']:.0f}",
                f"{r.get('peak_ratio_to_plain', 0):.2f}",
                f"{r.get('step_memory_ratio_to_plain') or 0:.2f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def run_bench(
    settings: list[Setting],
    out: Path,
    name: str,
    memory: bool = True,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every setting, write `NAME.json` and `NAME.md` under `out`, return the JSON."""
    results = []
    for setting in settings:
        report(f"bench: {setting.model} batch {setting.batch_size} len {setting.seq_len} ...")
        result = run_setting(setting, memory)
        report(markdown(result))
        results.append(result)
    m = machine()
    summary = {"machine": m, "results": results}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    text = (
        f"# smartft bench: {name}\n\nMachine: {m['cpu_count']} cores ({m['processor']}, "
        f"{'native' if m['native_bf16'] else 'no native'} bfloat16), code {m['git_commit']}, "
        f"torch {m['torch']}, Python {m['python']}. Ratios are medians measured side by side "
        "in one run; memory is each variant's peak resident set in a fresh process.\n\n"
        + "\n".join(markdown(r) for r in results)
    )
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    return summary


def with_precisions(variants: list[str], precisions: list[str]) -> list[str]:
    """Every variant in float32 (if asked) and each smartft variant again in bf16 / fp16."""
    wanted = [p.strip() for p in precisions if p.strip()]
    unknown = set(wanted) - {"float32", "bf16", "fp16"}
    if unknown or not wanted:
        raise ConfigError(f"--precisions: expected float32, bf16 and/or fp16, got {precisions}")
    out = list(variants) if "float32" in wanted else []
    for half in ("bf16", "fp16"):
        if half in wanted:
            out += [f"{v}@{half}" for v in variants if get_variant(v).runner == "smartft"]
    return out


def installed(variant: str) -> bool:
    if get_variant(variant).runner != "smart-pytorch":
        return True
    import importlib.util

    return importlib.util.find_spec("smart_pytorch") is not None


def plan(
    models: list[str],
    seq_lengths: list[int],
    batch_size: int,
    variants: list[str],
    scaling: bool,
    **common: Any,
) -> list[Setting]:
    """The main table (every model x length) and, with `scaling`, how plain vs exact SMART moves
    with batch size, sequence length and ascent steps K on the last model."""
    settings = [
        Setting(model, batch_size, length, tuple(variants), **common)
        for model in models
        for length in seq_lengths
    ]
    if scaling:
        last, pair = models[-1], ("plain", "smart")
        settings += [Setting(last, b, 128, pair, **common) for b in (8, 32)]
        settings += [Setting(last, batch_size, n, pair, **common) for n in (32, 256)]
        settings += [
            Setting(last, batch_size, 128, pair, **common, options={"smart_steps": k})
            for k in (2, 3)
        ]
    return settings


def profile(setting: Setting, steps: int = 2, rows: int = 25) -> dict[str, str]:
    """torch.profiler's operator table (self CPU time) per variant, after the warm-up."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    built, batches = build(setting)
    tables = {}
    for name, step in built.items():
        for batch in batches[: setting.warmup]:
            step(batch)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches[:steps]:
                step(batch)
        tables[name] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return tables
