"""Parameter importance and the masks chosen from it (Child-Tuning D, DPS)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from smartft.batch import model_inputs
from smartft.losses import task_loss


def fisher_information(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    batches: Iterable[dict[str, torch.Tensor]],
    regression: bool | None,
    limit: int = 0,
    clip: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared gradient of the task loss, in training mode (dropout on,
    as Child-Tuning's code computes it); with `clip` > 0 each parameter's gradient is first
    clipped to that norm on its own."""
    scores = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.train()
    count = 0
    for index, batch in enumerate(batches):
        if limit and index >= limit:
            break
        model.zero_grad()
        logits = model(**model_inputs(batch)).logits
        loss = task_loss(logits, batch["labels"], regression)
        loss.backward()  # type: ignore[no-untyped-call]
        count += 1
        for name, param in params.items():
            if param.grad is None:
                continue
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(param, clip)
            scores[name] += param.grad.detach().pow(2)
    model.zero_grad()
    model.train(was_training)
    return {n: s / max(count, 1) for n, s in scores.items()}


def top_fraction_masks(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Boolean masks keeping the top `fraction` of all entries by score (one global threshold)."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = max(1, round(fraction * flat.numel()))
    threshold = torch.kthvalue(flat, flat.numel() - keep + 1).values
    return {n: s >= threshold for n, s in scores.items()}
