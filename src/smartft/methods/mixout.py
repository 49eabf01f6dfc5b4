"""Mixout (Lee, Cho & Kang, ICLR 2020): like dropout, but a dropped weight falls back to its
pre-trained value instead of zero, which keeps fine-tuning near the starting point."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.errors import ConfigError
from smartft.methods.base import Method, SetupInfo
from smartft.options import option
from smartft.parts import head_modules


@dataclass
class MixoutConfig:
    """Mixout probability (default: the paper's 0.9 for BERT on small GLUE tasks)."""

    mixout_p: float = field(
        default=0.9,
        metadata=option("probability that a weight is replaced by its pre-trained value"),
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.mixout_p <= 1.0:
            raise ConfigError(f"mixout_p must be in [0, 1], got {self.mixout_p}")


def mixout(weight: torch.Tensor, target: torch.Tensor, p: float) -> torch.Tensor:
    """u + (1 − M) ⊙ (w − u) / (1 − p), M ~ Bernoulli(p): each weight is replaced by its
    pre-trained value u with probability p, and the rest rescaled so that E = w."""
    if p >= 1.0:
        return target
    keep = torch.rand_like(weight) >= p
    return target + keep * (weight - target) / (1.0 - p)


class MixoutLinear(nn.Linear):
    """An nn.Linear whose training forward uses mixout weights; evaluation uses the weights
    themselves, the expectation. Only the class changes, so checkpoints stay ordinary."""

    mixout_p: float
    mixout_target: torch.Tensor

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.mixout_p == 0:
            return super().forward(input)
        weight = mixout(self.weight, self.mixout_target, self.mixout_p)
        return nn.functional.linear(input, weight, self.bias)


def apply_mixout(model: nn.Module, p: float) -> int:
    """Turn every pre-trained nn.Linear (not the head) into a MixoutLinear; returns how many."""
    head = {id(m) for m in head_modules(model)}
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear and id(module) not in head:
            module.__class__ = MixoutLinear
            object.__setattr__(module, "mixout_p", p)
            module.register_buffer(
                "mixout_target", module.weight.detach().clone(), persistent=False
            )
            count += 1
    return count


class Mixout(Method[MixoutConfig]):
    """Mixout on the encoder's linear layers; the loop is untouched (it acts in the forward)."""

    name: ClassVar[str] = "mixout"
    summary: ClassVar[str] = "drop weights to their pre-trained values (~1.1x)"
    config_classes: ClassVar[tuple[type, ...]] = (MixoutConfig,)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.layers = 0

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        self.layers = apply_mixout(model, self.config.mixout_p)
        if self.layers == 0:
            raise ConfigError("mixout: the model has no nn.Linear layers outside its head")

    def counters(self) -> dict[str, int]:
        return {"mixout_layers": self.layers}
