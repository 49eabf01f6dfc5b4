"""Where a run's data comes from: a registered task under --data_dir, or the user's own files.
Everything is read and validated here, before a run writes anything."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from smartft.choice import answer_ids, count_answers
from smartft.config import TrainConfig
from smartft.data.dataset import (
    Examples,
    infer_labels,
    infer_tags,
    load_examples,
    read_split,
    to_examples,
)
from smartft.data.readers import detect_format
from smartft.data.task_def import load_task_defs
from smartft.data.tasks import TAG_METRICS, TASKS, TaskSpec, get_task
from smartft.errors import ConfigError
from smartft.transfer import Transfer, transfer


def custom_task(cfg: TrainConfig) -> TaskSpec:
    """A task made from --train_file/--validation_file/--test_file; labels inferred later.
    CoNLL files (.conll, .bio, .iob) make a tagging task."""
    files = {
        split: str(Path(f).resolve())
        for split, f in (
            ("train", cfg.train_file),
            ("validation", cfg.validation_file),
            ("test", cfg.test_file),
        )
        if f
    }
    if cfg.problem_type == "multiple_choice":
        columns = tuple(c.strip() for c in (cfg.text_columns or "context,question").split(","))
        if len(columns) != 2 or not all(columns):
            raise ConfigError(
                "--problem_type multiple_choice: --text_columns names the context and the "
                f"question columns (two names), got {cfg.text_columns!r}"
            )
        return TaskSpec(
            name="custom",
            files=files,
            text_columns=columns,
            label_column=cfg.label_column,
            labels=(),
            metrics=("accuracy",),
            fmt="",
            id_column="id",
            submission={"test": "predictions.tsv"} if cfg.test_file else {},
            shape="choice",
        )
    if detect_format(Path(next(iter(files.values())))) == "conll":
        return TaskSpec(
            name="custom",
            files=files,
            text_columns=("tokens",),
            label_column="tags",
            labels=(),
            metrics=TAG_METRICS,
            fmt="conll",
            id_column=None,
            submission={"test": "predictions.conll"} if cfg.test_file else {},
            shape="token",
        )
    if not cfg.text_columns:
        raise ConfigError("custom data needs --text_columns (one or two comma-separated names)")
    columns = tuple(c.strip() for c in cfg.text_columns.split(",") if c.strip())
    if not 1 <= len(columns) <= 2:
        raise ConfigError(f"--text_columns: expected one or two names, got {cfg.text_columns!r}")
    labels: tuple[str, ...] | None = None if cfg.problem_type == "regression" else ()
    return TaskSpec(
        name="custom",
        files=files,
        text_columns=columns,
        label_column=cfg.label_column,
        labels=labels,
        metrics=("accuracy",),
        fmt="",
        id_column=None,
        submission={"test": "predictions.tsv"} if cfg.test_file else {},
    )


def with_metrics(spec: TaskSpec, labels: tuple[str, ...] | None) -> TaskSpec:
    """Custom tasks: fix the label set and pick metrics that suit it."""
    if spec.tagging:
        return replace(spec, labels=labels)
    if labels is None:
        return replace(spec, labels=None, metrics=("pearson", "spearman"))
    return replace(
        spec, labels=labels, metrics=("accuracy", "f1") if len(labels) == 2 else ("accuracy",)
    )


def resolve_task(cfg: TrainConfig) -> TaskSpec:
    custom = cfg.train_file or cfg.validation_file or cfg.test_file
    if cfg.task_name and custom:
        raise ConfigError("give either --task_name (with --data_dir) or custom files, not both")
    if cfg.task_name and cfg.task_def:
        defined = load_task_defs(cfg.task_def)
        clash = sorted(set(defined) & set(TASKS))
        if clash:
            raise ConfigError(
                f"--task_def {cfg.task_def} defines {', '.join(clash)}, the name of a registered "
                "task; give it another name"
            )
        if cfg.task_name in defined:
            return defined[cfg.task_name]
    if cfg.task_name:
        if not cfg.data_dir:
            raise ConfigError(
                f"--task_name {cfg.task_name} needs --data_dir (e.g. ../shared/data/glue)"
            )
        return get_task(cfg.task_name)
    if custom:
        return custom_task(cfg)
    raise ConfigError(
        "no data: give --task_name and --data_dir, or --train_file and "
        "--validation_file with --text_columns"
    )


def data_dir(cfg: TrainConfig) -> Path | None:
    return Path(cfg.data_dir) if cfg.data_dir else None


@dataclass
class TrainData:
    spec: TaskSpec
    train: Examples
    eval: Examples | None
    test: Examples | None = None  # --do_predict
    dev: Examples | None = None  # --score_dev_at_end: scored once, after the held-out choice
    ood: list[tuple[Transfer, Examples]] = field(default_factory=list)  # --ood_tasks


def load_train_data(cfg: TrainConfig) -> TrainData:
    """Read and validate every file the run needs before anything is written."""
    spec = resolve_task(cfg)
    if "train" not in spec.files:
        raise ConfigError(f"task {spec.name} has no training split")
    path, rows = read_split(spec, "train", data_dir(cfg))
    if spec.shape == "choice" and not spec.labels:  # your own file: k from its first row
        spec = replace(spec, labels=answer_ids(count_answers(path, rows)))
    elif spec.tagging and spec.labels == ():
        spec = with_metrics(spec, infer_tags(path, rows))
    elif spec.labels == () or spec.name == "custom":
        spec = with_metrics(
            spec, infer_labels(path, rows, spec.label_column or "label", cfg.problem_type)
        )
    train = to_examples(spec, "train", path, rows, require_labels=True)
    evaluation = dev = None
    if cfg.holdout_fraction > 0:  # model selection on training data, never on dev
        evaluation, train = train.split(cfg.holdout_fraction, cfg.data_seed + 1)
        if cfg.score_dev_at_end:  # read now; scored once, after the choice
            dev = load_examples(spec, spec.eval_split, data_dir(cfg))
    elif spec.eval_split in spec.files:
        evaluation = load_examples(spec, spec.eval_split, data_dir(cfg))
    return TrainData(
        spec,
        train.sample(cfg.train_fraction, cfg.data_seed).head(cfg.max_train_samples),
        evaluation.head(cfg.max_eval_samples) if evaluation else None,
        test_examples(cfg, spec),
        dev.head(cfg.max_eval_samples) if dev else None,
        ood_examples(cfg, spec),
    )


def ood_examples(cfg: TrainConfig, spec: TaskSpec) -> list[tuple[Transfer, Examples]]:
    """--ood_tasks: each set's evaluation split and how the trained model scores it, read and
    checked now, so that a wrong name or an incompatible set stops the run before training."""
    names = [n.strip() for n in (cfg.ood_tasks or "").split(",") if n.strip()]
    if names and spec.shape != "sentence":
        raise ConfigError(f"--ood_tasks scores sentence tasks; a {spec.shape}-task run has none")
    folder = Path(cfg.ood_data_dir) if cfg.ood_data_dir else data_dir(cfg)
    trained = None if spec.is_regression else tuple(spec.id2label().values())
    found = []
    for name in names:
        how = transfer(trained, get_task(name))
        examples = load_examples(how.spec, how.spec.eval_split, folder)
        found.append((how, examples.head(cfg.max_eval_samples)))
    return found


def test_examples(cfg: TrainConfig, spec: TaskSpec) -> Examples | None:
    """--do_predict: the labelled test split, read now so that a problem stops the run early."""
    if not cfg.do_predict:
        return None
    if cfg.holdout_fraction > 0:
        raise ConfigError(
            "--do_predict with --holdout_fraction: a model-selection run must not see the test set"
        )
    if "test" not in spec.files:
        raise ConfigError(f"--do_predict: task {spec.name} has no test split")
    return load_examples(spec, "test", data_dir(cfg))
