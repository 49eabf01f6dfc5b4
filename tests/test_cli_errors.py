"""Every mistake a newcomer made gets one clear line and exit 2: out-of-range values (CLI, YAML
and Python alike), unknown or abbreviated flags, negative numbers, a model scored on another
task's labels; and the conveniences around them (sweep flags, help, plots, file modes)."""

from __future__ import annotations

import dataclasses
import json
import random
import stat
import typing
from pathlib import Path
from typing import Any

import pytest

import smartft
from smartft.config import all_config_classes
from smartft.errors import ConfigError
from smartft.methods import METHODS

from .conftest import sentence, train_args
from .test_engine import cli


def numeric_fields() -> list[tuple[type, dataclasses.Field[Any]]]:
    found = []
    for cls in all_config_classes():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            types = set(typing.get_args(hints[f.name])) or {hints[f.name]}
            if types & {int, float} and bool not in types:
                found.append((cls, f))
    return found


def owner_method(cls: type) -> str:
    return next((m.name for m in METHODS.values() if cls in m.config_classes), "plain")


def outside(bounds: tuple[Any, Any, bool, bool], is_int: bool) -> list[Any]:
    low, high, open_low, open_high = bounds
    values: list[Any] = []
    if low is not None:
        values.append(low if open_low else (low - 1 if is_int else low - 0.5))
    if high is not None:
        values.append(high if open_high else (high + 1 if is_int else high + 0.5))
    return values


CASES = [
    (cls, f, value)
    for cls, f in numeric_fields()
    for value in outside(
        f.metadata["range"], typing.get_type_hints(cls)[f.name] in (int, int | None)
    )
]


def test_every_numeric_option_declares_its_range() -> None:
    missing = [f.name for _, f in numeric_fields() if f.metadata.get("range") is None]
    assert not missing, f"numeric options without a range: {missing}"


@pytest.mark.parametrize(("cls", "field", "value"), CASES, ids=lambda x: getattr(x, "name", x))
def test_out_of_range_values_are_one_clear_line(
    cls: type, field: Any, value: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    method = owner_method(cls)
    args = ["train", "--method", method, f"--{field.name}", str(value)]
    code, out, err = cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(lines) == 1 and f"--{field.name}" in lines[0] and "out of range" in lines[0], err
    # the same check for YAML files and the Python API
    config = tmp_path / "run.yaml"
    config.write_text(f"method: {method}\n{field.name}: {value}\n")
    assert cli(["train", "--config", str(config)], capsys)[0] == 2
    with pytest.raises(ConfigError, match=f"--{field.name}"):
        smartft.train(method=method, **{field.name: value})


def test_every_default_lies_in_its_range() -> None:
    from smartft.options import in_range

    for _, f in numeric_fields():
        if f.default is not None:
            assert in_range(f.default, f.metadata["range"]), (f.name, f.default)


@pytest.mark.parametrize(
    ("flag", "suggestion"),
    [
        ("--num_train_epoch", "--num_train_epochs"),
        ("--lr", "--learning_rate"),
        ("--learning_rte", "--learning_rate"),
    ],
)
def test_no_prefix_matching_and_a_suggestion_for_unknown_flags(
    flag: str, suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(["train", flag, "1"], capsys)
    assert code == 2 and f"unknown option {flag} (did you mean {suggestion}?)" in err
    assert "usage: smartft train" in err and len(err.splitlines()) <= 3


def test_a_negative_number_reaches_the_range_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["train", "--learning_rate", "-1e-5"], capsys)
    assert code == 2 and "--learning_rate -1e-05 is out of range: it must be > 0" in err


def test_sweep_takes_train_options_directly() -> None:
    from smartft.cli import parse

    args = parse(["sweep", "--tasks", "rte", "--max_train_samples", "64", "--bf16", "--seed=3"])
    assert args.set == ["max_train_samples=64", "bf16=true", "seed=3"]
    with pytest.raises(SystemExit):
        parse(["sweep", "--max_train_sample", "64"])


def test_help_has_plain_titles_whole_descriptions_and_only_what_eval_uses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, text, _ = cli(["train", "--help"], capsys)
    assert code == 0
    assert "SMART: the Bregman teacher:" in text and "SmartConfig" not in text
    assert "ALICE:" in text and "virtual term's weight and the perturbation" in " ".join(
        text.split()
    )
    code, text, _ = cli(["eval", "--help"], capsys)
    assert "--model_name_or_path" in text and "--bf16" in text
    assert "--learning_rate" not in text and "--adam_beta1" not in text


def write_mrpc(folder: Path) -> Path:
    rng = random.Random(1)
    folder.mkdir(parents=True, exist_ok=True)
    head = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    for split, n in (("train", 16), ("dev", 8)):
        lines = [head] + [
            f"{i % 2}\t{i}\t{i + 100}\t{sentence(rng)}\t{sentence(rng)}" for i in range(n)
        ]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_a_model_trained_on_a_task_with_label_names_is_that_tasks(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MRPC's files say 0 and 1 and its model saves not_equivalent, equivalent: both name the
    same labels, so the model is scored on MRPC and teaches an MRPC student (both were refused)."""
    write_mrpc(glue_dir / "MRPC")
    out = tmp_path / "mrpc-model"
    args = [*train_args(tiny_model, glue_dir, out, "--max_steps", "1"), "--task_name", "mrpc"]
    assert cli(args, capsys)[0] == 0
    assert json.loads((out / "config.json").read_text())["id2label"]["0"] == "not_equivalent"
    evaluate = ["eval", "--model_name_or_path", str(out), "--task_name", "mrpc"]
    code, text, err = cli([*evaluate, "--data_dir", str(glue_dir)], capsys)
    assert code == 0, err
    assert json.loads(text)["task"] == "mrpc"
    student = tmp_path / "student"
    args = [*train_args(tiny_model, glue_dir, student, "--max_steps", "1"), "--task_name", "mrpc"]
    code, _, err = cli([*args, "--teachers", str(out)], capsys)
    assert code == 0, err


def test_a_model_is_not_scored_on_another_tasks_labels_unless_asked(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rte-model"
    assert cli(train_args(tiny_model, glue_dir, out, "--num_train_epochs", "1"), capsys)[0] == 0
    assert stat.S_IMODE((out / "model.safetensors").stat().st_mode) == 0o644  # ordinary mode
    write_mrpc(glue_dir / "MRPC")
    command = ["eval", "--model_name_or_path", str(out), "--task_name", "mrpc"]
    code, _, err = cli([*command, "--data_dir", str(glue_dir)], capsys)
    assert code == 2 and "trained with the labels (entailment, not_entailment)" in err
    assert "--allow_label_mismatch" in err
    code, text, err = cli([*command, "--data_dir", str(glue_dir), "--allow_label_mismatch"], capsys)
    assert code == 0, err
    assert json.loads(text)["task"] == "mrpc"


def test_curves_have_markers_and_legends_with_one_point_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from smartft.report import collect_many, plot, summarize

    for variant in ("plain", "smart"):
        for seed in (1, 2, 3):
            run = tmp_path / "rte" / variant / f"seed{seed}"
            run.mkdir(parents=True)
            results = {
                "task": "rte", "method": variant, "seed": seed, "main_metric": "accuracy",
                "eval_accuracy": 0.5 + seed / 100, "train_runtime_s": 1.0,
            }  # fmt: skip
            (run / "all_results.json").write_text(json.dumps(results))
            (run / "sweep.yaml").write_text(f"task: rte\nvariant: {variant}\nseed: {seed}\n")
            events = [
                {"event": "train", "step": 3, "task_loss": 0.6},
                {"event": "eval", "step": 3, "eval_accuracy": 0.5},
            ]
            (run / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    figures: list[Figure] = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self))
    records = collect_many([tmp_path])
    plot(records, summarize(records, "plain"), tmp_path)
    curves = figures[-1]
    for axis in curves.axes:
        assert axis.lines and all(line.get_marker() == "o" for line in axis.lines)
        assert axis.get_legend() is not None


def test_an_ensemble_of_models_with_different_labels_is_refused(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Custom files take their labels from the model scored, so `eval A,B` must check that B
    predicts A's labels before averaging their probabilities."""
    folders = []
    for names in (("neg", "pos"), ("bad", "good")):
        data = tmp_path / names[0]
        data.mkdir()
        rows = [{"text": sentence(random.Random(i)), "label": names[i % 2]} for i in range(8)]
        (data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        out = tmp_path / f"model-{names[0]}"
        args = ["train", "--model_name_or_path", tiny_model, "--output_dir", str(out)]
        args += ["--train_file", str(data / "train.jsonl"), "--text_columns", "text"]
        code, _, err = cli([*args, "--max_steps", "1", "--max_seq_length", "32"], capsys)
        assert code == 0, err
        folders.append(out)
    both = f"{folders[0]},{folders[1]}"
    evaluate = ["eval", "--model_name_or_path", both, "--validation_file"]
    dev = str(tmp_path / "neg" / "train.jsonl")
    code, _, err = cli([*evaluate, dev, "--text_columns", "text"], capsys)
    assert code == 2 and "an ensemble needs one label set" in err
    assert "predicts the labels (bad, good)" in err
