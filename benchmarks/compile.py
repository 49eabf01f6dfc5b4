"""Does `torch.compile` speed up smartft's training step on this CPU? (the mixed-precision issue)

Times the recipe's own `train_step` for plain fine-tuning and exact SMART on MiniLM, each with the
model compiled (`torch.compile`, default backend inductor) and without, interleaved, medians over
repetitions, batches of real RTE pairs padded to one fixed length (compile's best case: no
recompilation for new shapes), then once more with the lengths varying as dynamic padding makes
them. Writes benchmarks/results/compile.md.

    OMP_NUM_THREADS=1 .venv/bin/python -P benchmarks/compile.py --data_dir ../shared/data/glue

(-P: benchmarks/profile.py would otherwise shadow the standard library's `profile`.)
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time
from pathlib import Path
from typing import Any, cast

import torch

from smartft.bench import Variant, load_bench_model, make_batches, smartft_step


def timed(step: object, batches: list[dict[str, torch.Tensor]], count: int) -> list[float]:
    out = []
    for batch in itertools.islice(itertools.cycle(batches), count):
        start = time.perf_counter()
        step(batch)  # type: ignore[operator]
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--seq_len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/compile.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base, tokenizer = load_bench_model("all-MiniLM-L6-v2")
    vocab = int(cast(Any, base).config.vocab_size)
    fixed = make_batches(tokenizer, args.data_dir, 16, args.seq_len, 4, vocab)
    varying = [  # dynamic padding: each batch cut to its own longest row
        {k: v[:, : int(b["attention_mask"].sum(-1).max()) - 8 * i] if v.dim() == 2 else v
         for k, v in b.items()}
        for i, b in enumerate(fixed)
    ]  # fmt: skip
    total = 100
    variants = {"plain": Variant("plain", "smartft"), "smart": Variant("smart", "smartft", "smart")}
    lines = [
        "# torch.compile on this CPU",
        "",
        f"MiniLM-L6, batch 16, one thread; `{Path(__file__).name}` (interleaved, medians of "
        f"{args.repeats} x {args.steps} steps after warm-up; the compiled step's first calls, "
        "which compile, are reported apart).",
        "",
        "| batches | variant | eager s | compiled s | compiled / eager | first compiled calls s |",
        "|---|---|---|---|---|---|",
    ]
    for label, batches in ((f"fixed length {args.seq_len}", fixed), ("varying length", varying)):
        for name, variant in variants.items():
            eager = smartft_step(copy.deepcopy(base), variant, total, batches)
            model = copy.deepcopy(base)
            compiled_model = torch.compile(model)
            compiled = smartft_step(compiled_model, variant, total, batches)  # type: ignore[arg-type]
            timed(eager, batches, 1)
            first = sum(timed(compiled, batches, len(batches)))
            times: dict[str, list[float]] = {"eager": [], "compiled": []}
            for _ in range(args.repeats):
                times["eager"] += timed(eager, batches, args.steps)
                times["compiled"] += timed(compiled, batches, args.steps)
            e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
            row = f"| {label} | {name} | {e:.3f} | {c:.3f} | {c / e:.2f} | {first:.1f} |"
            print(row, flush=True)
            lines.append(row)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
