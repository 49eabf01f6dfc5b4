"""Strict readers for TSV, CSV, JSONL, JSON, CoNLL and (with pyarrow) Parquet files and folders
written by `datasets`' `save_to_disk`.

GLUE TSVs contain fields that start with a double quote, so TSV is split on tabs with no quote
processing at all. Every problem raises a `DataError` naming the file and the line as an editor
numbers it (the header is line 1).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smartft.errors import DataError

FORMATS = ("tsv", "csv", "jsonl", "json", "conll", "parquet", "arrow")


@dataclass(frozen=True)
class Row:
    """One record with where it came from (a file line, or a JSON record's position)."""

    line: int
    fields: dict[str, Any]
    unit: str = "line"

    def error(self, path: Path, problem: str, fix: str = "") -> DataError:
        return DataError(path, problem, line=self.line, fix=fix, unit=self.unit)


def detect_format(path: Path) -> str:
    if path.is_dir():
        return _folder_format(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("tsv", "txt"):
        return "tsv"
    if suffix in ("conll", "bio", "iob"):
        return "conll"
    if suffix in FORMATS:
        return suffix
    raise DataError(
        path,
        f"cannot tell the format from the extension '.{suffix}'",
        fix="name the file .tsv, .csv, .jsonl, .json, .conll or .parquet, or give a folder "
        "written by datasets' save_to_disk",
    )


def _folder_format(path: Path) -> str:
    """A folder is data only when `datasets`' save_to_disk wrote it (one split)."""
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise DataError(
            path,
            f"is a DatasetDict folder holding several splits ({', '.join(splits)})",
            fix=f"point to one split's folder, e.g. {path / (splits[0] if splits else 'train')}",
        )
    if any(path.glob("*.arrow")):
        return "arrow"
    raise DataError(
        path,
        "is a folder without data files",
        fix="give a data file, or a folder written by datasets' save_to_disk (*.arrow inside)",
    )


def read_text(path: Path) -> str:
    """Read a whole file as UTF-8 (a BOM is dropped); invalid bytes are reported by line."""
    if not path.exists():
        raise DataError(
            path,
            "file not found",
            fix="check --data_dir / the file flag; see the README for the layout",
        )
    if not path.is_file():
        raise DataError(path, "is not a file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            path,
            f"invalid UTF-8 (byte 0x{raw[err.start]:02x})",
            line=line,
            fix="re-save the file as UTF-8",
        ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise DataError(path, "file is empty", fix="point to a file with a header and data rows")
    return text


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _rows_from_table(
    path: Path, table: list[list[str]], lines: list[int], columns: Sequence[str] | None
) -> list[Row]:
    """Turn split records into named rows; `columns` names a headerless file's columns."""
    if columns is None:
        header, body, body_lines = table[0], table[1:], lines[1:]
        if len(set(header)) != len(header):
            raise DataError(path, f"duplicate column names in the header {header}", line=1)
    else:
        header, body, body_lines = list(columns), table, lines
    rows = []
    for line, values in zip(body_lines, body, strict=True):
        if values == [""]:
            raise DataError(path, "empty line inside the data", line=line, fix="delete the line")
        if len(values) != len(header):
            raise DataError(
                path,
                f"ragged row: {len(values)} fields where the header has {len(header)}",
                line=line,
                fix="every row needs exactly one value per column (tabs inside "
                "a field are not allowed in TSV)",
            )
        rows.append(Row(line, dict(zip(header, values, strict=True))))
    if not rows:
        raise DataError(path, "header only, no data rows", fix="add data rows below the header")
    return rows


def read_tsv(path: Path, columns: Sequence[str] | None = None) -> list[Row]:
    table = [line.split("\t") for line in _lines(read_text(path))]
    return _rows_from_table(path, table, list(range(1, len(table) + 1)), columns)


def read_csv(path: Path, columns: Sequence[str] | None = None) -> list[Row]:
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    table: list[list[str]] = []
    line_numbers: list[int] = []
    try:
        for values in reader:
            table.append(values if values else [""])
            line_numbers.append(reader.line_num)
    except csv.Error as err:
        raise DataError(
            path,
            f"malformed CSV: {err}",
            line=reader.line_num,
            fix="quote fields that contain commas, quotes or newlines",
        ) from None
    # A quoted CSV record may span lines: it is numbered by the line where it ends.
    return _rows_from_table(path, table, line_numbers, columns)


DOCSTART = "-DOCSTART-"


def read_conll(path: Path) -> list[Row]:
    """Sentences of a CoNLL file: one word per line, the word in the first column and its tag in
    the last (`word<TAB>tag` as WNUT-17, or CoNLL-2003's four space-separated columns; a file with
    one column has no tags). Empty or whitespace-only lines (WNUT-17's train file uses a lone TAB)
    end a sentence, `-DOCSTART-` lines mark documents and are skipped. Each row holds `tokens`
    (and `tags`) and is numbered by its sentence's first line.

    Strict: every word line has the first line's number of columns (TAB-separated files are split
    on TABs only, so a word may hold a space), and no word or tag is empty."""
    rows: list[Row] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    width: int | None = None
    tabbed = False

    def close() -> None:
        if tokens:
            fields = {"tokens": list(tokens), **({"tags": list(tags)} if width != 1 else {})}
            rows.append(Row(start, fields))
        tokens.clear()
        tags.clear()

    for number, line in enumerate(_lines(read_text(path)), start=1):
        if not line.strip():
            close()
            continue
        if width is None:
            tabbed = "\t" in line
        values = line.split("\t") if tabbed else line.split()
        if values[0] == DOCSTART:
            close()
            continue
        if width is None:
            width = len(values)
        if len(values) != width:
            kind = "TAB-separated columns" if tabbed else "columns"
            raise DataError(
                path,
                f"ragged line: {len(values)} {kind} where the file's first line has {width}",
                line=number,
                fix="one word per line: the word, then the same columns on every line",
            )
        if not values[0].strip():
            raise DataError(path, "empty word", line=number, fix="every word line needs a word")
        if width > 1 and not values[-1].strip():
            raise DataError(path, "empty tag", line=number, fix="give every word a tag (O if none)")
        if not tokens:
            start = number
        tokens.append(values[0])
        if width > 1:
            tags.append(values[-1].strip())
    close()
    if not rows:
        raise DataError(
            path,
            "no sentences (only empty lines and -DOCSTART- markers)",
            fix="one word per line, sentences separated by empty lines",
        )
    return rows


def _expect_object(path: Path, value: Any, line: int | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(path, f"expected a JSON object, found {type(value).__name__}", line=line)
    return value


def read_jsonl(path: Path) -> list[Row]:
    rows = []
    for number, line in enumerate(_lines(read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                path, f"invalid JSON: {err.msg}", line=number, fix="one JSON object per line"
            ) from None
        rows.append(Row(number, _expect_object(path, value, number)))
    if not rows:
        raise DataError(path, "no JSON objects in the file")
    return rows


def read_json_list(path: Path, key: str | None) -> list[Row]:
    """A JSON file holding a list of objects, or (AdvGLUE) an object mapping `key` to that list.

    JSON has no line numbers per record, so errors further down name the record's position.
    """
    try:
        value = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(path, f"invalid JSON: {err.msg}", line=err.lineno) from None
    if key is not None:
        obj = _expect_object(path, value, None)
        if key not in obj:
            raise DataError(path, f"no key '{key}' (found: {', '.join(sorted(obj)) or 'none'})")
        value = obj[key]
    if not isinstance(value, list) or not value:
        raise DataError(path, "expected a non-empty JSON list of objects")
    return [
        Row(i, _expect_object(path, item, None), unit="record")
        for i, item in enumerate(value, start=1)
    ]


def _arrow_table(path: Path, fmt: str) -> Any:
    """A pyarrow Table from a Parquet file, an Arrow file, or a save_to_disk folder."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            path,
            f"reading {fmt} data needs pyarrow, which is not installed",
            fix="pip install pyarrow  (or: pip install 'smartft[parquet]')",
        ) from None
    if not path.exists():
        raise DataError(path, "file not found", fix="check the path")
    files = sorted(path.glob("*.arrow")) if path.is_dir() else [path]
    tables = []
    for file in files:
        try:
            if fmt == "parquet":
                tables.append(pq.read_table(file))
                continue
            with pa.memory_map(str(file)) as source:
                try:  # datasets writes the Arrow stream format; others the file format
                    tables.append(pa.ipc.open_stream(source).read_all())
                except pa.ArrowInvalid:
                    source.seek(0)
                    tables.append(pa.ipc.open_file(source).read_all())
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(file, f"not a readable {fmt} file: {err}") from None
    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid as err:
        raise DataError(path, f"the Arrow files disagree on their columns: {err}") from None


def read_arrow(path: Path, fmt: str) -> list[Row]:
    """Rows of a Parquet file or a save_to_disk folder, numbered from 1 in file order."""
    table = _arrow_table(path, fmt)
    if table.num_rows == 0:
        raise DataError(path, "no rows", fix="point to a file with data rows")
    return [Row(i, fields, unit="row") for i, fields in enumerate(table.to_pylist(), start=1)]


def read_squad(path: Path) -> list[Row]:
    """One row per question of a SQuAD JSON file (`{"data": [{"title", "paragraphs": [{"context",
    "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}`); errors name the
    question's position and id."""
    try:
        document = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(path, f"invalid JSON: {err.msg}", line=err.lineno) from None
    articles = document.get("data") if isinstance(document, dict) else None
    if not isinstance(articles, list) or not articles:
        raise DataError(path, 'not a SQuAD file: expected {"data": [articles], ...}')
    rows: list[Row] = []
    for number, article in enumerate(articles, start=1):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(path, f"article {number} has no 'paragraphs' list")
        title = str(article.get("title", number))
        for paragraph in paragraphs:
            context, questions = paragraph.get("context"), paragraph.get("qas")
            if not isinstance(context, str) or not isinstance(questions, list):
                raise DataError(path, f"article {number}: a paragraph lacks 'context' or 'qas'")
            for qa in questions:
                fields = {"title": title, "context": context, **qa}
                rows.append(Row(len(rows) + 1, fields, unit="question"))
    if not rows:
        raise DataError(path, "no questions in the file")
    return rows


def read_rows(
    path: Path, fmt: str, *, columns: Sequence[str] | None = None, json_key: str | None = None
) -> list[Row]:
    if fmt in ("parquet", "arrow"):
        return read_arrow(path, fmt)
    if fmt == "tsv":
        return read_tsv(path, columns)
    if fmt == "csv":
        return read_csv(path, columns)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "json":
        return read_json_list(path, json_key)
    if fmt == "conll":
        return read_conll(path)
    if fmt == "squad":
        return read_squad(path)
    raise DataError(path, f"unknown format '{fmt}'", fix=f"use one of {', '.join(FORMATS)}")
