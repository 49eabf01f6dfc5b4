"""The strict reader: every bad input gets one clear DataError naming file, line and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartft.data.dataset import infer_labels, load_examples
from smartft.data.readers import read_csv, read_jsonl, read_tsv
from smartft.data.tasks import get_task
from smartft.errors import DataError


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_tsv_keeps_quotes_and_strips_bom_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", '\ufeffa\tb\r\n"quoted start\tx\r\nplain\t"y\r\n')
    rows = read_tsv(path)
    assert [r.fields for r in rows] == [{"a": '"quoted start', "b": "x"}, {"a": "plain", "b": '"y'}]
    assert [r.line for r in rows] == [2, 3]


def test_headerless_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", "gj04\t1\t\tA sentence .\n")
    (row,) = read_tsv(path, ("source", "label", "original_label", "sentence"))
    assert row.line == 1 and row.fields["label"] == "1"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", None, "empty"),
        ("a\tb\n", None, "header only"),
        ("a\tb\n1\t2\n3\n", 3, "ragged row"),
        ("a\tb\n1\t2\n\n3\t4\n", 3, "empty line"),
        ("a\ta\n1\t2\n", 1, "duplicate column"),
    ],
)
def test_tsv_errors(tmp_path: Path, text: str, line: int | None, words: str) -> None:
    path = write(tmp_path / "bad.tsv", text)
    with pytest.raises(DataError) as err:
        read_tsv(path)
    assert err.value.line == line
    assert words in str(err.value) and str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_tsv(tmp_path / "nope.tsv")


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.tsv", b"a\tb\n1\t2\n3\t\xff\xfe\n")
    with pytest.raises(DataError, match="invalid UTF-8") as err:
        read_tsv(path)
    assert err.value.line == 3
    assert "fix:" in str(err.value)


def test_csv_quotes_and_multiline_records(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", 'text,label\n"one, two",a\n"multi\nline",b\nx,y,z\n')
    with pytest.raises(DataError, match="ragged") as err:
        read_csv(path)
    assert err.value.line == 5  # the multi-line record ends on line 4


def test_jsonl_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match="expected a JSON object") as err:
        read_jsonl(path)
    assert err.value.line == 2
    path = write(tmp_path / "b.jsonl", '{"a": 1}\n{"a": \n')
    with pytest.raises(DataError, match="invalid JSON") as err:
        read_jsonl(path)
    assert err.value.line == 2


def test_unknown_label_in_glue_file(tmp_path: Path) -> None:
    write(
        tmp_path / "RTE" / "train.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n",
    )
    with pytest.raises(DataError, match="'maybe' is not in") as err:
        load_examples(get_task("rte"), "train", tmp_path)
    assert err.value.line == 3


def test_missing_text_column(tmp_path: Path) -> None:
    write(tmp_path / "RTE" / "train.tsv", "index\tsentence1\tlabel\n0\ta\tentailment\n")
    with pytest.raises(DataError, match="missing text column 'sentence2'"):
        load_examples(get_task("rte"), "train", tmp_path)


def test_missing_label_column_on_a_labeled_split(tmp_path: Path) -> None:
    write(tmp_path / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\n0\ta\tb\n")
    with pytest.raises(DataError, match="no label column"):
        load_examples(get_task("rte"), "validation", tmp_path)


def test_non_numeric_regression_target(tmp_path: Path) -> None:
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    write(tmp_path / "STS-B" / "train.tsv", f"{head}\n0\tg\tf\ty\t0\ts\ts\ta\tb\tfive\n")
    with pytest.raises(DataError, match="'five' is not a number") as err:
        load_examples(get_task("stsb"), "train", tmp_path)
    assert err.value.line == 2


def test_label_inference(tmp_path: Path) -> None:
    path = write(tmp_path / "x.tsv", "t\tlabel\na\t2\nb\t10\nc\t2\n")
    assert infer_labels(path, read_tsv(path), "label", "auto") == ("2", "10")
    path = write(tmp_path / "y.tsv", "t\tlabel\na\t0.5\nb\t1\n")
    assert infer_labels(path, read_tsv(path), "label", "auto") is None
    path = write(tmp_path / "z.tsv", "t\tlabel\na\tpos\nb\t1\n")
    with pytest.raises(DataError, match="mixed labels") as err:
        infer_labels(path, read_tsv(path), "label", "auto")
    assert err.value.line == 3
    with pytest.raises(DataError, match="not a number"):
        infer_labels(path, read_tsv(path), "label", "regression")
    path = write(tmp_path / "w.tsv", "t\tlabel\na\tpos\nb\tpos\n")
    with pytest.raises(DataError, match="only one label"):
        infer_labels(path, read_tsv(path), "label", "auto")
