"""DPS (Zhang et al., 2022): dynamic parameter selection. Training alternates between stages that
update every weight and collect the gradient importance of the pre-trained linear weights, and
stages that update only the most important `keep` fraction of each such weight tensor (chosen from
the importance just collected). Only the gradient is masked: the optimizer's state still moves a
masked weight, as masking the gradient of an Adam update does. The head and the other parameters
(embeddings, LayerNorms, biases) are always updated."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from smartft.methods.base import Method, SetupInfo
from smartft.options import check_ranges, option
from smartft.parts import head_modules


@dataclass
class DPSConfig:
    """Subnetwork size and stage length (defaults: 0.3 and 5 % of training, the paper's)."""

    TITLE: ClassVar[str] = "DPS"  # its --help heading

    dps_keep: float = field(
        default=0.3,
        metadata=option(
            "fraction of each pre-trained linear weight updated in a masked stage",
            low=0,
            high=1,
            open_low=True,
        ),
    )
    dps_stage_ratio: float = field(
        default=0.05,
        metadata=option("stage length as a fraction of all updates", low=0, high=1, open_low=True),
    )

    def __post_init__(self) -> None:
        check_ranges(self)


def linear_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weight of every pre-trained nn.Linear (the head's excluded), by parameter name."""
    head = {id(m) for m in head_modules(model)}
    names = {id(p): n for n, p in model.named_parameters()}
    found: dict[str, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, nn.Linear | Conv1D) and id(module) not in head:
            weight = module.weight
            if isinstance(weight, nn.Parameter) and weight.requires_grad:
                found[names[id(weight)]] = weight
    return found


def top_per_tensor(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """A boolean mask of the top `fraction` of one tensor's entries by score."""
    flat = scores.flatten()
    keep = max(1, round(fraction * flat.numel()))
    threshold = torch.kthvalue(flat, flat.numel() - keep + 1).values
    return scores >= threshold


class DPS(Method[DPSConfig]):
    """Importance = squared gradient summed over a full stage; the next stage masks the gradient
    of each linear weight to its top `keep` fraction; then a full stage again, and so on."""

    name: ClassVar[str] = "dps"
    summary: ClassVar[str] = "alternating full / most-important-subnetwork stages (~1.1x)"
    config_classes: ClassVar[tuple[type, ...]] = (DPSConfig,)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.params: dict[str, nn.Parameter] = {}
        self.importance: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self.stage_length = 1
        self.step = 0

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        self.params = linear_weights(model)
        self.importance = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.stage_length = max(1, math.ceil(self.config.dps_stage_ratio * info.total_steps))

    def masked_stage(self) -> bool:
        return (self.step // self.stage_length) % 2 == 1

    @torch.no_grad()
    def before_update(self, model: nn.Module) -> None:
        masked = self.masked_stage()
        for name, param in self.params.items():
            if param.grad is None:
                continue
            if masked:
                param.grad.mul_(self.masks[name])
            else:
                self.importance[name] += param.grad.pow(2)

    def after_step(self, model: nn.Module) -> None:
        self.step += 1
        if self.step % self.stage_length == 0 and self.masked_stage():  # a full stage ended
            self.masks = {
                n: top_per_tensor(s, self.config.dps_keep) for n, s in self.importance.items()
            }
            for value in self.importance.values():
                value.zero_()

    def counters(self) -> dict[str, int]:
        return {"dps_stage_length": self.stage_length}

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "importance": self.importance, "masks": self.masks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.importance, self.masks = state["step"], state["importance"], state["masks"]
