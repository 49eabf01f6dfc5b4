"""Model outputs over a loader, and the task's metrics from them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from smartft.batch import model_inputs
from smartft.data.tasks import TaskSpec
from smartft.metrics import compute_metrics
from smartft.precision import Precision


def predict_outputs(
    model: Any,
    loader: DataLoader[Any],
    accelerator: Any,
    show: bool,
    precision: Precision | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Logits (or scores) and labels over a loader, gathered across processes without
    duplicates; forward passes in the working precision, outputs in float64."""
    was_training = model.training
    model.eval()
    outputs: list[NDArray[np.float64]] = []
    labels: list[NDArray[np.float64]] = []
    with torch.no_grad(), (precision or Precision()).autocast():
        for batch in tqdm(loader, desc="eval", leave=False, disable=not show):
            logits = model(**model_inputs(batch)).logits.float()
            if "labels" in batch:
                logits, gold = accelerator.gather_for_metrics((logits, batch["labels"]))
                labels.append(gold.cpu().numpy().astype(np.float64))
            else:
                logits = accelerator.gather_for_metrics(logits)
            outputs.append(logits.cpu().numpy().astype(np.float64))
    model.train(was_training)
    return np.concatenate(outputs), (np.concatenate(labels) if labels else None)


def to_predictions(outputs: NDArray[np.float64], regression: bool) -> NDArray[np.float64]:
    return outputs[:, 0] if regression else outputs.argmax(-1).astype(np.float64)


def score(
    spec: TaskSpec, outputs: NDArray[np.float64], labels: NDArray[np.float64]
) -> dict[str, float]:
    return compute_metrics(spec.metrics, to_predictions(outputs, spec.is_regression), labels)
