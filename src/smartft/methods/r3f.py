"""R3F / R4F (Aghajanyan et al., ICLR 2021): a smoothness term from *random* noise on the word
embeddings, with no ascent step; R4F also holds the output layer's spectral norm at 1."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.batch import model_inputs
from smartft.losses import divergence, output_divergence, regression_of
from smartft.methods.base import Method, SetupInfo
from smartft.options import check_ranges, option
from smartft.parts import head_modules
from smartft.perturb import EmbeddingHook, eval_mode
from smartft.precision import embedding_scale, warn_radius
from smartft.rng import CleanPassMasks


@dataclass
class R3FConfig:
    """R3F's noise and weight (defaults: the paper's, ε = 1e-5 normal noise, λ = 1)."""

    TITLE: ClassVar[str] = "R3F / R4F"  # its --help heading

    r3f_lambda: float = field(
        default=1.0,
        metadata=option("weight of the symmetric KL between clean and noised outputs", low=0),
    )
    r3f_eps: float = field(
        default=1e-5, metadata=option("noise scale: std (normal) or half-width (uniform)", low=0)
    )
    r3f_noise: str = field(
        default="normal", metadata=option("noise distribution", ("normal", "uniform"))
    )
    r3f_dropout: str = field(
        default="independent",
        metadata=option(
            "dropout in the noised pass: independent (fresh masks, as the paper), replay (the "
            "clean pass's masks: the term measures the noise alone), off (no dropout, against "
            "one more clean pass without dropout)",
            ("independent", "replay", "off"),
        ),
    )

    def __post_init__(self) -> None:
        check_ranges(self)


class R3F(Method[R3FConfig]):
    """λ · ℓ_s(f(x + z), f(x)), z random: one extra forward and backward, no ascent pass."""

    name: ClassVar[str] = "r3f"
    summary: ClassVar[str] = "random-noise smoothness term, no ascent step (~2x)"
    config_classes: ClassVar[tuple[type, ...]] = (R3FConfig,)
    spectral_head: ClassVar[bool] = False

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.hook: EmbeddingHook | None = None
        self.generator: torch.Generator | None = None
        self.masks = CleanPassMasks()
        self.regression: bool | None = False
        self.kl_gradient = "full"

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        self.regression, self.kl_gradient = info.regression, info.kl_gradient
        if info.precision.dtype != torch.float32:
            scale = embedding_scale(model)
            warn_radius("--r3f_eps", self.config.r3f_eps, scale, info.precision.dtype)
        self.hook = EmbeddingHook(model)
        self.generator = info.generator(next(model.parameters()).device, 0, per_process=True)
        if self.spectral_head:
            self.after_step(model)

    def noise(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        assert self.generator is not None
        eps = self.config.r3f_eps
        if self.config.r3f_noise == "uniform":
            return (torch.rand(shape, generator=self.generator, device=device) * 2 - 1) * eps
        return torch.randn(shape, generator=self.generator, device=device) * eps

    def before_forward(
        self,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        backward: Callable[[torch.Tensor], None],
    ) -> None:
        if self.config.r3f_dropout == "replay":
            self.masks.mark(batch["input_ids"].device)

    def loss_terms(
        self, model: nn.Module, batch: dict[str, torch.Tensor], logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        assert self.hook is not None
        inputs = model_inputs(batch)
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask", torch.ones_like(ids)).unsqueeze(-1).float()
        noise = self.noise((*ids.shape, self.hook.dim), ids.device) * mask
        mode = self.config.r3f_dropout
        if mode == "off":
            with eval_mode(model):  # the reference: no dropout either
                logits = model(**inputs).logits
        dropout = (
            self.masks.replay(ids.device)
            if mode == "replay"
            else eval_mode(model)
            if mode == "off"
            else nullcontext()
        )
        with self.hook.perturbed(noise), dropout:
            noised = model(**inputs).logits
        self.hook.clear()
        kind = output_divergence(regression_of(logits, self.regression), self.kl_gradient)
        value = divergence(kind, noised, logits)
        self.last = {"r3f_divergence": float(value.detach())}
        return {"loss_r3f": self.config.r3f_lambda * value}

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """R4F: divide the head's output layer by its largest singular value. Always, not only
        above 1: spectral normalisation fixes the norm at 1, and a fresh head (std 0.02) sits far
        below 1, where a ≤ 1 bound would never act and R4F would be R3F."""
        if not self.spectral_head:
            return
        weight = head_modules(model)[-1].weight
        sigma = float(torch.linalg.matrix_norm(weight.float(), ord=2))
        if sigma > 0:
            weight.div_(sigma)


class R4F(R3F):
    """R3F plus spectral normalisation of the classification head's output layer (the one that
    makes the logits, as in the paper's code): before training and after every update its weight
    is divided by its largest singular value. The paper reparametrises the layer instead; projecting
    after the update keeps the saved model an ordinary one."""

    name: ClassVar[str] = "r4f"
    summary: ClassVar[str] = "R3F + spectrally normalised classification head (~2x)"
    spectral_head: ClassVar[bool] = True
