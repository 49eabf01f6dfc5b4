"""Pieces of a training batch: what the model's forward takes, and random subsets of rows."""

from __future__ import annotations

import torch

TARGETS = ("labels", "soft_labels")


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without its targets (labels, distillation targets): what the model takes."""
    return {k: v for k, v in batch.items() if k not in TARGETS}


def random_rows(
    inputs: dict[str, torch.Tensor],
    logits: torch.Tensor,
    fraction: float,
    generator: torch.Generator,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """Fast mode: a random `fraction` of the rows (inputs, their clean logits and their indices),
    cut to their longest real length. At fraction 1 the batch itself and no random draw."""
    batch, length = inputs["input_ids"].shape[:2]
    count = max(1, round(batch * fraction))
    if count >= batch:
        return inputs, logits, None
    rows = torch.randperm(batch, generator=generator, device=logits.device)[:count].sort()[0]
    mask = inputs.get("attention_mask")
    keep = length
    if mask is not None:
        keep = int(mask[rows].sum(-1).max())
        if bool(mask[rows][:, keep:].any()):  # not right-padded: keep every position
            keep = length
    subset = {
        k: v[rows][:, :keep] if v.dim() >= 2 and v.shape[1] == length else v[rows]
        for k, v in inputs.items()
    }
    return subset, logits[rows], rows
