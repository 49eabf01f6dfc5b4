"""Do the perturbation methods mean the same thing under bf16 as in float32? (mixed precision)

For SMART's R_s (ball and unit), ALICE's label-adversarial gain, R3F's divergence, FreeLB's
adversarial gain and LNSR's penalty, at a range of perturbation sizes: the term's value with
float32 forward passes and with bf16 autocast, on MiniLM and real RTE pairs (batch 16, padded to
64), in eval mode so that the two differ by precision alone (same noise draws in both). Beside
each row: whether smartft's precision check warns at that size. Writes
benchmarks/results/precision-terms.md.

    OMP_NUM_THREADS=1 .venv/bin/python -P benchmarks/precision_terms.py \
        --data_dir ../shared/data/glue
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch

from smartft.bench import load_bench_model, make_batches
from smartft.config import resolve
from smartft.losses import task_loss
from smartft.methods import SetupInfo, get_method
from smartft.precision import Precision, embedding_scale, recorded_warnings

Batch = dict[str, torch.Tensor]
FP32, BF16 = Precision(), Precision(torch.bfloat16)


def smart_rs(options: dict[str, Any]) -> Callable[[Any, Batch], float]:
    def value(method: Any, batch: Batch) -> float:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = method.regularizer.model(**inputs).logits
        found = method.regularizer.penalty(inputs, logits)
        method.regularizer.hook.clear()
        return float(found) if found is not None else math.nan

    return value


def alice_gain(method: Any, batch: Batch) -> float:
    """Label-adversarial loss minus the clean loss: what the perturbation adds."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    reg = method.regularizer
    logits = reg.model(**inputs).logits
    adversarial = reg.penalty(inputs, logits, labels=batch["labels"])
    reg.hook.clear()
    return float(adversarial - task_loss(logits, batch["labels"], False))


def loss_term(name: str, clean_loss: bool = False) -> Callable[[Any, Batch], float]:
    """The method's own weighted term (λ = 1); FreeLB's term minus nothing (its gain)."""

    def value(method: Any, batch: Batch) -> float:
        model = method.model_for_terms
        method.before_forward(model, batch, lambda loss: None)
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        terms = method.loss_terms(model, batch, logits)
        return float(terms[name]) if name in terms else math.nan

    return value


def freelb_gain(method: Any, batch: Batch) -> float:
    """(K=2) the perturbed loss minus the clean one: loss_freelb = (L1 - L0) / 2."""
    return 2 * loss_term("loss_freelb")(method, batch)


CASES: list[tuple[str, str, str, list[float], dict[str, Any], Callable[[Any, Batch], float]]] = [
    # (label, method, size flag, sizes, other options, measure)
    ("SMART R_s (ball)", "smart", "smart_eps", [1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 1e-1],
     {"bregman_mu": 0.0, "smart_step_size": 1.0}, smart_rs({})),
    ("SMART R_s (unit)", "smart", "smart_step_size", [1e-3],
     {"bregman_mu": 0.0, "smart_projection": "unit"}, smart_rs({})),
    ("ALICE adversarial gain", "alice", "smart_eps", [1e-5, 1e-3, 1e-2, 1e-1],
     {"smart_step_size": 1.0, "smart_lambda": 0.0}, alice_gain),
    ("R3F divergence", "r3f", "r3f_eps", [1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 1e-1], {},
     loss_term("loss_r3f")),
    ("FreeLB gain (K=2)", "freelb", "freelb_step_size", [1e-2, 1e-1, 1.0, 3.0, 10.0],
     {"freelb_steps": 2, "freelb_start_step": 0}, freelb_gain),
    ("LNSR penalty", "lnsr", "lnsr_sigma", [1e-4, 1e-3, 1e-2, 3e-2, 1e-1], {},
     loss_term("loss_lnsr")),
]  # fmt: skip


def measure(
    base: torch.nn.Module,
    method_name: str,
    options: dict[str, Any],
    batches: list[Batch],
    precision: Precision,
    value: Callable[[Any, Batch], float],
) -> tuple[float, list[str]]:
    """The mean term over the batches and the warnings the method's setup raised."""
    import copy

    model = copy.deepcopy(base).eval()
    run = resolve({"method": method_name, **options}, yaml_name="precision check")
    method: Any = get_method(method_name)(run.methods)  # carries model_for_terms below
    info = SetupInfo(10, False, 0, train_batches=lambda: iter(batches), precision=precision)
    with recorded_warnings() as warned, precision.autocast():
        method.setup(model, info)
    method.model_for_terms = model
    values = []
    for batch in batches:
        grad = contextlib.nullcontext() if method_name != "lnsr" else torch.enable_grad()
        with precision.autocast(), grad:
            values.append(value(method, batch))
    return statistics.fmean(values), warned


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/precision-terms.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base, tokenizer = load_bench_model("all-MiniLM-L6-v2")
    vocab = int(cast(Any, base).config.vocab_size)
    batches = make_batches(tokenizer, args.data_dir, 16, 64, args.batches, vocab)
    lines = [
        "# The perturbation methods under bf16 and float32",
        "",
        f"MiniLM-L6, {args.batches} RTE batches of 16 x 64 tokens, eval mode (no dropout: the two "
        "columns differ by precision alone), the same noise draws in both; "
        f"`{Path(__file__).name}`. Word-embedding scale (median per-token ∞-norm over the "
        f"vocabulary): {embedding_scale(base):.3f}. 'warned': smartft's precision check "
        "(`--bf16`) tells the user that the size is below what bf16 represents.",
        "",
        "| term | size | float32 | bf16 | bf16 / float32 | warned |",
        "|---|---|---|---|---|---|",
    ]
    for label, method, flag, sizes, options, value in CASES:
        for size in sizes:
            chosen = {**options, flag: size}
            if flag == "smart_eps":
                chosen.setdefault("smart_noise_std", size)
            full, _ = measure(base, method, chosen, batches, FP32, value)
            half, warned = measure(base, method, chosen, batches, BF16, value)
            ratio = half / full if full else math.nan
            told = "yes" if any(flag in w for w in warned) else "no"
            numbers = [f"{full:.3e}", f"{half:.3e}", f"{ratio:.2f}"]
            cells = [label, f"{flag} = {size:g}", *numbers, told]
            row = "| " + " | ".join(cells) + " |"
            print(row, flush=True)
            lines.append(row)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
