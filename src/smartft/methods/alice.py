"""ALICE (Pereira et al., 2020): SMART's virtual adversarial term plus an adversarial term
against the gold label, each with its own estimated perturbation. ALICE++ perturbs the input of a
randomly chosen transformer layer each step instead of the word embeddings."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.batch import model_inputs
from smartft.errors import ConfigError
from smartft.methods.base import Method, SetupInfo
from smartft.options import check_ranges, option
from smartft.perturb import LayerInputHook
from smartft.regularizer import SmartConfig, SmartRegularizer


@dataclass
class AliceConfig:
    """The label-adversarial term's weight and the ALICE++ switch (the virtual term's weight and
    the perturbation settings are SMART's: --smart_lambda, --smart_eps, ...)."""

    TITLE: ClassVar[str] = "ALICE"  # its --help heading

    alice_adv_lambda: float = field(
        default=1.0, metadata=option("weight of the adversarial term against the gold label", low=0)
    )
    alice_plus_plus: bool = field(
        default=False,
        metadata=option("ALICE++: perturb a random transformer layer's input each step"),
    )
    alice_adv_projection: str = field(
        default="unit",
        metadata=option(
            "the label term's perturbation: unit (unit ∞-norm per token, as the mt-dnn code ALICE "
            "is built on: large enough to change the prediction) or smart (the virtual term's "
            "settings; at the paper's ε = 1e-5 the term is then the clean loss under another "
            "dropout mask)",
            ("unit", "smart"),
        ),
    )

    def __post_init__(self) -> None:
        check_ranges(self)


class Alice(Method[AliceConfig]):
    """λ_v · R_virtual + λ_a · task-loss(f(x + δ_adv), y); two ascents, two adversarial passes."""

    name: ClassVar[str] = "alice"
    summary: ClassVar[str] = "virtual + label adversarial terms; ALICE++: random layer (~4.6x)"
    config_classes: ClassVar[tuple[type, ...]] = (AliceConfig, SmartConfig)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.smart = self.settings(SmartConfig)
        self.regularizer: SmartRegularizer | None = None
        self.layers: random.Random = random.Random(0)
        self.adv_config = self.smart

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        if self.smart.smart_low_memory:
            raise ConfigError("smart_low_memory is SMART's alone; ALICE does not support it")
        hook = LayerInputHook(model) if self.config.alice_plus_plus else None
        seed = info.stream_seed(0, per_process=True)
        self.regularizer = SmartRegularizer(
            model, self.smart, info.regression, seed, hook, info.precision, info.kl_gradient
        )
        self.layers = random.Random(seed)
        unit = self.config.alice_adv_projection == "unit"
        self.adv_config = replace(self.smart, smart_projection="unit") if unit else self.smart

    def before_forward(
        self,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        backward: Callable[[torch.Tensor], None],
    ) -> None:
        assert self.regularizer is not None
        self.regularizer.mark_clean_pass(batch["input_ids"].device)

    def loss_terms(
        self, model: nn.Module, batch: dict[str, torch.Tensor], logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        reg = self.regularizer
        assert reg is not None
        if isinstance(reg.hook, LayerInputHook):
            reg.hook.index = self.layers.randrange(len(reg.hook.layers))
        inputs = model_inputs(batch)
        terms: dict[str, torch.Tensor] = {}
        self.last = {}
        if self.smart.smart_lambda > 0:
            virtual = reg.penalty(inputs, logits)
            if virtual is not None:
                terms["loss_alice_virtual"] = self.smart.smart_lambda * virtual
                self.last["alice_virtual"] = float(virtual.detach())
        if self.config.alice_adv_lambda > 0:
            with reg.using(self.adv_config):
                adversarial = reg.penalty(inputs, logits, labels=batch["labels"])
            if adversarial is not None:
                terms["loss_alice_adv"] = self.config.alice_adv_lambda * adversarial
                self.last["alice_adv"] = float(adversarial.detach())
        reg.hook.clear()
        return terms

    def counters(self) -> dict[str, int]:
        return {"alice_skipped_total": self.regularizer.skipped if self.regularizer else 0}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.regularizer is not None:
            state["regularizer"] = self.regularizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict({k: v for k, v in state.items() if k != "regularizer"})
        if self.regularizer is not None and "regularizer" in state:
            self.regularizer.load_state_dict(state["regularizer"])
