"""L2-SP (Li, Grandvalet & Davoine, ICML 2018): pull the pre-trained weights towards their
starting point instead of towards zero; the new head gets ordinary L2."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.methods.base import Method, SetupInfo
from smartft.options import check_ranges, option
from smartft.parts import head_modules, pretrained_parameters


@dataclass
class L2SPConfig:
    """Weights of the two penalties (defaults: the paper's α = 0.1, β = 0.01). Use it with
    `--weight_decay 0` (the preset does): AdamW's decay would pull towards zero as well."""

    TITLE: ClassVar[str] = "L2-SP"  # its --help heading

    l2sp_alpha: float = field(
        default=0.1,
        metadata=option(
            "α: weight of ½‖w − w₀‖² on the pre-trained parameters (the paper's 0.1 all but "
            "freezes MiniLM on RTE under AdamW; 0.01 or lower for transformers, see the README)",
            low=0,
        ),
    )
    l2sp_beta: float = field(
        default=0.01, metadata=option("β: weight of ½‖w‖² on the task head's parameters", low=0)
    )

    def __post_init__(self) -> None:
        check_ranges(self)


class L2SP(Method[L2SPConfig]):
    """α/2 · Σ‖w − w₀‖² over pre-trained parameters + β/2 · Σ‖w‖² over the head."""

    name: ClassVar[str] = "l2sp"
    summary: ClassVar[str] = "penalty on the distance to the pre-trained weights (~1x)"
    config_classes: ClassVar[tuple[type, ...]] = (L2SPConfig,)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.start: dict[str, torch.Tensor] = {}
        self.params: dict[str, nn.Parameter] = {}
        self.head: list[nn.Parameter] = []

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        self.params = pretrained_parameters(model)
        self.start = {n: p.detach().clone() for n, p in self.params.items()}
        self.head = [p for m in head_modules(model) for p in m.parameters() if p.requires_grad]

    def penalty(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(½‖w − w₀‖² summed over pre-trained tensors, ½‖w‖² summed over the head)."""
        drift = sum((p - self.start[n]).pow(2).sum() for n, p in self.params.items())
        head = sum(p.pow(2).sum() for p in self.head)
        return 0.5 * torch.as_tensor(drift), 0.5 * torch.as_tensor(head)

    def loss_terms(
        self, model: nn.Module, batch: dict[str, torch.Tensor], logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        drift, head = self.penalty()
        self.last = {"l2sp_drift": float(drift.detach())}
        return {"loss_l2sp": self.config.l2sp_alpha * drift + self.config.l2sp_beta * head}

    def state_tensors(self) -> list[torch.Tensor]:
        return list(self.start.values())
