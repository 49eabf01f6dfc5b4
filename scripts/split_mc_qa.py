"""Training and evaluation parts of the two multiple-choice and QA sets kept here, whose
training splits could not be obtained: Cosmos QA's validation set split by context and SQuAD
v1.1's dev set split by article, so that no passage is in both parts. Each part is written in
its set's standard layout (the names `--task_name cosmosqa` and `squad` read) into an ignored
folder; every number measured on them must say that it comes from these parts, not from the
official splits.

    .venv/bin/python scripts/split_mc_qa.py [--data_dir ../shared/data] [--out data/splits]
    smartft train --task_name cosmosqa --data_dir data/splits ...
    smartft train --task_name squad --data_dir data/splits ...

The split is deterministic: a passage (a Cosmos context, a SQuAD article title) goes to the
evaluation part when the SHA-256 of its text, read as a number, falls in the lowest fifth, so
it does not depend on file order or on a random generator's version. The script prints the
sizes and the hashes of the files it wrote.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

EVAL_SHARE = 0.2


def held_out(key: str) -> bool:
    """Whether a passage goes to the evaluation part (the lowest fifth of SHA-256 values)."""
    value = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return value < EVAL_SHARE * 2**64


def split_cosmos(source: Path, out: Path) -> dict[str, int]:
    """valid.csv into train.csv and valid.csv (the authors' names), rows kept whole, in order."""
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise SystemExit(f"{source}: no rows")
    header = list(rows[0])
    parts: dict[str, list[dict[str, str]]] = {"train.csv": [], "valid.csv": []}
    for row in rows:
        parts["valid.csv" if held_out(row["context"]) else "train.csv"].append(row)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(part)
        (out / name).write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return {name: len(part) for name, part in parts.items()}


def split_squad(source: Path, out: Path) -> dict[str, int]:
    """dev-v1.1.json into train-v1.1.json and dev-v1.1.json by article, articles whole."""
    document = json.loads(source.read_text(encoding="utf-8"))
    parts: dict[str, list[dict[str, Any]]] = {"train-v1.1.json": [], "dev-v1.1.json": []}
    for article in document["data"]:
        parts["dev-v1.1.json" if held_out(article["title"]) else "train-v1.1.json"].append(article)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, articles in parts.items():
        text = json.dumps({"data": articles, "version": document.get("version", "1.1")})
        (out / name).write_text(text, encoding="utf-8")
        sizes[name] = sum(len(p["qas"]) for a in articles for p in a["paragraphs"])
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="../shared/data", help="holding mc/ and qa/")
    parser.add_argument(
        "--out", default="data/splits", help="where CosmosQA/ and SQuAD/ are written"
    )
    args = parser.parse_args()
    data, out = Path(args.data_dir), Path(args.out)
    written = {
        "CosmosQA": split_cosmos(data / "mc/CosmosQA/valid.csv", out / "CosmosQA"),
        "SQuAD": split_squad(data / "qa/SQuAD/dev-v1.1.json", out / "SQuAD"),
    }
    for folder, sizes in written.items():
        for name, count in sizes.items():
            digest = hashlib.sha256((out / folder / name).read_bytes()).hexdigest()[:16]
            print(f"{out / folder / name}: {count} questions, sha256 {digest}...")


if __name__ == "__main__":
    main()
