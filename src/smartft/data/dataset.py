"""From rows to model inputs: label checks and mapping, tokenization, dynamic padding, batching."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from smartft.choice import (
    answer_columns,
    answers_of,
    check_rows,
    count_answers,
    encode_choices,
    label_of,
)
from smartft.data.readers import Row, detect_format, read_rows
from smartft.data.tasks import TaskSpec, task_folder
from smartft.errors import ConfigError, DataError
from smartft.span import SpanLayout, encode_spans, reference_answers
from smartft.tagging import TOKEN_MASK, TagLayout


@dataclass
class Examples:
    """One split, validated: texts per example, label ids or floats (None for unlabeled test).
    A tagging task's example is a sentence: `texts` holds its words, `tags` their tag ids. A
    multiple-choice example's texts are (context, question, answer_1, ..., answer_k); a span
    example's are (question, context) and `answers` its reference answers as (text, start).
    `groups` (a context or an article) keeps examples that share one on the same side of a split.
    """

    path: Path
    texts: list[tuple[str, ...]]
    labels: list[float] | None
    ids: list[str]
    tags: list[list[int]] | None = None
    shape: str = "sentence"
    groups: list[str] | None = None
    answers: list[list[tuple[str, int]]] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def tagging(self) -> bool:
        return self.shape == "token"

    def head(self, n: int | None) -> Examples:
        if n is None or n >= len(self):
            return self
        return self.select(list(range(n)))

    def select(self, indices: Sequence[int]) -> Examples:
        def pick(values: list[Any] | None) -> list[Any] | None:
            return None if values is None else [values[i] for i in indices]

        texts, ids = [self.texts[i] for i in indices], [self.ids[i] for i in indices]
        return replace(
            self,
            texts=texts,
            labels=pick(self.labels),
            ids=ids,
            tags=pick(self.tags),
            groups=pick(self.groups),
            answers=pick(self.answers),
        )

    def sample(self, fraction: float, seed: int) -> Examples:
        """A seeded random subset of round(fraction · n) examples (at least one), in file order.

        The subset depends on `seed` only, so runs that differ in method or training seed but
        share `data_seed` see the same examples (a fair low-resource comparison).
        """
        if fraction >= 1.0:
            return self
        return self.split(fraction, seed)[0]

    def split(self, fraction: float, seed: int) -> tuple[Examples, Examples]:
        """(a seeded random round(fraction · n) examples, the rest), both in file order. With
        `groups`, whole groups are drawn (until the first part holds its share), so no context
        or article is on both sides."""
        generator = torch.Generator().manual_seed(seed)
        if self.groups is None:
            k = max(1, round(fraction * len(self)))
            order = torch.randperm(len(self), generator=generator).tolist()
            return self.select(sorted(order[:k])), self.select(sorted(order[k:]))
        members: dict[str, list[int]] = {}
        for index, group in enumerate(self.groups):
            members.setdefault(group, []).append(index)
        names = list(members)
        wanted, first = max(1, round(fraction * len(self))), list[int]()
        for g in torch.randperm(len(names), generator=generator).tolist():
            if len(first) >= wanted:
                break
            first += members[names[g]]
        chosen = set(first)
        rest = [i for i in range(len(self)) if i not in chosen]
        return self.select(sorted(first)), self.select(rest)


def split_path(spec: TaskSpec, split: str, data_dir: Path | None) -> Path:
    if split not in spec.files:
        raise DataError(
            f"task {spec.name}",
            f"has no '{split}' split",
            fix=f"choose one of {', '.join(spec.files)}",
        )
    name = Path(spec.files[split])
    if name.is_absolute():
        return name
    if data_dir is None:
        raise DataError(f"task {spec.name}", "no data folder given", fix="pass --data_dir")
    return task_folder(spec, data_dir, split) / name


def read_split(spec: TaskSpec, split: str, data_dir: Path | None) -> tuple[Path, list[Row]]:
    path = split_path(spec, split, data_dir)
    fmt = spec.fmt or detect_format(path)
    rows = read_rows(path, fmt, columns=spec.headerless.get(split), json_key=spec.json_key)
    if spec.split_column is not None:  # one file for every split (SICK)
        wanted = spec.split_values[split]
        rows = [row for row in rows if row.fields.get(spec.split_column) == wanted]
        if not rows:
            raise DataError(path, f"no row has {spec.split_column} = {wanted} ({split} split)")
    columns = list(spec.text_columns)
    first = rows[0]
    for column in columns:
        if column not in first.fields:
            raise first.error(
                path,
                f"missing text column '{column}' (found: {', '.join(map(str, first.fields))})",
                fix="check --text_columns / the file's header",
            )
    return path, rows


def _label_value(spec: TaskSpec, path: Path, row: Row) -> str | None:
    """The raw label as a string, or None when the split has no labels (test files)."""
    assert spec.label_column is not None
    value = row.fields.get(spec.label_column)
    if value is None:
        return None
    if spec.integer_labels and spec.labels is not None:
        if not isinstance(value, int) or not 0 <= value < len(spec.labels):
            raise row.error(path, f"label {value!r} is not an id in 0..{len(spec.labels) - 1}")
        return spec.labels[value]
    return str(value).strip()


def infer_labels(
    path: Path, rows: Sequence[Row], column: str, problem_type: str
) -> tuple[str, ...] | None:
    """Label set of a custom training file: None for regression, else the sorted label values.

    Integer-looking labels sort numerically; float labels (with a '.') mean regression unless
    classification was asked for; a file mixing numbers and words is refused.
    """
    if column not in rows[0].fields:
        raise rows[0].error(
            path, f"missing label column '{column}'", fix="check --label_column / the file's header"
        )
    for row in rows:
        if row.fields[column] is None:
            raise row.error(path, f"no '{column}' value", fix="every training row needs a label")
    values = [(row, str(row.fields[column]).strip()) for row in rows]
    numeric = [_is_number(v) for _, v in values]
    if problem_type == "regression":
        for (row, value), ok in zip(values, numeric, strict=True):
            if not ok:
                raise row.error(
                    path,
                    f"regression target {value!r} is not a number",
                    fix="use numeric labels, or --problem_type classification",
                )
        return None
    if any(numeric) and not all(numeric):
        bad = next(row for (row, _), ok in zip(values, numeric, strict=True) if ok != numeric[0])
        raise bad.error(
            path,
            "mixed labels: some are numbers and some are words",
            fix="use one kind of label throughout the file",
        )
    if (
        all(numeric)
        and problem_type == "auto"
        and any("." in v or "e" in v.lower() for _, v in values)
    ):
        return None
    distinct = {v for _, v in values}
    key = (lambda v: float(v)) if all(numeric) else (lambda v: v)
    labels = tuple(sorted(distinct, key=key))
    if len(labels) < 2:
        raise rows[0].error(
            path,
            f"only one label value ({labels[0]!r}) in the training file",
            fix="classification needs at least two classes",
        )
    return labels


def _is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def infer_tags(path: Path, rows: Sequence[Row]) -> tuple[str, ...]:
    """The tag set of a custom CoNLL training file: "O" first, then the others sorted."""
    if "tags" not in rows[0].fields:
        raise rows[0].error(path, "the training file has no tag column", fix="word<TAB>tag lines")
    tags = {tag for row in rows for tag in row.fields["tags"]}
    return ("O", *sorted(tags - {"O"})) if "O" in tags else tuple(sorted(tags))


def to_sentences(
    spec: TaskSpec, split: str, path: Path, rows: Sequence[Row], require_labels: bool
) -> Examples:
    """A tagging task's sentences, every tag checked against the task's tag set."""
    assert spec.labels is not None
    tag_to_id = {t: i for i, t in enumerate(spec.labels)}
    has_tags = "tags" in rows[0].fields
    if require_labels and not has_tags:
        raise rows[0].error(
            path, f"the {split} split has no tag column", fix="give a tagged (two-column) file"
        )
    tags: list[list[int]] = []
    for row in rows:
        for offset, tag in enumerate(row.fields.get("tags") or ()):
            if tag not in tag_to_id:
                raise DataError(
                    path,
                    f"unknown tag {tag!r} (the task's tags: {', '.join(spec.labels)})",
                    line=row.line + offset,
                    fix="fix the tag, or train on data that contains it",
                )
        if has_tags:
            tags.append([tag_to_id[t] for t in row.fields["tags"]])
    texts = [tuple(row.fields["tokens"]) for row in rows]
    ids = [str(row.line) for row in rows]
    return Examples(path, texts, None, ids, tags if has_tags else None, shape="token")


def to_choices(
    spec: TaskSpec, split: str, path: Path, rows: Sequence[Row], require_labels: bool
) -> Examples:
    """A multiple-choice task's questions: the context and question columns, k answers each
    and the index of the right one, every row checked (`smartft.choice`); k is the task's, or
    for your own file, the first row's."""
    k = spec.num_labels if spec.labels else count_answers(path, rows)
    columns = answer_columns(path, rows[0])
    check_rows(path, rows, spec.text_columns)
    texts: list[tuple[str, ...]] = []
    labels: list[float] = []
    ids: list[str] = []
    for row in rows:
        answers = answers_of(path, row, columns, k)
        assert spec.label_column is not None
        label = label_of(path, row, spec.label_column, k)
        if label is None and (require_labels or labels):
            raise row.error(path, f"no '{spec.label_column}' value", fix="label every question")
        if label is not None:
            if len(labels) != len(texts):
                raise row.error(path, "labelled, but the rows above are not")
            labels.append(float(label))
        texts.append((*(str(row.fields[c]) for c in spec.text_columns), *answers))
        ident = row.fields.get(spec.id_column) if spec.id_column else None
        ids.append(str(ident) if ident not in (None, "") else str(len(ids)))
    groups = [t[0] for t in texts]  # the context: no passage on both sides of a split
    return Examples(path, texts, labels or None, ids, shape="choice", groups=groups)


def to_spans(spec: TaskSpec, path: Path, rows: Sequence[Row], require_labels: bool) -> Examples:
    """A span task's questions: (question, context), the reference answers, the article."""
    texts: list[tuple[str, ...]] = []
    ids: list[str] = []
    answers: list[list[tuple[str, int]]] = []
    groups: list[str] = []
    column = spec.label_column or "answers"
    for row in rows:
        question, context = row.fields.get("question"), row.fields.get("context")
        if not isinstance(question, str) or not question.strip() or not isinstance(context, str):
            raise row.error(path, f"question {row.fields.get('id')!r} has no question text")
        found = reference_answers(path, row, column) if column in row.fields else []
        if require_labels and not found:
            raise row.error(path, f"question {row.fields.get('id')!r} has no answer")
        texts.append((question, context))
        ids.append(str(row.fields.get("id", len(ids))))
        answers.append(found)
        groups.append(str(row.fields.get("title", "")))
    if len(set(ids)) != len(ids):
        duplicate = next(i for i, c in collections.Counter(ids).items() if c > 1)
        raise DataError(path, f"question id {duplicate!r} is used twice")
    labelled = any(answers)
    return Examples(
        path, texts, None, ids, shape="span", groups=groups, answers=answers if labelled else None
    )


def to_examples(
    spec: TaskSpec, split: str, path: Path, rows: Sequence[Row], require_labels: bool
) -> Examples:
    """Validate every row and map labels to ids (classification) or floats (regression)."""
    if spec.tagging:
        return to_sentences(spec, split, path, rows, require_labels)
    if spec.shape == "choice":
        return to_choices(spec, split, path, rows, require_labels)
    if spec.shape == "span":
        return to_spans(spec, path, rows, require_labels)
    texts: list[tuple[str, ...]] = []
    labels: list[float] = []
    ids: list[str] = []
    label_to_id = {v: i for i, v in enumerate(spec.labels or ())}
    has_labels = spec.label_column is not None and spec.label_column in rows[0].fields
    if require_labels and not has_labels:
        raise rows[0].error(
            path,
            f"the {split} split has no label column '{spec.label_column}'",
            fix="give a labeled file for this split",
        )
    for row in rows:
        text = tuple(row.fields.get(c) for c in spec.text_columns)
        if not all(isinstance(t, str) for t in text):
            missing = [
                c for c, t in zip(spec.text_columns, text, strict=True) if not isinstance(t, str)
            ]
            raise row.error(path, f"text column(s) {', '.join(missing)} missing or not text")
        if has_labels:
            raw = _label_value(spec, path, row)
            if raw is None:
                raise row.error(path, f"no '{spec.label_column}' value")
            if raw in spec.skip_labels:
                continue
            if spec.labels is None:
                if not _is_number(raw):
                    raise row.error(
                        path,
                        f"regression target {raw!r} is not a number",
                        fix="every label must be a finite number",
                    )
                labels.append(float(raw))
            elif raw not in label_to_id:
                where = "the training label set" if split != "train" else "the task's labels"
                raise row.error(
                    path,
                    f"label {raw!r} is not in {where} ({', '.join(spec.labels)})",
                    fix="fix the label, or train on data that contains it",
                )
            else:
                labels.append(float(label_to_id[raw]))
        texts.append(text)  # type: ignore[arg-type]
        ident = row.fields.get(spec.id_column) if spec.id_column else None
        ids.append(str(ident) if ident is not None else str(len(ids)))
    if not texts:
        raise DataError(path, "no usable rows (all were skipped)")
    return Examples(path, texts, labels if has_labels else None, ids)


def load_examples(
    spec: TaskSpec, split: str, data_dir: Path | None, require_labels: bool = True
) -> Examples:
    path, rows = read_split(spec, split, data_dir)
    return to_examples(spec, split, path, rows, require_labels)


class Features(torch.utils.data.Dataset[dict[str, Any]]):
    """Tokenized examples; padding happens per batch in `collate`."""

    def __init__(
        self,
        encodings: dict[str, list[list[int]]] | dict[str, list[list[list[int]]]],
        labels: Sequence[float] | Sequence[list[int]] | None,
        regression: bool,
        layout: TagLayout | SpanLayout | None = None,
    ) -> None:
        self.encodings = encodings
        self.labels = labels
        self.regression = regression
        self.layout = layout  # which word each labelled token is, which question each window
        # a multiple-choice example is k sequences: its length is the longest
        self.lengths = [
            max(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)
            for ids in encodings["input_ids"]
        ]
        self.soft: list[list[float]] | None = None  # distillation targets, one row per example

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {k: v[index] for k, v in self.encodings.items()}
        if self.labels is not None:
            item["labels"] = self.labels[index]
        if self.soft is not None:
            item["soft_labels"] = self.soft[index]
        return item


def tokenize(
    examples: Examples,
    tokenizer: Any,
    max_length: int,
    regression: bool,
    keys: tuple[str, ...] = ("input_ids", "token_type_ids", "attention_mask"),
    doc_stride: int | None = None,
    max_answer_length: int = 30,
) -> Features:
    """Token ids (and the other inputs in `keys` the tokenizer gives) for each example: for a
    span task, for each window of each context (`doc_stride`, `max_answer_length`: span.py)."""
    if examples.tagging:
        return tokenize_words(examples, tokenizer, max_length, keys)
    if examples.shape == "choice":
        encodings = encode_choices(examples.texts, tokenizer, max_length, keys)
        return Features(encodings, examples.labels, False)
    if examples.shape == "span":
        stride = max_length // 3 if doc_stride is None else doc_stride
        windows, labels, layout = encode_spans(
            examples, tokenizer, max_length, keys, stride, max_answer_length
        )
        return Features(windows, labels, False, layout)
    columns = list(zip(*examples.texts, strict=True))
    second = list(columns[1]) if len(columns) > 1 else None
    encoded = tokenizer(list(columns[0]), second, truncation=True, max_length=max_length)
    keep = [k for k in keys if k in encoded]
    return Features({k: encoded[k] for k in keep}, examples.labels, regression)


def tokenize_words(
    examples: Examples, tokenizer: Any, max_length: int, keys: tuple[str, ...]
) -> Features:
    """Subword ids for sentences given as words; the first subword of each word is labelled
    (`token_mask` 1, its word's tag in the labels), the rest are not. Needs a fast tokenizer,
    which knows which word each subword came from."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            "tagging tasks need a fast tokenizer (one with a tokenizer.json), to align tags to "
            "subwords; the model's folder has only a slow one"
        )
    encoded = tokenizer(
        [list(words) for words in examples.texts],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    masks, positions = [], []
    for i in range(len(examples)):
        previous, mask, words = None, [], []
        for word in encoded.word_ids(i):
            first = word is not None and word != previous
            mask.append(int(first))
            if first:
                words.append(word)
            previous = word
        masks.append(mask)
        positions.append(words)
    encodings = {k: encoded[k] for k in keys if k in encoded}
    encodings[TOKEN_MASK] = masks
    layout = TagLayout(positions, [len(words) for words in examples.texts], examples.tags)
    labels = None
    if examples.tags is not None:
        labels = [
            [tags[w] for w in words] for tags, words in zip(examples.tags, positions, strict=True)
        ]
    return Features(encodings, labels, False, layout)


INPUTS = ("input_ids", "token_type_ids", "attention_mask", TOKEN_MASK)


class Collator:
    """Pads a list of features to the longest in the batch (dynamic padding)."""

    def __init__(self, pad_token_id: int, regression: bool) -> None:
        self.pad_token_id = pad_token_id
        self.regression = regression

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = items
        if isinstance(items[0]["input_ids"][0], list):  # multiple choice: k rows per example
            rows = [
                {k: item[k][i] for k in INPUTS if k in item}
                for item in items
                for i in range(len(item["input_ids"]))
            ]
        width = max(len(row["input_ids"]) for row in rows)
        batch: dict[str, torch.Tensor] = {}
        for key in INPUTS:
            if key not in rows[0]:
                continue
            fill = self.pad_token_id if key == "input_ids" else 0
            batch[key] = torch.tensor(
                [row[key] + [fill] * (width - len(row[key])) for row in rows], dtype=torch.long
            )
        if "labels" in items[0] and isinstance(items[0]["labels"], list):  # tags, flat
            tags = [t for item in items for t in item["labels"]]
            batch["labels"] = torch.tensor(tags, dtype=torch.long)
        elif "labels" in items[0]:
            dtype = torch.float32 if self.regression else torch.long
            batch["labels"] = torch.tensor([item["labels"] for item in items], dtype=dtype)
        if "soft_labels" in items[0]:
            batch["soft_labels"] = torch.tensor(
                [item["soft_labels"] for item in items], dtype=torch.float32
            )
        return batch


class BatchSampler(torch.utils.data.Sampler[list[int]]):
    """Seeded, epoch-aware batches; optionally grouped by length to cut padding.

    Grouping shuffles, cuts the order into chunks of 50 batches, sorts each chunk by length and
    shuffles the resulting batches: similar lengths share a batch, the order stays random.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int,
        group_by_length: bool = False,
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.group_by_length = group_by_length
        self.epoch = 0
        self.skip = 0  # batches to leave out at the start of the next iteration (resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0
        yield from self.batches()[skip:]

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in order."""
        n, size = len(self.lengths), self.batch_size
        if not self.shuffle:
            return [list(range(i, min(i + size, n))) for i in range(0, n, size)]
        generator = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        order = torch.randperm(n, generator=generator).tolist()
        if not self.group_by_length:
            return [order[i : i + size] for i in range(0, n, size)]
        chunk = 50 * size
        grouped: list[list[int]] = []
        for start in range(0, n, chunk):
            part = sorted(order[start : start + chunk], key=lambda i: -self.lengths[i])
            grouped.extend(part[i : i + size] for i in range(0, len(part), size))
        return [grouped[b] for b in torch.randperm(len(grouped), generator=generator).tolist()]
