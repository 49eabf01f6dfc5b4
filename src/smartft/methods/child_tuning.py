"""Child-Tuning (Xu et al., EMNLP 2021): update only a child network of the pre-trained model.
F (task-free): a fresh Bernoulli gradient mask every update, rescaled by 1/p. D (task-driven): a
fixed mask, the top fraction of weights by Fisher information, computed before training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.errors import ConfigError
from smartft.masks import fisher_information, top_fraction_masks
from smartft.methods.base import Method, SetupInfo
from smartft.options import option
from smartft.parts import pretrained_parameters


@dataclass
class ChildTuningConfig:
    """Child-Tuning's mode and child size (default: D with reserve 0.3; the paper searches
    0.1-0.3 for D and 0.2-0.4 for F)."""

    child_mode: str = field(
        default="D", metadata=option("F: random mask each update; D: fixed Fisher mask", ("F", "D"))
    )
    child_reserve: float = field(
        default=0.3, metadata=option("p_D: fraction of pre-trained weights in the child")
    )
    child_fisher_batches: int = field(
        default=0, metadata=option("D: training batches for the Fisher information (0 = all)")
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.child_reserve <= 1.0:
            raise ConfigError(f"child_reserve must be in (0, 1], got {self.child_reserve}")


class ChildTuning(Method[ChildTuningConfig]):
    """Masks the pre-trained parameters' gradients before each update; the head is not masked."""

    name: ClassVar[str] = "child_tuning"
    summary: ClassVar[str] = "update only a child network: F random / D Fisher mask (~1x)"
    config_classes: ClassVar[tuple[type, ...]] = (ChildTuningConfig,)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.params: dict[str, nn.Parameter] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self.generator: torch.Generator | None = None

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        self.params = pretrained_parameters(model)
        self.generator = info.generator(next(model.parameters()).device, 1, per_process=False)
        if self.config.child_mode == "D":
            if info.train_batches is None:
                raise ConfigError("child_tuning D needs the training data to compute Fisher masks")
            scores = fisher_information(
                model,
                self.params,
                info.train_batches(),
                info.regression,
                self.config.child_fisher_batches,
            )
            self.masks = top_fraction_masks(scores, self.config.child_reserve)

    @torch.no_grad()
    def before_update(self, model: nn.Module) -> None:
        p = self.config.child_reserve
        for name, param in self.params.items():
            if param.grad is None:
                continue
            if self.config.child_mode == "D":
                param.grad.mul_(self.masks[name])
            else:
                keep = torch.rand(param.shape, generator=self.generator, device=param.device) < p
                param.grad.mul_(keep).div_(p)

    def counters(self) -> dict[str, int]:
        return {"child_size": int(sum(int(m.sum()) for m in self.masks.values()))}
