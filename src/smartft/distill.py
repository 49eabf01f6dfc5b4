"""Knowledge distillation from an ensemble of saved models (MT-DNN's multi-task distillation).

The teachers (`--teachers DIR,DIR,...`: saved single-task models, e.g. the seeds of a sweep, or
multi-task runs with a head for the task) score the training set once; their averaged
probabilities at temperature T (classification, any number of classes) or their mean prediction
(regression) become each example's soft target, cached in the output folder so that a resumed run
reuses them. The student's task loss becomes (1 − α) · hard + α · soft, the soft part
T² · KL(teachers ‖ student at T) as Hinton et al. scale it, or the squared error to the mean.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from smartft.batch import model_inputs
from smartft.data.dataset import Collator, Features
from smartft.data.tasks import TaskSpec
from smartft.errors import ConfigError
from smartft.modeling import check_labels
from smartft.precision import Precision


def teacher_dirs(value: str | None) -> list[Path]:
    folders = [Path(v.strip()) for v in (value or "").split(",") if v.strip()]
    for folder in folders:
        if not (folder / "config.json").is_file():
            raise ConfigError(f"--teachers: {folder} is not a saved model folder (no config.json)")
    return folders


def load_teacher(folder: Path, spec: TaskSpec) -> Any:
    """A teacher for `spec`: a saved model with the task's labels, or a multi-task run's head."""
    from transformers import AutoModelForSequenceClassification

    from smartft.multitask import load_head, saved_head

    head = saved_head(folder, spec.name)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, dtype=torch.float32, local_files_only=True, num_labels=spec.num_labels
    )
    if head is not None:
        load_head(model, head)
        model.config.id2label = spec.id2label()
    check_labels(folder, model, spec, allow=False)
    return model.eval()


def soft_targets(
    folders: list[Path],
    features: Features,
    collator: Collator,
    spec: TaskSpec,
    temperature: float,
    device: torch.device,
    precision: Precision,
) -> list[list[float]]:
    """Each training example's averaged teacher probabilities at `temperature` (or mean score)."""
    loader = DataLoader(features, batch_size=64, collate_fn=collator)
    total: torch.Tensor | None = None
    for folder in folders:
        model = load_teacher(folder, spec).to(device)
        outputs = []
        with torch.no_grad(), precision.autocast():
            for batch in loader:
                inputs = {k: v.to(device) for k, v in model_inputs(batch).items()}
                outputs.append(model(**inputs).logits.float().cpu())
        logits = torch.cat(outputs)
        part = logits if spec.is_regression else F.softmax(logits / temperature, dim=-1)
        total = part if total is None else total + part
        del model
    assert total is not None
    return (total / len(folders)).tolist()  # type: ignore[no-any-return]


def cached_targets(
    cache: Path,
    folders: list[Path],
    temperature: float,
    count: int,
    compute: Any,
) -> list[list[float]]:
    """Soft targets from `cache` when it was made by the same teachers for the same examples;
    else computed (`compute()`) and written there."""
    key = json.dumps(
        {"teachers": [str(f.resolve()) for f in folders], "t": temperature, "n": count}
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    if cache.is_file():
        stored = load_file(str(cache))
        if stored.get("key") is not None and bytes(stored["key"].tolist()).decode() == digest:
            return stored["targets"].tolist()  # type: ignore[no-any-return]
    targets = compute()
    cache.parent.mkdir(parents=True, exist_ok=True)
    key_tensor = torch.tensor(list(digest.encode()), dtype=torch.uint8)
    save_file({"targets": torch.tensor(targets), "key": key_tensor}, str(cache))
    return targets  # type: ignore[no-any-return]


def check_teachers(folders: list[Path], spec: TaskSpec) -> None:
    """Before anything runs: each teacher's labels (its config, or a multi-task run's head for
    the task) must be the task's."""
    from transformers import AutoConfig

    from smartft.multitask import HEADS

    for folder in folders:
        head = folder / HEADS / spec.name
        config = AutoConfig.from_pretrained(head if head.is_dir() else folder)
        if config.num_labels != spec.num_labels:
            raise ConfigError(
                f"--teachers: {folder} has {config.num_labels} outputs but task {spec.name} "
                f"needs {spec.num_labels}"
            )
        ours = tuple(config.id2label[i] for i in range(config.num_labels))
        generic = all(label == f"LABEL_{i}" for i, label in enumerate(ours))
        if not generic and not spec.owns_labels(ours):
            raise ConfigError(
                f"--teachers: {folder} was trained with the labels ({', '.join(ours)}) but task "
                f"{spec.name} has ({', '.join(spec.id2label().values())})"
            )
