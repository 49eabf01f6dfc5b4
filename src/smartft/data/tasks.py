"""The task registry: where each task's files live, which columns hold text and labels, and how
it is scored. Label ids follow a fixed, documented order (the one Hugging Face `datasets` uses for
GLUE, so models trained here also score AdvGLUE, whose files store those ids)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from smartft.errors import DataError

NLI3 = ("entailment", "neutral", "contradiction")
NLI2 = ("entailment", "not_entailment")
SHAPES = ("sentence", "token", "choice", "span")
SPAN_METRICS = ("f1", "exact_match")
TAG_METRICS = ("f1", "precision", "recall", "accuracy")  # entity-level P/R/F1, word accuracy


@dataclass(frozen=True)
class TaskSpec:
    """Everything smartft needs to read, train on and score one task.

    `labels` lists the label values as written in the files, in id order; `None` means regression;
    an empty tuple means "infer from the training file" (custom data only).
    """

    name: str
    files: dict[str, str]
    text_columns: tuple[str, ...]
    label_column: str | None
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    fmt: str = "tsv"
    folder: str = ""
    label_names: tuple[str, ...] = ()
    headerless: dict[str, tuple[str, ...]] = field(default_factory=dict)
    json_key: str | None = None
    integer_labels: bool = False
    skip_labels: tuple[str, ...] = ()
    submission: dict[str, str] = field(default_factory=dict)
    id_column: str | None = "index"
    eval_split: str = "validation"
    dropout: float | None = None  # the head's dropout (a --task_def task's dropout_p)
    # what one example is and what the model outputs for it (SHAPES); "token": a tag per word
    # (CoNLL files), scored by entity F1; "choice": k answers to one question, scored together
    # (`labels` are the answer indices); "span": a question and a context, answered by a span
    shape: str = "sentence"
    # one file holding every split, told apart by a column (SICK's SemEval_set): the value of
    # `split_column` that each split's rows carry
    split_column: str | None = None
    split_values: dict[str, str] = field(default_factory=dict)

    @property
    def tagging(self) -> bool:
        return self.shape == "token"

    @property
    def is_regression(self) -> bool:
        return self.labels is None and self.shape != "span"

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def model_outputs(self) -> int:
        """Outputs of the model's head: one score per answer (multiple choice), a start and an
        end score per token (span), else one per label."""
        return {"choice": 1, "span": 2}.get(self.shape, self.num_labels)

    def id2label(self) -> dict[int, str]:
        names = self.label_names or self.labels or ("score",)
        return dict(enumerate(names))

    def owns_labels(self, saved: tuple[str, ...]) -> bool:
        """A saved model's label names are this task's: the values in its files or the names a
        model trained here saves for them (MRPC's 0 and 1 are saved as not_equivalent and
        equivalent)."""
        return self.labels is None or saved in {tuple(self.labels), tuple(self.id2label().values())}


def _glue(
    name: str,
    folder: str,
    text: tuple[str, ...],
    label: str,
    labels: tuple[str, ...] | None,
    metrics: tuple[str, ...],
    names: tuple[str, ...] = (),
    headerless: dict[str, tuple[str, ...]] | None = None,
    id_column: str = "index",
) -> TaskSpec:
    files = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
    return TaskSpec(
        name=name,
        files=files,
        text_columns=text,
        label_column=label,
        labels=labels,
        metrics=metrics,
        folder=folder,
        label_names=names,
        submission={"test": f"{folder}.tsv"},
        headerless=headerless or {},
        id_column=id_column,
    )


_COLA_COLUMNS = ("source", "label", "original_label", "sentence")

_TASKS: list[TaskSpec] = [
    _glue(
        "cola",
        "CoLA",
        ("sentence",),
        "label",
        ("0", "1"),
        ("mcc", "accuracy"),
        ("unacceptable", "acceptable"),
        headerless={"train": _COLA_COLUMNS, "validation": _COLA_COLUMNS},
    ),
    _glue(
        "sst2", "SST-2", ("sentence",), "label", ("0", "1"), ("accuracy",), ("negative", "positive")
    ),
    _glue(
        "mrpc",
        "MRPC",
        ("#1 String", "#2 String"),
        "Quality",
        ("0", "1"),
        ("accuracy", "f1"),
        ("not_equivalent", "equivalent"),
    ),
    _glue("stsb", "STS-B", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman")),
    _glue(
        "qqp",
        "QQP",
        ("question1", "question2"),
        "is_duplicate",
        ("0", "1"),
        ("accuracy", "f1"),
        ("not_duplicate", "duplicate"),
        id_column="id",
    ),
    TaskSpec(
        name="mnli",
        folder="MNLI",
        text_columns=("sentence1", "sentence2"),
        label_column="gold_label",
        labels=NLI3,
        metrics=("accuracy",),
        files={
            "train": "train.tsv",
            "validation_matched": "dev_matched.tsv",
            "validation_mismatched": "dev_mismatched.tsv",
            "test_matched": "test_matched.tsv",
            "test_mismatched": "test_mismatched.tsv",
        },
        submission={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
        eval_split="validation_matched",
    ),
    _glue("qnli", "QNLI", ("question", "sentence"), "label", NLI2, ("accuracy",)),
    _glue("rte", "RTE", ("sentence1", "sentence2"), "label", NLI2, ("accuracy",)),
    _glue(
        "wnli",
        "WNLI",
        ("sentence1", "sentence2"),
        "label",
        ("0", "1"),
        ("accuracy",),
        ("not_entailment", "entailment"),
    ),
    TaskSpec(
        name="ax",
        folder="AX",
        text_columns=("sentence1", "sentence2"),
        label_column=None,
        labels=NLI3,
        metrics=("accuracy",),
        files={"test": "diagnostic.tsv"},
        submission={"test": "AX.tsv"},
        eval_split="test",
    ),
    TaskSpec(
        name="snli",
        folder="snli_1.0",
        fmt="jsonl",
        text_columns=("sentence1", "sentence2"),
        label_column="gold_label",
        labels=NLI3,
        metrics=("accuracy",),
        skip_labels=("-",),
        files={
            "train": "snli_1.0_train.jsonl",
            "validation": "snli_1.0_dev.jsonl",
            "test": "snli_1.0_test.jsonl",
        },
        id_column="pairID",
    ),
    TaskSpec(
        name="scitail",
        folder="SciTailV1.1/tsv_format",
        text_columns=("premise", "hypothesis"),
        label_column="label",
        labels=("entails", "neutral"),
        metrics=("accuracy",),
        id_column=None,
        files={
            "train": "scitail_1.0_train.tsv",
            "validation": "scitail_1.0_dev.tsv",
            "test": "scitail_1.0_test.tsv",
        },
        headerless={s: ("premise", "hypothesis", "label") for s in ("train", "validation", "test")},
    ),
]
_WNUT17_TYPES = ("corporation", "creative-work", "group", "location", "person", "product")
WNUT17_TAGS = ("O", *(f"{prefix}-{kind}" for kind in _WNUT17_TYPES for prefix in ("B", "I")))
_TASKS.append(
    TaskSpec(
        name="wnut17",
        folder="WNUT17",
        fmt="conll",
        text_columns=("tokens",),
        label_column="tags",
        labels=WNUT17_TAGS,
        metrics=TAG_METRICS,
        files={
            "train": "wnut17train.conll",
            "validation": "emerging.dev.conll",
            "test": "emerging.test.annotated",
        },
        submission={"test": "wnut17-test.conll"},
        id_column=None,
        shape="token",
    )
)
# Commonsense reading comprehension (ALICE's task) and extractive QA (MT-DNN's span task)
_TASKS += [
    TaskSpec(
        name="cosmosqa",
        folder="CosmosQA",
        fmt="csv",
        text_columns=("context", "question"),
        label_column="label",
        labels=("0", "1", "2", "3"),
        label_names=("answer0", "answer1", "answer2", "answer3"),
        metrics=("accuracy",),
        files={"train": "train.csv", "validation": "valid.csv"},
        id_column="id",
        shape="choice",
    ),
    TaskSpec(
        name="squad",
        folder="SQuAD",
        fmt="squad",
        text_columns=("question", "context"),
        label_column="answers",
        labels=None,
        metrics=SPAN_METRICS,
        files={"train": "train-v1.1.json", "validation": "dev-v1.1.json"},
        id_column="id",
        shape="span",
    ),
]
for _round in (1, 2, 3):
    _TASKS.append(
        TaskSpec(
            name=f"anli_r{_round}",
            folder=f"anli_v1.0/R{_round}",
            fmt="jsonl",
            text_columns=("context", "hypothesis"),
            label_column="label",
            labels=("e", "n", "c"),
            label_names=NLI3,
            metrics=("accuracy",),
            id_column="uid",
            files={"train": "train.jsonl", "validation": "dev.jsonl", "test": "test.jsonl"},
        )
    )
_ADVGLUE = {
    "sst2": ("sst2", ("sentence",)),
    "qqp": ("qqp", ("question1", "question2")),
    "mnli": ("mnli", ("premise", "hypothesis")),
    "mnli_mm": ("mnli-mm", ("premise", "hypothesis")),
    "qnli": ("qnli", ("question", "sentence")),
    "rte": ("rte", ("sentence1", "sentence2")),
}
for _base, (_key, _text) in _ADVGLUE.items():
    _glue_spec = next(t for t in _TASKS if t.name == _base.removesuffix("_mm"))
    assert _glue_spec.labels is not None
    _TASKS.append(
        TaskSpec(
            name=f"advglue_{_base}",
            folder="AdvGLUE",
            fmt="json",
            json_key=_key,
            text_columns=_text,
            label_column="label",
            labels=_glue_spec.labels,
            label_names=_glue_spec.label_names,
            integer_labels=True,
            metrics=_glue_spec.metrics,
            files={"validation": "dev.json"},
            id_column="idx",
        )
    )

# Out-of-distribution sets for models trained on a GLUE task (docs/robustness.md): PAWS for an
# MRPC model (the same label ids and names), SICK for an STS-B model (relatedness, 1-5) or a
# 3-way NLI one, HANS for an RTE / NLI model.
_TASKS += [
    TaskSpec(
        name="paws",
        folder="PAWS",
        text_columns=("sentence1", "sentence2"),
        label_column="label",
        labels=("0", "1"),
        label_names=("not_equivalent", "equivalent"),  # MRPC's: an MRPC model scores it as is
        metrics=("accuracy", "f1"),
        files={"validation": "dev.tsv", "test": "test.tsv"},
        headerless={s: ("id", "sentence1", "sentence2", "label") for s in ("validation", "test")},
        id_column="id",
        eval_split="test",
    ),
    *(
        TaskSpec(
            name=name,
            folder="SICK",
            text_columns=("sentence_A", "sentence_B"),
            label_column=column,
            labels=labels,
            label_names=names,
            metrics=metrics,
            files={s: "SICK.txt" for s in ("train", "validation", "test")},
            split_column="SemEval_set",
            split_values={"train": "TRAIN", "validation": "TRIAL", "test": "TEST"},
            id_column="pair_ID",
            eval_split="test",
        )
        for name, column, labels, names, metrics in (
            ("sick", "relatedness_score", None, (), ("pearson", "spearman")),
            (
                "sick_nli",
                "entailment_label",
                ("ENTAILMENT", "NEUTRAL", "CONTRADICTION"),
                NLI3,
                ("accuracy",),
            ),
        )
    ),
    TaskSpec(
        name="hans",
        folder="hans",
        text_columns=("sentence1", "sentence2"),
        label_column="gold_label",
        labels=("entailment", "non-entailment"),
        metrics=("accuracy",),
        files={"validation": "heuristics_evaluation_set.txt", "train": "heuristics_train_set.txt"},
        id_column="pairID",
    ),
]

TASKS: dict[str, TaskSpec] = {t.name: t for t in _TASKS}
ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_m": "mnli"}


def get_task(name: str) -> TaskSpec:
    key = name.lower()
    key = ALIASES.get(key, key)
    if key not in TASKS:
        raise DataError(
            "--task_name",
            f"unknown task '{name}'",
            fix=f"choose one of {', '.join(TASKS)}, or give --train_file and "
            "--validation_file for your own data",
        )
    return TASKS[key]


def task_folder(spec: TaskSpec, data_dir: Path, split: str) -> Path:
    """`--data_dir` may be the GLUE-style root (holding `RTE/`) or the task folder itself."""
    name = spec.files[split]
    for candidate in (data_dir / spec.folder, data_dir):
        if (candidate / name).is_file():
            return candidate
    raise DataError(
        data_dir / spec.folder / name,
        f"{spec.name} {split} file not found",
        fix=f"point --data_dir at a folder holding {spec.folder}/{name} "
        f"(or {name} itself); see the README's data layout",
    )
