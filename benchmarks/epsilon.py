"""The ε question, measured: word-embedding magnitudes vs the perturbation, and R_s per setting.

    .venv/bin/python benchmarks/epsilon.py [--data_dir ../shared/data/glue] [--pairs 32]

Uses all-MiniLM-L6-v2 with a fresh 2-way head on the first RTE training pairs, one ascent step,
in eval mode (no dropout), so R_s reflects the perturbation alone. Writes
benchmarks/results/epsilon.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from smartft.data import get_task, load_examples
from smartft.modeling import load_model
from smartft.regularizer import SmartConfig, SmartRegularizer

SETTINGS = [
    ("ball, ε = 1e-5, η = 1e-3 (paper)", SmartConfig(smart_eps=1e-5, smart_step_size=1e-3)),
    ("ball, ε = 1e-3, η = 1e-3", SmartConfig(smart_eps=1e-3, smart_step_size=1e-3)),
    ("ball, ε = 1e-2, η = 1e-2", SmartConfig(smart_eps=1e-2, smart_step_size=1e-2)),
    ("ball, ε = 1e-1, η = 1e-1", SmartConfig(smart_eps=1e-1, smart_step_size=1e-1)),
    ("unit (reference code)", SmartConfig(smart_projection="unit")),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default="../shared/data/glue")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "epsilon.md"))
    args = parser.parse_args()
    torch.manual_seed(0)
    spec = get_task("rte")
    examples = load_examples(spec, "train", Path(args.data_dir)).head(args.pairs)
    model, tokenizer = load_model("all-MiniLM-L6-v2", spec)
    model.eval()
    a, b = zip(*examples.texts, strict=True)
    inputs = dict(
        tokenizer(
            list(a), list(b), truncation=True, max_length=128, padding=True, return_tensors="pt"
        )
    )
    mask = inputs["attention_mask"].bool()
    with torch.no_grad():
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        logits = model(**inputs).logits
    token_inf = embeds.abs().amax(-1)[mask]
    token_l2 = embeds.norm(dim=-1)[mask]
    task = torch.nn.functional.cross_entropy(logits, torch.tensor(examples.labels).long())
    lines = [
        "# The ε question, measured",
        "",
        f"all-MiniLM-L6-v2, fresh 2-way head, first {args.pairs} RTE training pairs "
        f"({int(mask.sum())} tokens), eval mode, one ascent step from σ = 1e-5 noise. "
        "Produced by `benchmarks/epsilon.py`.",
        "",
        f"- word-embedding per-token ∞-norm: median {token_inf.median():.3f} "
        f"(min {token_inf.min():.3f}, max {token_inf.max():.3f}); L2-norm median "
        f"{token_l2.median():.3f}",
        f"- task loss (cross-entropy) of the fresh head: {task:.4f}",
        "",
        "| setting | perturbation per-token ∞-norm (median) | R_s (symmetric KL) |",
        "|---|---|---|",
    ]
    for name, config in SETTINGS:
        torch.manual_seed(0)
        reg = SmartRegularizer(model, config, seed=0)
        value = reg.penalty(inputs, logits)
        assert value is not None
        norms = reg.last["smart_delta_norm"]
        lines.append(f"| {name} | {norms:.3g} | {float(value):.3g} |")
        reg.close()
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
