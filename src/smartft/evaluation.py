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
from smartft.metrics import class_balance, compute_metrics
from smartft.precision import Precision
from smartft.span import SpanLayout, score_span_layout, stack_windows, window_outputs
from smartft.tagging import TOKEN_MASK, TagLayout, score_tags

Layout = TagLayout | SpanLayout | None


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
    windows: list[torch.Tensor] = []
    with torch.no_grad(), (precision or Precision()).autocast():
        for batch in tqdm(loader, desc="eval", leave=False, disable=not show):
            output = model(**model_inputs(batch))
            if getattr(output, "start_logits", None) is not None:  # span: whole windows
                windows += window_outputs(accelerator, output, batch)
                continue
            logits = output.logits.float()
            if TOKEN_MASK in batch:  # tagging: a variable number of rows per sentence
                rows, gold = gather_tokens(accelerator, batch, logits)
                outputs.append(rows)
                if gold is not None:
                    labels.append(gold)
                continue
            if "labels" in batch:
                logits, gold = accelerator.gather_for_metrics((logits, batch["labels"]))
                labels.append(gold.cpu().numpy().astype(np.float64))
            else:
                logits = accelerator.gather_for_metrics(logits)
            outputs.append(logits.cpu().numpy().astype(np.float64))
    model.train(was_training)
    if windows:  # the answers are in the layout, not in per-window labels
        return stack_windows(windows), None
    return np.concatenate(outputs), (np.concatenate(labels) if labels else None)


def gather_tokens(
    accelerator: Any, batch: dict[str, torch.Tensor], logits: torch.Tensor
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """A tagging batch's outputs (and tags) from every process: each process's sentences hold
    different numbers of tokens, so they travel as one object per sentence (which also lets
    accelerate drop the duplicates that pad the last batch)."""
    counts = batch[TOKEN_MASK].sum(-1).tolist()
    pieces = torch.split(logits.cpu().double(), counts)
    tags = torch.split(batch["labels"].cpu().double(), counts) if "labels" in batch else None
    sentences = list(zip(pieces, tags or pieces, strict=True))
    if accelerator.num_processes > 1:
        sentences = accelerator.gather_for_metrics(sentences, use_gather_object=True)
    rows = np.concatenate([p.numpy() for p, _ in sentences])
    gold = np.concatenate([t.numpy() for _, t in sentences]) if tags is not None else None
    return rows, gold


def to_predictions(outputs: NDArray[np.float64], regression: bool) -> NDArray[np.float64]:
    return outputs[:, 0] if regression else outputs.argmax(-1).astype(np.float64)


def score(
    spec: TaskSpec,
    outputs: NDArray[np.float64],
    labels: NDArray[np.float64] | None,
    layout: Layout = None,
) -> dict[str, float]:
    """The task's metrics; a tagging task's are over whole sentences (`layout` places each
    output in its sentence and holds the sentences' gold tags), a span task's over questions
    (`layout` maps windows to questions and holds their reference answers)."""
    if spec.tagging:
        assert isinstance(layout, TagLayout) and spec.labels is not None
        return score_tags(outputs, layout, spec.labels)
    if spec.shape == "span":
        assert isinstance(layout, SpanLayout)
        return score_span_layout(outputs, layout)
    if labels is None:
        raise ValueError(f"scoring {spec.name} needs labels")
    predictions = to_predictions(outputs, spec.is_regression)
    metrics = compute_metrics(spec.metrics, predictions, labels)
    if spec.shape == "sentence" and not spec.is_regression:
        metrics.update(class_balance(predictions, labels))
    return metrics
