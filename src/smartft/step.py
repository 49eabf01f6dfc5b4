"""One training step of any method: the code the recipe runs and `smartft bench` times."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from smartft.batch import model_inputs
from smartft.losses import distillation_loss, task_loss
from smartft.methods import Method
from smartft.precision import Precision


@dataclass
class StepOutput:
    loss: torch.Tensor
    task_loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    grad_norm: float  # NaN on accumulation micro-steps, which clip nothing
    finite: bool
    overflow: bool = False  # fp16: the scaler found inf/NaN gradients and skipped the update


def train_step(
    model: torch.nn.Module,
    unwrapped: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    method: Method[Any],
    accelerator: Any,
    optimizer: torch.optim.Optimizer,
    max_grad_norm: float,
    regression: bool | None,
    precision: Precision | None = None,
    distill: tuple[float, float] | None = None,
) -> StepOutput:
    """One micro-batch: clean forward, the method's terms, one backward, and when the accumulation
    window closes, clipping and the update (skipped if the loss or gradient norm is not finite).
    Forward passes, the method's included, run in the working precision. With `distill` =
    (α, T) and soft targets in the batch, the task loss mixes labels and soft targets.
    Shared by the recipe and `smartft bench`, so the benchmark times exactly this code."""
    precision = precision or Precision()
    scaler = precision.scaler

    def backward(loss: torch.Tensor) -> None:
        accelerator.backward(loss if scaler is None else scaler.scale(loss))

    with accelerator.accumulate(model):
        with precision.autocast():
            method.before_forward(unwrapped, batch, backward)
            logits = model(**model_inputs(batch)).logits
            loss_task = task_loss(logits, batch["labels"], regression)
            if distill is not None and "soft_labels" in batch:
                alpha, temperature = distill
                soft = distillation_loss(logits, batch["soft_labels"], temperature)
                loss_task = (1 - alpha) * loss_task + alpha * soft
            terms = method.loss_terms(unwrapped, batch, logits)
            loss = loss_task + sum(terms.values())
        backward(loss)
        grad_norm, finite, overflow = math.nan, True, False
        if accelerator.sync_gradients:
            if scaler is not None:
                scaler.unscale_(optimizer)  # the method and the clipping see true gradients
            method.before_update(unwrapped)
            limit = max_grad_norm if max_grad_norm > 0 else math.inf
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), limit))
            finite = math.isfinite(grad_norm) and math.isfinite(float(loss.detach()))
            if scaler is not None:  # it skips an overflowing update and lowers its scale
                overflow = math.isfinite(float(loss.detach())) and not finite
                scaler.step(optimizer)
                scaler.update()
            elif finite:
                optimizer.step()
        optimizer.zero_grad()
    return StepOutput(loss, loss_task, terms, grad_norm, finite, overflow)
