"""Parquet files and `datasets`' save_to_disk folders go through the same strict checks as text
files: one clear error, exit 2, for each kind of bad input."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from smartft.data.readers import detect_format, read_rows
from smartft.errors import DataError

from .test_engine import cli

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

WORDS = ["good fun movie .", "bad boring film .", "great film .", "terrible book ."]


def rows(n: int, label: str = "label") -> list[dict[str, Any]]:
    return [{"text": WORDS[i % 4], label: i % 4 % 2, "idx": i} for i in range(n)]


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def save_to_disk(folder: Path, records: list[dict[str, Any]], shards: int = 2) -> Path:
    """The layout `datasets.Dataset.save_to_disk` writes: Arrow *stream* shards plus JSON
    metadata (checked against datasets itself once; see the README)."""
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(records)
    size = -(-table.num_rows // shards)
    for i in range(shards):
        part = table.slice(i * size, size)
        name = f"data-{i:05d}-of-{shards:05d}.arrow"
        with (
            pa.OSFile(str(folder / name), "wb") as sink,
            pa.ipc.new_stream(sink, table.schema) as w,
        ):
            w.write_table(part)
    (folder / "state.json").write_text(json.dumps({"_data_files": []}))
    (folder / "dataset_info.json").write_text("{}")
    return folder


def train(model: str, train_path: Path, dev_path: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--model_name_or_path", model, "--train_file", str(train_path),
        "--validation_file", str(dev_path), "--text_columns", "text", "--output_dir", str(out),
        "--num_train_epochs", "1", "--disable_tqdm", *extra,
    ]  # fmt: skip


def test_parquet_and_save_to_disk_folders_train_and_evaluate(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_file = write_parquet(tmp_path / "train.parquet", rows(24))
    dev = save_to_disk(tmp_path / "dev", rows(8))
    assert detect_format(train_file) == "parquet" and detect_format(dev) == "arrow"
    assert [r.fields["idx"] for r in read_rows(dev, "arrow")] == list(range(8))
    out = tmp_path / "run"
    code, _, err = cli(train(tiny_model, train_file, dev, out), capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert results["train_examples"] == 24 and results["eval_examples"] == 8


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing_column", "missing text column 'text'"),
        ("empty", "no rows"),
        ("unknown_label", "label '7' is not in the training label set"),
        ("null_label", "no 'label' value"),
        ("not_parquet", "not a readable parquet file"),
        ("dataset_dict", "is a DatasetDict folder"),
    ],
)
def test_bad_arrow_data_is_one_clear_error(
    problem: str,
    message: str,
    tiny_model: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    train_file = write_parquet(tmp_path / "train.parquet", rows(24))
    dev: Path = write_parquet(tmp_path / "dev.parquet", rows(8))
    if problem == "missing_column":
        train_file = write_parquet(tmp_path / "t.parquet", [{"sentence": w} for w in WORDS])
    elif problem == "empty":
        pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "e.parquet")
        train_file = tmp_path / "e.parquet"
    elif problem == "unknown_label":
        dev = write_parquet(tmp_path / "d.parquet", [{"text": "good .", "label": 7, "idx": 0}])
    elif problem == "null_label":
        records = rows(24)
        records[5]["label"] = None
        train_file = write_parquet(tmp_path / "n.parquet", records)
    elif problem == "not_parquet":
        train_file = tmp_path / "x.parquet"
        train_file.write_text("text,label\ngood,1\n")
    elif problem == "dataset_dict":
        dev = tmp_path / "dict"
        save_to_disk(dev / "validation", rows(8))
        (dev / "dataset_dict.json").write_text(json.dumps({"splits": ["validation"]}))
    code, _, err = cli(train(tiny_model, train_file, dev, tmp_path / "out"), capsys)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_without_pyarrow_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_parquet(tmp_path / "train.parquet", rows(4))
    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(DataError, match=r"(?s)needs pyarrow.*pip install pyarrow"):
        read_rows(path, "parquet")
