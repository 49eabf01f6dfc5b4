"""torch.profiler tables (top operators by self CPU time) for plain and exact SMART R_s on MiniLM,
RTE batch 16 x 128, one thread: `python benchmarks/profile.py [OUT.md]`."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from smartft.bench import Setting, profile


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/profile.md")
    setting = Setting(
        "all-MiniLM-L6-v2", 16, 128, ("plain", "smart-rs"), data_dir="../shared/data/glue", warmup=1
    )
    parts = [
        "# torch.profiler: all-MiniLM-L6-v2, RTE batch 16 x 128, 1 thread, one step after one "
        "warm-up step; top operators by self CPU time\n"
    ]
    for name, table in profile(setting, steps=1).items():
        parts.append(f"## {name}\n\n```text\n{table}\n```\n")
    out.write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
