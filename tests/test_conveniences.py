"""What a Trainer user expects around a run: trackers, early stopping, a model card."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from .conftest import train_args
from .test_engine import cli, events

TIMING = {"step_time_s"}


def comparable(out: Path) -> list[dict[str, object]]:
    return [{k: v for k, v in e.items() if k not in TIMING} for e in events(out)]


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed"
)
def test_report_to_tensorboard_writes_events_and_leaves_metrics_jsonl_alone(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plain = tmp_path / "plain"
    tracked = tmp_path / "tracked"
    assert cli(train_args(tiny_model, glue_dir, plain), capsys)[0] == 0
    args = train_args(tiny_model, glue_dir, tracked, "--report_to", "tensorboard")
    code, _, err = cli(args, capsys)
    assert code == 0, err
    assert comparable(tracked) == comparable(plain)
    files = list((tracked / "logs").rglob("events.out.tfevents.*"))
    assert files
    scalars: set[str] = set()
    for file in files:
        accumulator = EventAccumulator(str(file))
        accumulator.Reload()
        scalars.update(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "eval/accuracy"} <= scalars


def test_report_to_an_unknown_or_missing_tracker_is_one_clear_error(
    tiny_model: str,
    glue_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, err = cli(
        train_args(tiny_model, glue_dir, tmp_path / "a", "--report_to", "tb"), capsys
    )
    assert code == 2 and "unknown tracker 'tb'" in err and "tensorboard" in err
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    code, _, err = cli(
        train_args(tiny_model, glue_dir, tmp_path / "b", "--report_to", "wandb"), capsys
    )
    assert code == 2 and "the wandb package is not installed" in err
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_early_stopping_stops_and_keeps_the_best_model(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "early"
    args = train_args(
        tiny_model, glue_dir, out, "--num_train_epochs", "20", "--eval_strategy", "steps",
        "--eval_steps", "1", "--early_stopping_patience", "2", "--early_stopping_threshold",
        "0.5",
    )  # fmt: skip
    code, _, err = cli(args, capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    logged = events(out)
    evaluations = [e["step"] for e in logged if e["event"] == "eval"]
    # no improvement can beat the first evaluation by 0.5: the run stops at the third
    assert evaluations == [1, 2, 3] and results["train_steps"] == 3
    assert results["stopped_early"] is True
    stop = [e for e in logged if e["event"] == "early_stop"]
    assert stop == [{"event": "early_stop", "step": 3, "best_step": results["best_step"]}]
    assert results["eval_accuracy"] == results["best_metric"]  # the best weights are restored
    assert "early stop at update 3" in err


def test_early_stopping_needs_evaluations(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = train_args(
        tiny_model, glue_dir, tmp_path / "x", "--early_stopping_patience", "2",
        "--eval_strategy", "no",
    )  # fmt: skip
    code, _, err = cli(args, capsys)
    assert code == 2 and "needs evaluations" in err


def test_a_saved_model_folder_has_a_model_card(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "card"
    args = train_args(tiny_model, glue_dir, out, "--method", "r3f", "--seed", "7")
    assert cli(args, capsys)[0] == 0
    results = json.loads((out / "all_results.json").read_text())
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n")
    for text in (
        "# rte, fine-tuned with r3f (smartft)",
        "seed 7",
        f"| accuracy | {results['eval_accuracy']:.4f} |",
        "| `r3f_lambda` | 1.0 |",
        "smartft train --model_name_or_path",
        "--method r3f",
        "--seed 7",
        "float32 precision",
    ):
        assert text in card, text
    assert "--overwrite_output_dir" not in card and "| examples |" not in card
    command = next(line for line in card.splitlines() if line.startswith("smartft train"))
    assert f"--output_dir {out}" in command


@pytest.mark.parametrize(
    ("cores", "load", "processes", "threads"),
    [
        (2, 0.0, 1, 2),
        (2, 1.1, 1, 1),
        (2, 3.0, 1, 1),
        (16, 4.2, 1, 12),
        (16, 0.0, 4, 4),
        (2, 0.0, 4, 1),
    ],
)
def test_the_default_thread_count_takes_only_the_cores_other_work_leaves_free(
    cores: int, load: float, processes: int, threads: int
) -> None:
    from smartft.runtime import default_threads

    assert default_threads(cores, load, processes) == threads


def test_a_run_says_how_many_threads_it_uses_and_honours_num_threads(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        args = train_args(tiny_model, glue_dir, tmp_path / "run", "--num_threads", "1")
        code, _, err = cli([*args, "--max_steps", "1"], capsys)
        assert code == 0 and "1 CPU thread(s) per process" in err
    finally:
        torch.set_num_threads(before)


def test_the_mpnet_alias_finds_the_assembled_model_or_says_how_to_install_it(
    tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import smartft.modeling
    from smartft.errors import ConfigError
    from smartft.modeling import resolve_model_path

    monkeypatch.setattr(smartft.modeling, "model_roots", lambda: [tmp_path / "models"])
    with pytest.raises(ConfigError, match="not installed; `make mpnet` assembles it"):
        resolve_model_path("all-mpnet-base-v2")
    shutil.copytree(tiny_model, tmp_path / "models" / "all-mpnet-base-v2")
    assert resolve_model_path("all-MPNet-base-v2") == tmp_path / "models" / "all-mpnet-base-v2"
    assert resolve_model_path("sentence-transformers/all-mpnet-base-v2").name == "all-mpnet-base-v2"


@pytest.mark.slow
def test_the_installed_mpnet_is_the_110m_parameter_encoder() -> None:
    from smartft.data.tasks import get_task
    from smartft.errors import ConfigError
    from smartft.modeling import load_model

    try:
        model, _ = load_model("all-mpnet-base-v2", get_task("rte"))
    except ConfigError as err:
        pytest.skip(str(err))
    assert type(model).__name__ == "MPNetForSequenceClassification"
    assert 109e6 < sum(p.numel() for p in model.parameters()) < 110e6
    assert model.config.num_hidden_layers == 12 and model.config.hidden_size == 768
