"""Writes the table of CPUs in docs/precision.md: bf16's step time against float32's, per CPU,
from the committed `smartft bench --precisions float32,bf16` results. A bench run on another CPU
joins the table once its JSON is added to FILES. Run from the repository root:

    .venv/bin/python benchmarks/precision_cpus.py
"""

from __future__ import annotations

import json
from pathlib import Path

from smartft.report import doc_pages, write_blocks

RESULTS = Path("benchmarks/results")
# bench JSONs with bf16 rows; the first predates the machine fields, so its CPU is stated here
FILES = {
    "precision.json": "AMD EPYC, AVX2 only (no AVX-512 BF16, no AMX)",
    "precision-avx512bf16.json": None,
}


def cpu(name: str, machine: dict[str, object]) -> tuple[str, str]:
    """The CPU and whether bf16 is native, from the file's machine fields or FILES."""
    if FILES[name] is not None:
        return str(FILES[name]), "emulated"
    native = "native (AVX-512 BF16 or AMX)" if machine.get("native_bf16") else "emulated"
    return str(machine["processor"]), native


def table() -> str:
    rows = [
        "| CPU | bf16 | plain: bf16 / float32 step | SMART | fast SMART | measured |",
        "|---|---|---|---|---|---|",
    ]
    for name in FILES:
        data = json.loads((RESULTS / name).read_text(encoding="utf-8"))
        ratios = {
            row["variant"].removesuffix("@bf16"): row["ratio_to_float32"]
            for result in data["results"]
            for row in result["rows"]
            if row["variant"].endswith("@bf16")
        }
        setting = data["results"][0]["setting"]
        model, native = cpu(name, data["machine"])
        cells = " | ".join(f"{ratios[v]:.2f}x" for v in ("plain", "smart", "smart-fast"))
        rows.append(
            f"| {model} | {native} | {cells} | `{RESULTS / name.replace('.json', '.md')}`: "
            f"{setting['model']}, batch {setting['batch_size']} x {setting['seq_len']}, "
            f"{setting['threads']} thread |"
        )
    return "\n".join(rows)


def blocks() -> dict[str, str]:
    """What docs/precision.md quotes (tests/test_readme.py checks it)."""
    return {"precision-cpus": table()}


def main() -> None:
    changed = write_blocks(doc_pages(), blocks())
    print("wrote " + ", ".join(map(str, changed)) if changed else "the table is up to date")


if __name__ == "__main__":
    main()
