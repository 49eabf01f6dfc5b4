"""MethodTrainer / SmartTrainer (transformers' Trainer) and the own-loop example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

from smartft.methods import METHODS
from smartft.regularizer import SmartConfig
from smartft.teacher import TEACHER_WEIGHTS, BregmanConfig
from smartft.trainer import MethodTrainer, SmartTrainer

ROOT = Path(__file__).resolve().parents[1]


class ToyData(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, tokenizer: object, regression: bool = False) -> None:
        texts = ["the man sees a dog .", "a cat sleeps .", "the film is great .", "bad book ."] * 4
        self.items = [
            dict(
                tokenizer(t, padding="max_length", max_length=12),  # type: ignore[operator]
                labels=i / 4 if regression else i % 2,
            )
            for i, t in enumerate(texts)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, object]:
        return self.items[i]


def training_args(out: Path, steps: int) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=4,
        save_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        learning_rate=1e-3,
        disable_tqdm=True,
        seed=0,
    )


def make_trainer(model_dir: str, out: Path, steps: int, num_labels: int = 2) -> SmartTrainer:
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)
    return SmartTrainer(
        model=model,
        args=training_args(out, steps),
        train_dataset=ToyData(AutoTokenizer.from_pretrained(model_dir), num_labels == 1),
        smart_config=SmartConfig(smart_eps=1e-2),
        bregman_config=BregmanConfig(),
    )


def test_smart_trainer_trains_saves_and_restores_the_teacher(
    tiny_model: str, tmp_path: Path
) -> None:
    trainer = make_trainer(tiny_model, tmp_path, steps=4)
    trainer.train()
    teacher = trainer.method.teacher
    assert teacher is not None and teacher.step == 4
    assert (tmp_path / "checkpoint-2" / TEACHER_WEIGHTS).is_file()
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert logged and "smart_rs" in logged[0] and "bregman_d" in logged[0]
    student = trainer.unwrapped().classifier.weight
    assert not torch.equal(teacher.model.classifier.weight, student)  # it lags behind

    resumed = make_trainer(tiny_model, tmp_path, steps=4)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert resumed.method.teacher is not None and resumed.method.teacher.step == 4


def test_smart_trainer_regularizes_regression_with_one_output(
    tiny_model: str, tmp_path: Path
) -> None:
    """transformers sets problem_type only in the first forward: the method must know from the
    output count that this is regression, or R_s is a softmax over one logit (always 0)."""
    trainer = make_trainer(tiny_model, tmp_path, steps=3, num_labels=1)
    trainer.train()
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert logged and all(e["smart_rs"] > 0 and e["bregman_d"] > 0 for e in logged[1:])
    assert logged[0]["smart_rs"] > 0


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"plain"}))
def test_method_trainer_drives_every_method_through_the_same_hooks(
    name: str, tiny_model: str, tmp_path: Path
) -> None:
    from smartft.methods import get_method

    calls: list[str] = []
    method = get_method(name)()
    for hook in ("before_forward", "loss_terms", "before_update", "after_step"):
        original = getattr(method, hook)

        def spy(*args: object, _hook: str = hook, _original: object = original) -> object:
            calls.append(_hook)
            return _original(*args)  # type: ignore[operator]

        setattr(method, hook, spy)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    trainer = MethodTrainer(
        model=model,
        args=training_args(tmp_path, 3),
        train_dataset=ToyData(AutoTokenizer.from_pretrained(tiny_model)),
        method=method,
    )
    trainer.train()
    one_update = ["before_forward", "loss_terms", "before_update", "after_step"]
    training = calls[calls.index("before_forward") :]  # R4F also acts once in its setup
    assert training == one_update * 3


def test_own_loop_example_runs(tiny_model: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "own_loop.py"),
            "--model_name_or_path",
            tiny_model,
            "--steps",
            "3",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("step") == 3 and "R_s" in result.stdout


@pytest.mark.parametrize("method", ["smart", "r3f"])
def test_the_trainer_example_runs_as_the_docs_show_it(
    method: str, tiny_model: str, tmp_path: Path
) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    example = ROOT / "examples" / "with_trainer.py"
    args = ["--model_name_or_path", tiny_model, "--output_dir", str(tmp_path), "--method", method]
    result = subprocess.run(
        [sys.executable, str(example), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{method}: trained 2 updates" in result.stdout
    assert "from smartft.trainer import MethodTrainer, SmartTrainer" in example.read_text()
