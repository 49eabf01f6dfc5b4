"""SmartTrainer (transformers' Trainer) and the own-loop example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

from smartft.methods.smart import BregmanConfig, SmartConfig
from smartft.teacher import TEACHER_WEIGHTS
from smartft.trainer import SmartTrainer

ROOT = Path(__file__).resolve().parents[1]


class ToyData(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, tokenizer: object) -> None:
        texts = ["the man sees a dog .", "a cat sleeps .", "the film is great .", "bad book ."] * 4
        self.items = [
            dict(tokenizer(t, padding="max_length", max_length=12), labels=i % 2)  # type: ignore[operator]
            for i, t in enumerate(texts)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, object]:
        return self.items[i]


def make_trainer(model_dir: str, out: Path, steps: int) -> SmartTrainer:
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    args = TrainingArguments(
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
    return SmartTrainer(
        model=model,
        args=args,
        train_dataset=ToyData(AutoTokenizer.from_pretrained(model_dir)),
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
