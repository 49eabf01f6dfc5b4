"""Mixout (Lee, Cho & Kang, ICLR 2020): like dropout, but a dropped unit falls back to its
pre-trained value instead of zero, which keeps fine-tuning near the starting point.

As the paper and its code: the mask is drawn per input neuron of each linear layer (one Bernoulli
draw per column of the weight, shared by every output row), and the paper's example turns
dropout off, which mixout replaces. `--mixout_mask weight` draws one per weight instead
("mixconnect"); `--mixout_keep_dropout` keeps the model's dropout. The masks come from the method's
own generator, checkpointed, so they never shift dropout or data order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from smartft.errors import ConfigError
from smartft.methods.base import Method, SetupInfo
from smartft.options import check_ranges, option
from smartft.parts import disable_dropout, head_modules


@dataclass
class MixoutConfig:
    """Mixout probability (default: the paper's 0.9 for BERT on small GLUE tasks)."""

    TITLE: ClassVar[str] = "Mixout"  # its --help heading

    mixout_p: float = field(
        default=0.9,
        metadata=option(
            "probability that a unit is replaced by its pre-trained value", low=0, high=1
        ),
    )
    mixout_mask: str = field(
        default="neuron",
        metadata=option(
            "neuron: one draw per input neuron (the paper's code); weight: one per weight",
            ("neuron", "weight"),
        ),
    )
    mixout_keep_dropout: bool = field(
        default=False,
        metadata=option("keep the model's dropout (the paper's example sets it to 0)"),
    )

    def __post_init__(self) -> None:
        check_ranges(self)


def mixout(
    weight: torch.Tensor, target: torch.Tensor, p: float, keep: torch.Tensor
) -> torch.Tensor:
    """u + M ⊙ (w − u) / (1 − p) with M the `keep` mask (Bernoulli(1 − p), broadcast over the
    weight): each unit falls back to its pre-trained value u with probability p, the rest is
    rescaled so that E = w."""
    if p >= 1.0:
        return target
    return target + keep * (weight - target) / (1.0 - p)


def mixed_weight(layer: Any, inputs_axis: int) -> torch.Tensor:
    """The layer's weight with units mixed out; `inputs_axis` is the axis of input neurons."""
    shape = list(layer.weight.shape)
    if layer.mixout_per_neuron:
        shape = [n if axis == inputs_axis else 1 for axis, n in enumerate(shape)]
    draw = torch.rand(shape, generator=layer.mixout_generator, device=layer.weight.device)
    return mixout(layer.weight, layer.mixout_target, layer.mixout_p, draw >= layer.mixout_p)


class MixoutLinear(nn.Linear):
    """An nn.Linear whose training forward uses mixout weights; evaluation uses the weights
    themselves, the expectation. Only the class changes, so checkpoints stay ordinary."""

    mixout_p: float
    mixout_target: torch.Tensor
    mixout_per_neuron: bool
    mixout_generator: torch.Generator

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.mixout_p == 0:
            return super().forward(input)
        return nn.functional.linear(input, mixed_weight(self, inputs_axis=1), self.bias)


class MixoutConv1D(Conv1D):  # type: ignore[misc]
    """GPT-2's Conv1D (a linear layer with its weight stored [in, out]) under mixout."""

    mixout_p: float
    mixout_target: torch.Tensor
    mixout_per_neuron: bool
    mixout_generator: torch.Generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.mixout_p == 0:
            return super().forward(x)  # type: ignore[no-any-return,no-untyped-call]
        size = (*x.size()[:-1], self.nf)
        weight = mixed_weight(self, inputs_axis=0)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), weight).view(size)


def apply_mixout(model: nn.Module, p: float, per_neuron: bool, generator: torch.Generator) -> int:
    """Turn every trainable pre-trained linear layer (nn.Linear, or GPT-2's Conv1D; not the
    head) into its mixout version; returns how many."""
    head = {id(m) for m in head_modules(model)}
    count = 0
    for module in model.modules():
        kind = {nn.Linear: MixoutLinear, Conv1D: MixoutConv1D}.get(type(module))
        weight: Any = getattr(module, "weight", None)
        if kind is None or id(module) in head or not weight.requires_grad:
            continue
        module.__class__ = kind
        object.__setattr__(module, "mixout_p", p)
        object.__setattr__(module, "mixout_per_neuron", per_neuron)
        object.__setattr__(module, "mixout_generator", generator)
        module.register_buffer("mixout_target", weight.detach().clone(), persistent=False)
        count += 1
    return count


class Mixout(Method[MixoutConfig]):
    """Mixout on the encoder's linear layers; the loop is untouched (it acts in the forward)."""

    name: ClassVar[str] = "mixout"
    summary: ClassVar[str] = "drop units to their pre-trained values (~1.1x)"
    config_classes: ClassVar[tuple[type, ...]] = (MixoutConfig,)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.layers = 0
        self.generator: torch.Generator | None = None

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        # like dropout's, each process draws its own masks for its own batch
        self.generator = info.generator(next(model.parameters()).device, 5, per_process=True)
        per_neuron = self.config.mixout_mask == "neuron"
        self.layers = apply_mixout(model, self.config.mixout_p, per_neuron, self.generator)
        if self.layers == 0:
            raise ConfigError("mixout: the model has no trainable linear layers outside its head")
        if not self.config.mixout_keep_dropout:
            disable_dropout(model)

    def counters(self) -> dict[str, int]:
        return {"mixout_layers": self.layers}
