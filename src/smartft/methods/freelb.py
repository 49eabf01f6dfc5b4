"""FreeLB (Zhu et al., ICLR 2020): K ascent steps on the task loss against the gold labels, the
parameter gradient averaged over all K perturbed losses ("free" large-batch adversarial training).
The first of the K losses is the clean one (the perturbation starts at zero), so the loop's clean
forward is step 0; the averaging is a loss term like any other: `loss_freelb` adds the K − 1
perturbed losses and takes back (K − 1)/K of the clean loss the loop adds with weight 1."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.batch import model_inputs
from smartft.errors import ConfigError
from smartft.losses import task_loss
from smartft.methods.base import Method, SetupInfo
from smartft.options import option
from smartft.perturb import EmbeddingHook, normalize, project_ball
from smartft.precision import Precision, embedding_scale, warn_radius


@dataclass
class FreeLBConfig:
    """FreeLB's ascent (defaults: K = 3, α = 0.1, no norm bound, start after 20 updates)."""

    freelb_steps: int = field(default=3, metadata=option("K: perturbed losses averaged per step"))
    freelb_step_size: float = field(default=0.1, metadata=option("α: ascent step size"))
    freelb_max_norm: float = field(
        default=0.0, metadata=option("ε: per-example L2 bound of the perturbation (0 = none)")
    )
    freelb_start_step: int = field(
        default=20, metadata=option("plain updates before the adversarial steps begin")
    )

    def __post_init__(self) -> None:
        if self.freelb_steps < 1:
            raise ConfigError(f"freelb_steps must be ≥ 1, got {self.freelb_steps}")


class FreeLB(Method[FreeLBConfig]):
    """Σ_{t<K} L(x + δ_t, y) / K with δ_0 = 0 and δ_{t+1} = Π(δ_t + α ∇δ L / ‖∇δ L‖₂)."""

    name: ClassVar[str] = "freelb"
    summary: ClassVar[str] = (
        "K label-adversarial steps, gradients averaged over them (~3.7x at K=3)"
    )
    config_classes: ClassVar[tuple[type, ...]] = (FreeLBConfig,)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.hook: EmbeddingHook | None = None
        self.regression = False
        self.step = 0
        self.precision = Precision()

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        self.hook = EmbeddingHook(model)
        self.regression = info.regression
        self.precision = info.precision
        if info.precision.dtype != torch.float32 and info.train_batches is not None:
            # a step of L2 size α per example spreads over its tokens × embedding dimensions
            first = next(info.train_batches())
            tokens = float(first["attention_mask"].sum(-1).float().mean())
            size = self.config.freelb_step_size / math.sqrt(tokens * self.hook.dim)
            scale = embedding_scale(model)
            warn_radius("--freelb_step_size (per element)", size, scale, info.precision.dtype)

    def active(self) -> bool:
        return self.step >= self.config.freelb_start_step and self.config.freelb_steps > 1

    def _advance(self, delta: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        step = normalize(grad * mask, "l2", "example")
        delta = delta.detach() + self.config.freelb_step_size * step
        if self.config.freelb_max_norm > 0:
            delta = project_ball(delta, self.config.freelb_max_norm, "l2", "example")
        return (delta * mask).requires_grad_(True)

    def loss_terms(
        self, model: nn.Module, batch: dict[str, torch.Tensor], logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        assert self.hook is not None
        embedded = self.hook.clean_output()
        if not self.active() or embedded is None:
            self.hook.clear()
            return {}
        inputs, labels = model_inputs(batch), batch["labels"]
        mask = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))
        mask = mask.unsqueeze(-1).to(embedded.dtype)
        loss_clean = task_loss(logits, labels, self.regression)
        scale = self.precision.grad_scale()  # fp16: keeps small gradients from underflowing
        (grad,) = torch.autograd.grad(loss_clean * scale, embedded, retain_graph=True)
        delta = torch.zeros_like(embedded)
        losses = []
        for t in range(1, self.config.freelb_steps):
            delta = self._advance(delta, grad, mask)
            with self.hook.perturbed(delta):
                loss = task_loss(model(**inputs).logits, labels, self.regression)
            losses.append(loss)
            if t < self.config.freelb_steps - 1:
                (grad,) = torch.autograd.grad(loss * scale, delta, retain_graph=True)
        self.hook.clear()
        self.last = {"freelb_last_loss": float(losses[-1].detach())}
        k = self.config.freelb_steps
        # the loop adds the clean loss with weight 1; the objective gives it 1/K like the others
        return {"loss_freelb": (torch.stack(losses).sum() - (k - 1) * loss_clean) / k}

    def after_step(self, model: nn.Module) -> None:
        self.step += 1
