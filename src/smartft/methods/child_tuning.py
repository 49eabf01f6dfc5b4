"""Child-Tuning (Xu et al., EMNLP 2021): update only a child network of the model.

D (task-driven): a fixed mask over the transformer layers' parameters (those named `layer`, as the
paper's code selects them), the top fraction by Fisher information; the Fisher information is the
squared gradient of the task loss, each parameter's gradient clipped to norm 1 first, averaged over
the training batches in training mode (dropout on), as the code computes it before training.
F (task-free): a fresh Bernoulli(p) mask over every parameter's gradient at each update (the head's
too), rescaled by 1/p. Embeddings, pooler and head are not masked under D."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.errors import ConfigError
from smartft.masks import fisher_information, top_fraction_masks
from smartft.methods.base import Method, SetupInfo
from smartft.options import check_ranges, option
from smartft.parts import transformer_layers


@dataclass
class ChildTuningConfig:
    """Child-Tuning's mode and child size (default: D with reserve 0.3; the paper searches
    0.1-0.3 for D and 0.2-0.4 for F)."""

    TITLE: ClassVar[str] = "Child-Tuning"  # its --help heading

    child_mode: str = field(
        default="D", metadata=option("F: random mask each update; D: fixed Fisher mask", ("F", "D"))
    )
    child_reserve: float = field(
        default=0.3,
        metadata=option(
            "p: fraction of the masked parameters in the child", low=0, high=1, open_low=True
        ),
    )
    child_fisher_batches: int = field(
        default=0,
        metadata=option("D: training batches for the Fisher information (0 = all)", low=0),
    )
    child_fisher_clip: float = field(
        default=1.0,
        metadata=option(
            "D: each parameter's gradient clipped to this norm in the Fisher pass", low=0
        ),
    )

    def __post_init__(self) -> None:
        check_ranges(self)


def layer_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable parameters of the transformer layers (the code's `'layer' in name` on BERT;
    found by structure, so GPT-2's `h.N` and Llama's `layers.N` count too)."""
    try:
        stack = transformer_layers(model)
    except TypeError as err:
        raise ConfigError(f"child_tuning D: {err}") from None
    inside = {id(p) for p in stack.parameters()}
    return {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) in inside}


class ChildTuning(Method[ChildTuningConfig]):
    """Masks gradients before each update: D a fixed Fisher mask on the layers, F a random one."""

    name: ClassVar[str] = "child_tuning"
    summary: ClassVar[str] = "update only a child network: F random / D Fisher mask (~1x)"
    config_classes: ClassVar[tuple[type, ...]] = (ChildTuningConfig,)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.params: dict[str, nn.Parameter] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self.generator: torch.Generator | None = None

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        self.generator = info.generator(next(model.parameters()).device, 1, per_process=False)
        if self.config.child_mode == "F":
            self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
            return
        if info.train_batches is None:
            raise ConfigError("child_tuning D needs the training data to compute Fisher masks")
        self.params = layer_parameters(model)
        scores = fisher_information(
            model,
            self.params,
            info.train_batches(),
            info.regression,
            self.config.child_fisher_batches,
            clip=self.config.child_fisher_clip,
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
