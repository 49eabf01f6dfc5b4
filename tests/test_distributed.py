"""Two CPU processes under torchrun (gloo): replicas agree, evaluation has no duplicates, and the
result equals a single process on the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SMART_FLAGS, write_stsb
from .test_span import write_squad
from .test_tagging import write_wnut

TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.fixture(scope="module")
def no_dropout_model(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> str:
    """The tiny model without dropout, so runs differ only by arithmetic order."""
    from transformers import BertConfig

    folder = tmp_path_factory.mktemp("tiny-nodrop")
    for item in Path(tiny_model).iterdir():
        shutil.copy(item, folder / item.name)
    config = BertConfig.from_pretrained(folder)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(folder)
    return str(folder)


def launch(
    processes: int, model: str, data: Path, out: Path, batch: int, *extra: str, task: str = "stsb"
) -> dict[str, object]:
    args = [
        "-m",
        "smartft.cli",
        "train",
        "--model_name_or_path",
        model,
        "--task_name",
        task,
        "--data_dir",
        str(data),
        "--output_dir",
        str(out),
        "--max_seq_length",
        "32",
        "--per_device_train_batch_size",
        str(batch),
        "--per_device_eval_batch_size",
        "4",
        "--num_train_epochs",
        "2",
        "--learning_rate",
        "1e-3",
        "--disable_tqdm",
        "--logging_steps",
        "1",
        *extra,
    ]
    command = (
        [str(TORCHRUN), "--standalone", f"--nproc_per_node={processes}", *args]
        if processes > 1
        else [sys.executable, *args]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count('"output_dir"') == 1  # one process reports, not every one
    return dict(json.loads((out / "all_results.json").read_text()))


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")
def test_two_processes_match_one_and_agree(no_dropout_model: str, tmp_path: Path) -> None:
    data = write_stsb(tmp_path / "STS-B", n_train=48, n_dev=15)  # 15: uneven across 2 x 4
    single = launch(1, no_dropout_model, data, tmp_path / "one", 8)
    double = launch(2, no_dropout_model, data, tmp_path / "two", 4)
    assert single["train_steps"] == double["train_steps"] == 12  # same global batch of 8
    assert double["eval_examples"] == 15
    # equal up to float summation order (tolerance 1e-4); duplicated padding examples in the
    # evaluation would shift Pearson far more. (Spearman is left out: the tiny random model's
    # near-tied predictions swap ranks under a different summation order.)
    gap = abs(float(single["eval_pearson"]) - float(double["eval_pearson"]))  # type: ignore[arg-type]
    assert gap < 1e-4
    losses = [
        [
            e["loss"]
            for e in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())
            if e["event"] == "train"
        ]
        for run in ("one", "two")
    ]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)
    model_sums, _ = zip(*double["replica_checksums"], strict=True)  # type: ignore[arg-type]
    assert len(set(model_sums)) == 1
    assert len({tuple(row) for row in double["replica_checksums"]}) == 1  # type: ignore[attr-defined]


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")
def test_tagging_evaluation_gathers_every_sentence_once(
    no_dropout_model: str, tmp_path: Path
) -> None:
    # sentences hold different numbers of tokens, and 13 dev sentences split unevenly over
    # 2 processes x batches of 4: a duplicate or a lost sentence would change the scores
    data = write_wnut(tmp_path / "ner", dev=13)
    longer = ("--num_train_epochs", "15", "--learning_rate", "5e-3")  # until it finds entities
    single = launch(1, no_dropout_model, data, tmp_path / "one", 8, *longer, task="wnut17")
    double = launch(2, no_dropout_model, data, tmp_path / "two", 4, *longer, task="wnut17")
    assert float(single["eval_f1"]) > 0  # type: ignore[arg-type]
    for key in ("eval_f1", "eval_precision", "eval_recall", "eval_accuracy"):
        assert float(single[key]) == pytest.approx(float(double[key]), abs=1e-6), key  # type: ignore[arg-type]


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")
def test_span_windows_split_across_processes_score_as_one_process(
    no_dropout_model: str, tmp_path: Path
) -> None:
    """One trained model scored by `smartft eval` in one process and in two: 11 dev questions
    of several windows each, over 2 processes x batches of 4 windows, so a question's windows
    land on both processes, and a lost or doubled window would move a score."""
    data = write_squad(tmp_path / "qa" / "SQuAD", n_train=24, n_dev=11)
    flags = ("--max_seq_length", "40", "--doc_stride", "12", "--learning_rate", "3e-3")
    trained = launch(1, no_dropout_model, data, tmp_path / "one", 8, *flags, task="squad")
    assert float(trained["eval_f1"]) > 0  # type: ignore[arg-type]
    scores = []
    for processes in (1, 2):
        args = [
            "-m", "smartft.cli", "eval", "--model_name_or_path", str(tmp_path / "one"),
            "--task_name", "squad", "--data_dir", str(data), "--per_device_eval_batch_size", "4",
            "--output_file", str(tmp_path / f"eval{processes}.json"),
        ]  # fmt: skip
        command = (
            [str(TORCHRUN), "--standalone", f"--nproc_per_node={processes}", *args]
            if processes > 1
            else [sys.executable, *args]
        )
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        scores.append(json.loads((tmp_path / f"eval{processes}.json").read_text()))
    assert scores[0]["f1"] == pytest.approx(float(trained["eval_f1"]), abs=1e-12)  # type: ignore[arg-type]
    assert scores[0]["f1"] == scores[1]["f1"]
    assert scores[0]["exact_match"] == scores[1]["exact_match"]


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")
def test_smart_teachers_agree_across_processes(tiny_model: str, tmp_path: Path) -> None:
    data = write_stsb(tmp_path / "STS-B", n_train=32, n_dev=8)
    results = launch(
        2,
        tiny_model,
        data,
        tmp_path / "smart",
        4,
        *SMART_FLAGS,
    )
    rows = results["replica_checksums"]
    assert isinstance(rows, list) and len(rows) == 2
    assert rows[0] == rows[1]  # same student and same teacher on both processes
    assert rows[0][1] != 0


def test_world_size_without_processes_is_a_loud_error(tmp_path: Path) -> None:
    env = {**os.environ, "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "smartft.cli",
            "train",
            "--task_name",
            "rte",
            "--data_dir",
            str(tmp_path),
            "--output_dir",
            str(tmp_path / "o"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "WORLD_SIZE=2 but only 1 process" in result.stderr
