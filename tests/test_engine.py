"""End to end on the tiny model: train, eval, predict, custom files, errors, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification

import smartft
from smartft.cli import main

from .conftest import command, train_args


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def events(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_eval_predict(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, stdout, _ = cli(train_args(tiny_model, glue_dir, out), capsys)
    assert code == 0, stdout
    results = json.loads((out / "all_results.json").read_text())
    assert results["train_steps"] == 12 and results["eval_examples"] == 16
    assert 0.0 <= results["eval_accuracy"] <= 1.0
    assert (out / "config.yaml").is_file()
    assert (out / "model.safetensors").is_file()
    kinds = [e["event"] for e in events(out)]
    assert kinds.count("eval") == 2 and kinds.count("train") == 6
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "entailment", 1: "not_entailment"}

    evaluate = command(
        "eval",
        model_name_or_path=out,
        task_name="rte",
        data_dir=glue_dir,
        output_file=tmp_path / "m.json",
    )
    code, stdout, _ = cli(evaluate, capsys)
    assert code == 0
    assert json.loads(stdout)["accuracy"] == pytest.approx(results["eval_accuracy"])
    assert json.loads((tmp_path / "m.json").read_text())["examples"] == 16

    predict = command(
        "predict",
        model_name_or_path=out,
        task_name="rte",
        data_dir=glue_dir,
        output_dir=tmp_path / "sub",
    )
    code, stdout, _ = cli(predict, capsys)
    assert code == 0
    lines = (tmp_path / "sub" / "RTE.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 11
    assert {line.split("\t")[1] for line in lines[1:]} <= {"entailment", "not_entailment"}


@pytest.mark.parametrize("task", ["rte", "stsb"])
def test_eval_scores_several_models_as_one_ensemble(
    task: str,
    tiny_model: str,
    glue_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`eval --model_name_or_path A,B` scores the mean of A's and B's probabilities (the mean of
    their predictions for regression), computed here from each model's own outputs."""
    import numpy as np
    import torch

    from smartft.config import TrainConfig
    from smartft.data.dataset import load_examples
    from smartft.evaluation import score
    from smartft.inference import load_for_inference

    folders = [tmp_path / f"seed{seed}" for seed in (1, 2)]
    for seed, out in zip((1, 2), folders, strict=True):
        args = train_args(tiny_model, glue_dir, out, "--task_name", task, "--seed", str(seed))
        assert cli([*args, "--max_steps", "3"], capsys)[0] == 0
    both = ",".join(map(str, folders))
    code, text, err = cli(
        command("eval", model_name_or_path=both, task_name=task, data_dir=glue_dir), capsys
    )
    assert code == 0, err
    ensemble = json.loads(text)
    outputs = []
    for out in folders:
        cfg = TrainConfig(model_name_or_path=str(out), task_name=task, data_dir=str(glue_dir))
        saved = load_for_inference(cfg)
        got, labels = saved.outputs(load_examples(saved.spec, "validation", glue_dir))
        outputs.append(got if task == "stsb" else torch.from_numpy(got).softmax(-1).numpy())
    assert labels is not None
    expected = score(saved.spec, np.mean(outputs, axis=0), labels)
    assert ensemble["models"] == 2
    assert {k: ensemble[k] for k in expected} == pytest.approx(expected)
    assert not np.allclose(outputs[0], outputs[1])  # two models, so the mean is tested


def test_same_seed_same_metrics(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = []
    for name in ("a", "b"):
        assert cli(train_args(tiny_model, glue_dir, tmp_path / name, "--seed", "3"), capsys)[0] == 0
        runs.append(
            [{k: v for k, v in e.items() if k != "step_time_s"} for e in events(tmp_path / name)]
        )
    assert runs[0] == runs[1]


def test_python_api_matches_the_command_line(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`smartft.train(config=..., **flags)` is `smartft train --config ... --flags`."""
    preset = tmp_path / "r3f.yaml"
    preset.write_text("method: r3f\nr3f_eps: 0.01\nseed: 3\n")
    code, _, err = cli(
        train_args(tiny_model, glue_dir, tmp_path / "cli", "--config", str(preset), "--seed", "4"),
        capsys,
    )
    assert code == 0, err
    results = smartft.train(
        config=str(preset),
        model_name_or_path=tiny_model,
        task_name="rte",
        data_dir=glue_dir,
        output_dir=tmp_path / "api",
        max_seq_length=32,
        per_device_train_batch_size=8,
        num_train_epochs=2,
        learning_rate=1e-3,
        logging_steps=2,
        disable_tqdm=True,
        seed=4,
    )
    assert results["method"] == "r3f" and results["seed"] == 4
    timeless = [
        [{k: v for k, v in e.items() if k != "step_time_s"} for e in events(tmp_path / name)]
        for name in ("cli", "api")
    ]
    assert timeless[0] == timeless[1] and any("r3f" in key for key in timeless[1][0])


def test_regression_task(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = train_args(tiny_model, glue_dir, tmp_path / "sts")
    args[args.index("rte")] = "stsb"
    assert cli(args, capsys)[0] == 0
    results = json.loads((tmp_path / "sts" / "all_results.json").read_text())
    assert results["main_metric"] == "pearson" and "eval_spearman" in results
    predict = command(
        "predict",
        model_name_or_path=tmp_path / "sts",
        task_name="stsb",
        data_dir=glue_dir,
        output_dir=tmp_path / "sub",
    )
    code, _, _ = cli(predict, capsys)
    assert code == 0
    rows = (tmp_path / "sub" / "STS-B.tsv").read_text().splitlines()[1:]
    assert len(rows) == 6 and all(float(r.split("\t")[1]) == float(r.split("\t")[1]) for r in rows)


def test_custom_jsonl_files(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for split, n in (("train", 24), ("dev", 8)):
        rows = [
            {
                "review": "good fun movie ." if i % 3 else "bad boring film .",
                "stars": ["neg", "pos", "pos"][i % 3],
            }
            for i in range(n)
        ]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "run"
    code, stdout, err = cli(
        [
            "train",
            "--model_name_or_path",
            tiny_model,
            "--train_file",
            str(tmp_path / "train.jsonl"),
            "--validation_file",
            str(tmp_path / "dev.jsonl"),
            "--text_columns",
            "review",
            "--label_column",
            "stars",
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "1",
            "--disable_tqdm",
        ],
        capsys,
    )
    assert code == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert {"eval_accuracy", "eval_f1"} <= set(results)
    evaluate = command(
        "eval",
        model_name_or_path=out,
        validation_file=tmp_path / "dev.jsonl",
        text_columns="review",
        label_column="stars",
    )
    code, stdout, _ = cli(evaluate, capsys)
    assert code == 0 and json.loads(stdout)["examples"] == 8


@pytest.mark.parametrize("problem", ["bad_label", "hub_id", "no_data", "not_empty"])
def test_errors_exit_2_without_traceback_or_output(
    problem: str,
    tiny_model: str,
    glue_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    args = train_args(tiny_model, glue_dir, out)
    if problem == "bad_label":
        dev = glue_dir / "RTE" / "dev.tsv"
        dev.write_text(dev.read_text().replace("not_entailment", "contradiction", 1))
        expected = "dev.tsv, line 2: label 'contradiction' is not in the training label set"
    elif problem == "hub_id":
        args[args.index(tiny_model)] = "bert-base-uncased"
        expected = "Model hubs cannot be reached"
    elif problem == "no_data":
        args[args.index("--data_dir") + 1] = str(tmp_path / "nowhere")
        expected = "rte train file not found"
    else:
        out.mkdir()
        (out / "keep.txt").write_text("x")
        expected = "is not empty"
    code, _, err = cli(args, capsys)
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert not out.exists() or [p.name for p in out.iterdir()] == ["keep.txt"]


def test_accumulation_and_step_plus_epoch_evaluation(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "acc"
    args = train_args(
        tiny_model,
        glue_dir,
        out,
        "--gradient_accumulation_steps",
        "2",
        "--eval_steps",
        "2",
        "--max_train_samples",
        "40",
        "--save_model",
        "false",
    )
    code, printed, _ = cli(args, capsys)
    assert code == 0
    assert not (out / "model.safetensors").exists() and not (out / "tokenizer.json").exists()
    assert "no model saved" in printed and "model saved to" not in printed
    results = json.loads((out / "all_results.json").read_text())
    # 40 examples / batch 8 = 5 batches an epoch: 2 full updates of 2 batches + 1 partial
    assert results["train_steps"] == 6
    eval_steps = [e["step"] for e in events(out) if e["event"] == "eval"]
    assert eval_steps == [2, 3, 4, 6]  # every 2 updates plus each epoch's end, never twice


def test_eval_cuts_inputs_at_the_length_the_model_was_trained_with(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "stsb"
    args = train_args(tiny_model, glue_dir, out, "--max_seq_length", "8")
    args[args.index("rte")] = "stsb"
    assert cli(args, capsys)[0] == 0
    trained = json.loads((out / "all_results.json").read_text())["eval_pearson"]
    scored = []
    for extra in ((), ("--max_seq_length", "64")):
        evaluate = command("eval", model_name_or_path=out, task_name="stsb", data_dir=glue_dir)
        code, stdout, err = cli([*evaluate, *extra], capsys)
        assert code == 0, err
        scored.append(json.loads(stdout)["pearson"])
    assert scored[0] == pytest.approx(trained, abs=1e-6)  # the run's 8, not the default 128
    assert scored[1] != pytest.approx(trained, abs=1e-6)  # an explicit length still wins


def test_predict_into_a_file_path_stops_before_predicting(
    tiny_model: str, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert cli(train_args(tiny_model, glue_dir, out, "--num_train_epochs", "1"), capsys)[0] == 0
    target = tmp_path / "a-file"
    target.write_text("x")
    predict = command(
        "predict", model_name_or_path=out, task_name="rte", data_dir=glue_dir, output_dir=target
    )
    code, _, err = cli(predict, capsys)
    assert code == 2 and "exists and is not a folder" in err and "Traceback" not in err
