"""DPS (Zhang et al., 2022): dynamic parameter selection. Training runs in stages; during each
stage the gradient importance of every pre-trained weight is accumulated, and the next stage
updates only the most important `keep` fraction of them (the first stage updates all)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.errors import ConfigError
from smartft.masks import top_fraction_masks
from smartft.methods.base import Method, SetupInfo
from smartft.options import option
from smartft.parts import pretrained_parameters

STATE_FILE = "dps_state.pt"


@dataclass
class DPSConfig:
    """Subnetwork size and stage length (defaults: 0.3 and 5 % of training, the paper's)."""

    dps_keep: float = field(
        default=0.3, metadata=option("fraction of pre-trained weights updated in a stage")
    )
    dps_stage_ratio: float = field(
        default=0.05, metadata=option("stage length as a fraction of all updates")
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.dps_keep <= 1.0 or not 0.0 < self.dps_stage_ratio <= 1.0:
            raise ConfigError("dps_keep and dps_stage_ratio must be in (0, 1]")


class DPS(Method[DPSConfig]):
    """Importance = accumulated squared gradient (before masking) over the current stage; the
    head is always trained. Weights outside the subnetwork are held exactly where they are
    (restored after the optimizer step, so neither Adam's momentum nor weight decay moves them)."""

    name: ClassVar[str] = "dps"
    summary: ClassVar[str] = "staged updates of the most important subnetwork (~1.35x)"
    config_classes: ClassVar[tuple[type, ...]] = (DPSConfig,)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.params: dict[str, nn.Parameter] = {}
        self.importance: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self.held: dict[str, torch.Tensor] = {}
        self.stage_length = 1
        self.step = 0

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        self.params = pretrained_parameters(model)
        self.importance = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.stage_length = max(1, math.ceil(self.config.dps_stage_ratio * info.total_steps))

    @torch.no_grad()
    def before_update(self, model: nn.Module) -> None:
        for name, param in self.params.items():
            if param.grad is None:
                continue
            self.importance[name] += param.grad.pow(2)
            if self.masks:
                param.grad.mul_(self.masks[name])
                self.held[name] = param.detach().clone()

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for name, saved in self.held.items():
            param = self.params[name]
            param.copy_(torch.where(self.masks[name], param, saved))
        self.held = {}
        self.step += 1
        if self.step % self.stage_length == 0:  # a stage ends: choose the next subnetwork
            self.masks = top_fraction_masks(self.importance, self.config.dps_keep)
            for value in self.importance.values():
                value.zero_()

    def counters(self) -> dict[str, int]:
        return {"dps_stage_length": self.stage_length}

    def save(self, folder: Path) -> None:
        state = {"step": self.step, "importance": self.importance, "masks": self.masks}
        torch.save(state, folder / STATE_FILE)

    def load(self, folder: Path) -> None:
        state = torch.load(folder / STATE_FILE, weights_only=True)
        self.step, self.importance, self.masks = state["step"], state["importance"], state["masks"]
