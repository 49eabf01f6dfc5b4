"""Random bytes and random TSV/CSV/JSONL shapes: every outcome is rows or a DataError."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartft.data.dataset import load_examples
from smartft.data.readers import read_rows
from smartft.data.tasks import get_task
from smartft.errors import DataError

FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
cell = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def outcome(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"f.{suffix}"
        path.write_bytes(data)
        try:
            rows = read_rows(path, suffix)
        except DataError:
            return
        assert rows and all(isinstance(r.fields, dict) for r in rows)


@FAST
@given(st.binary(max_size=300), st.sampled_from(["tsv", "csv", "jsonl", "json"]))
def test_random_bytes(data: bytes, suffix: str) -> None:
    outcome(data, suffix)


@FAST
@given(
    st.lists(st.lists(cell, min_size=0, max_size=5), max_size=6), st.sampled_from(["\n", "\r\n"])
)
def test_random_tsv_shapes(table: list[list[str]], newline: str) -> None:
    outcome(newline.join("\t".join(row) for row in table).encode("utf-8"), "tsv")


@FAST
@given(st.lists(st.lists(cell, min_size=0, max_size=5), max_size=6))
def test_random_csv_shapes(table: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(table)
    outcome(buffer.getvalue().encode("utf-8"), "csv")


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | cell,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(cell, inner, max_size=3),
    max_leaves=8,
)


@FAST
@given(st.lists(json_value, max_size=5))
def test_random_jsonl_shapes(values: list[object]) -> None:
    outcome("\n".join(json.dumps(v) for v in values).encode("utf-8"), "jsonl")


@FAST
@given(
    st.lists(
        st.tuples(cell, cell, st.sampled_from(["entailment", "not_entailment", "x", ""])),
        max_size=5,
    )
)
def test_random_rte_files_load_or_fail_cleanly(rows: list[tuple[str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        text = "index\tsentence1\tsentence2\tlabel\n" + "".join(
            f"{i}\t{a}\t{b}\t{label}\n" for i, (a, b, label) in enumerate(rows)
        )
        (Path(folder) / "train.tsv").write_text(text, encoding="utf-8")
        try:
            examples = load_examples(get_task("rte"), "train", Path(folder))
        except DataError:
            return
        assert examples.labels is not None and set(examples.labels) <= {0.0, 1.0}
