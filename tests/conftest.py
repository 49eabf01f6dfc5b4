"""Shared fixtures: a tiny random BERT with a hand-written vocabulary, and tiny task files."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"
WORDS = (
    "the a man woman dog cat is are was runs sleeps eats sees big small red blue happy sad not no "
    "yes good bad house car tree park in on at with and or very quite rather movie film great "
    "terrible boring fun plays sings walks talks book reads writes"
).split()


def _vocab() -> list[str]:
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, ".", ",", "'", "?", "!"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide BERT encoder (no head) and its WordPiece tokenizer, saved locally."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(_vocab()) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    BertTokenizer(str(vocab), do_lower_case=True).save_pretrained(folder)
    return str(folder)


def sentence(rng: random.Random, n: int | None = None) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n or rng.randint(3, 9))) + " ."


def write_rte(folder: Path, n_train: int = 48, n_dev: int = 16, seed: int = 0) -> Path:
    """RTE layout: header `index sentence1 sentence2 label`, string labels, unlabeled test."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        lines = ["index\tsentence1\tsentence2\tlabel"]
        for i in range(n):
            label = "entailment" if i % 2 else "not_entailment"
            lines.append(f"{i}\t{sentence(rng)}\t{sentence(rng)}\t{label}")
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    test = ["index\tsentence1\tsentence2"] + [
        f"{i}\t{sentence(rng)}\t{sentence(rng)}" for i in range(10)
    ]
    (folder / "test.tsv").write_text("\n".join(test) + "\n", encoding="utf-8")
    return folder


def write_stsb(folder: Path, n_train: int = 40, n_dev: int = 16, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
    for split, n in (("train", n_train), ("dev", n_dev)):
        lines = [head + "\tscore"]
        for i in range(n):
            lines.append(
                f"{i}\tmain\tf\t2012\t{i:04d}\tnone\tnone\t{sentence(rng)}\t"
                f"{sentence(rng)}\t{rng.uniform(0, 5):.3f}"
            )
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    test = [head] + [
        f"{i}\tmain\tf\t2012\t{i:04d}\tnone\tnone\t{sentence(rng)}\t{sentence(rng)}"
        for i in range(6)
    ]
    (folder / "test.tsv").write_text("\n".join(test) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def glue_dir(tmp_path: Path) -> Path:
    """A GLUE-style root with tiny RTE and STS-B folders."""
    write_rte(tmp_path / "glue" / "RTE")
    write_stsb(tmp_path / "glue" / "STS-B")
    return tmp_path / "glue"


# SMART with a radius large enough to matter on the tiny model
SMART_FLAGS = ["--method", "smart", "--smart_eps", "1e-2", "--smart_step_size", "1e-2"]


def every_method() -> pytest.MarkDecorator:
    """A test's `flags` over every registered method (SMART with SMART_FLAGS) and LoRA."""
    from smartft.methods import METHODS

    others = [name for name in METHODS if name != "smart"]
    return pytest.mark.parametrize(
        "flags",
        [
            *(["--method", name] for name in others),
            SMART_FLAGS,
            ["--peft", "lora", "--lora_target_modules", "query,value"],
        ],
        ids=[*others, "smart", "lora"],
    )


def command(name: str, **options: object) -> list[str]:
    """`smartft NAME --key value ...` as an argument list (True gives a bare flag)."""
    args = [name]
    for key, value in options.items():
        args += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return args


def train_args(model: str, data_dir: Path, out: Path, *extra: str) -> list[str]:
    """A fast `smartft train` command line for the tiny model."""
    return [
        "train",
        "--model_name_or_path",
        model,
        "--task_name",
        "rte",
        "--data_dir",
        str(data_dir),
        "--output_dir",
        str(out),
        "--max_seq_length",
        "32",
        "--per_device_train_batch_size",
        "8",
        "--num_train_epochs",
        "2",
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "2",
        "--disable_tqdm",
        *extra,
    ]
