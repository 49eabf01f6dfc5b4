"""`--task_def FILE.yaml`: your own tasks, described in mt-dnn's field names.

    my_nli:
      task_type: Classification       # or Regression, MultipleChoice, Span
      labels: [contradiction, neutral, entailment]   # or n_class: 3 (labels 0..n-1)
      metric_meta: [ACC, F1]          # ACC, F1, MCC, Pearson, Spearman
      loss: CeCriterion               # CeCriterion (classification) or MseCriterion
      kd_loss: KlCriterion            # optional: KlCriterion or MseCriterion
      adv_loss: SymKlCriterion        # optional: SymKlCriterion or MseCriterion
      dropout_p: 0.1                  # optional: the head's dropout
      data: {train: nli/train.jsonl, dev: nli/dev.jsonl, test: nli/test.jsonl}
      text_columns: [premise, hypothesis]
      label_column: label

A MultipleChoice task reads rows of a context, a question, answers (`answer0`, `answer1`, ...
or an `answers` list) and the right answer's number (`n_class`: the number of answers, else the
training file's); a Span task reads SQuAD v1.1 JSON files (metric_meta EmF1, the default).
Paths are read relative to the YAML file. Every field is checked: an unknown field, type, metric
or criterion is one error naming the task and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from smartft.data.tasks import SPAN_METRICS, TaskSpec
from smartft.errors import ConfigError

METRICS = {
    "acc": "accuracy",
    "f1": "f1",
    "mcc": "mcc",
    "pearson": "pearson",
    "spearman": "spearman",
}
TYPES = {
    "classification": "CeCriterion",
    "regression": "MseCriterion",
    "multiplechoice": "CeCriterion",
    "span": "SpanCeCriterion",
}
SHAPES = {"multiplechoice": "choice", "span": "span"}
CRITERIA = {"klcriterion": "KlCriterion", "symklcriterion": "SymKlCriterion", "msecriterion": ""}
FIELDS = {
    "task_type", "n_class", "labels", "metric_meta", "loss", "kd_loss", "adv_loss", "dropout_p",
    "data", "text_columns", "label_column",
}  # fmt: skip
SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def load_task_defs(path: str) -> dict[str, TaskSpec]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--task_def: file not found: {path}")
    try:
        tasks = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(tasks, dict) or not tasks:
        raise ConfigError(f"{path}: expected a mapping of task names to their definitions")
    return {str(name): task_spec(str(name), fields, file) for name, fields in tasks.items()}


def _choice(where: str, key: str, value: Any, allowed: dict[str, str]) -> str:
    found = allowed.get(str(value).lower())
    if found is None:
        raise ConfigError(f"{where}: {key} {value!r} is not one of {', '.join(allowed)}")
    return found


def _kind(where: str, fields: dict[str, Any]) -> str:
    """'classification' or 'regression', checked against the criteria named."""
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        known = ", ".join(sorted(FIELDS))
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {known})")
    kind = str(fields.get("task_type", "")).lower()
    if kind not in TYPES:
        raise ConfigError(
            f"{where}: task_type {fields.get('task_type')!r} is not supported "
            "(Classification, Regression, MultipleChoice or Span)"
        )
    loss = fields.get("loss", TYPES[kind])
    if loss != TYPES[kind]:
        raise ConfigError(f"{where}: loss {loss!r} does not fit a {kind} task ({TYPES[kind]})")
    for key in ("kd_loss", "adv_loss"):
        if key in fields:
            _choice(where, key, fields[key], CRITERIA)
    return kind


def _labels(where: str, fields: dict[str, Any], kind: str) -> tuple[str, ...] | None:
    if kind in ("regression", "span"):
        return None
    if kind == "multiplechoice" and "n_class" not in fields:
        return ()  # the number of answers of the training file's first row
    if "labels" in fields:
        return tuple(str(x) for x in fields["labels"])
    if isinstance(fields.get("n_class"), int) and fields["n_class"] >= 2:
        return tuple(str(i) for i in range(fields["n_class"]))
    raise ConfigError(f"{where}: a classification task needs labels or n_class (≥ 2)")


def task_spec(name: str, fields: Any, file: Path) -> TaskSpec:
    where = f"{file}: task {name}"
    if not isinstance(fields, dict):
        raise ConfigError(f"{where}: expected a mapping of fields")
    kind = _kind(where, fields)
    labels = _labels(where, fields, kind)
    if kind == "span":
        return span_spec(name, fields, file, where)
    metrics = tuple(
        _choice(where, "metric_meta", m, METRICS) for m in fields.get("metric_meta") or []
    ) or (("accuracy",) if labels is not None else ("pearson", "spearman"))
    columns = fields.get("text_columns")
    if kind == "multiplechoice" and (not isinstance(columns, list) or len(columns) != 2):
        raise ConfigError(f"{where}: text_columns must name the context and question columns")
    if not isinstance(columns, list) or not 1 <= len(columns) <= 2:
        raise ConfigError(f"{where}: text_columns must list one or two column names")
    return TaskSpec(
        name=name,
        files=_files(where, fields, file),
        text_columns=tuple(str(c) for c in columns),
        label_column=str(fields.get("label_column", "label")),
        labels=labels,
        metrics=metrics,
        fmt="",
        id_column="id" if kind == "multiplechoice" else None,
        dropout=_dropout(where, fields),
        shape=SHAPES.get(kind, "sentence"),
    )


def _dropout(where: str, fields: dict[str, Any]) -> float | None:
    dropout = fields.get("dropout_p")
    if dropout is not None and not (isinstance(dropout, int | float) and 0 <= dropout < 1):
        raise ConfigError(f"{where}: dropout_p must be in [0, 1), got {dropout!r}")
    return None if dropout is None else float(dropout)


def _files(where: str, fields: dict[str, Any], file: Path) -> dict[str, str]:
    data = fields.get("data")
    if not isinstance(data, dict) or "train" not in data or set(data) - set(SPLITS):
        raise ConfigError(f"{where}: data must map train (and dev, test) to files")
    return {SPLITS[k]: str((file.parent / v).resolve()) for k, v in data.items()}


def span_spec(name: str, fields: dict[str, Any], file: Path, where: str) -> TaskSpec:
    """A Span task: SQuAD v1.1 JSON files, scored by exact match and token F1 (EmF1)."""
    for metric in fields.get("metric_meta") or ["EmF1"]:
        if str(metric).lower() not in ("emf1", "em", "f1"):
            raise ConfigError(f"{where}: metric_meta {metric!r} does not fit a Span task (EmF1)")
    return TaskSpec(
        name=name,
        files=_files(where, fields, file),
        text_columns=("question", "context"),
        label_column="answers",
        labels=None,
        metrics=SPAN_METRICS,
        fmt="squad",
        id_column="id",
        dropout=_dropout(where, fields),
        shape="span",
    )
