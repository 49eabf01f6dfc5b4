"""FreeLB (Zhu et al., ICLR 2020): K ascent steps on the task loss against the gold labels, the
parameter gradient averaged over all K perturbed losses ("free" large-batch adversarial training).

As in the paper and its code: the perturbation starts at random inside the ball (uniform, of L2
size `freelb_init_mag` per example, spread over its tokens and dimensions), the K losses are taken
at δ_0 .. δ_{K-1}, every pass uses the same dropout masks (the code reuses them across its ascent
steps; here they are the clean pass's), and δ_{t+1} = Π(δ_t + α ∇δ L / ‖∇δ L‖₂). The loop's clean
forward is not part of the objective: `loss_freelb` adds the K perturbed losses / K and takes the
clean loss back out. With `freelb_init_mag 0` the start is zero and the clean pass is δ_0 itself
(K passes in all, one of them the loop's).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.batch import model_inputs
from smartft.losses import task_loss
from smartft.methods.base import Method, SetupInfo
from smartft.options import check_ranges, option
from smartft.perturb import EmbeddingHook, normalize, project_ball
from smartft.precision import Precision, embedding_scale, warn_radius
from smartft.rng import CleanPassMasks


@dataclass
class FreeLBConfig:
    """FreeLB's ascent (defaults: K = 3, α = 0.1, random start of size 0.1, no norm bound, start
    after 20 updates; the official GLUE scripts use α 0.04-0.2 and starts of 0.08-1.0)."""

    TITLE: ClassVar[str] = "FreeLB"  # its --help heading

    freelb_steps: int = field(
        default=3, metadata=option("K: perturbed losses averaged per update", low=1)
    )
    freelb_step_size: float = field(default=0.1, metadata=option("α: ascent step size", low=0))
    freelb_init_mag: float = field(
        default=0.1,
        metadata=option(
            "L2 size per example of the random start (uniform, over its tokens x dimensions); "
            "0 = start at zero, the clean pass being the first of the K",
            low=0,
        ),
    )
    freelb_max_norm: float = field(
        default=0.0,
        metadata=option("ε: per-example L2 bound of the perturbation (0 = none)", low=0),
    )
    freelb_start_step: int = field(
        default=20, metadata=option("plain updates before the adversarial steps begin", low=0)
    )

    def __post_init__(self) -> None:
        check_ranges(self)


class FreeLB(Method[FreeLBConfig]):
    """Σ_{t<K} L(x + δ_t, y) / K, δ_0 random in the ball, δ_{t+1} = Π(δ_t + α g_t / ‖g_t‖₂)."""

    name: ClassVar[str] = "freelb"
    summary: ClassVar[str] = (
        "K label-adversarial steps, gradients averaged over them (~3.7x at K=3)"
    )
    config_classes: ClassVar[tuple[type, ...]] = (FreeLBConfig,)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.hook: EmbeddingHook | None = None
        self.regression: bool | None = False
        self.step = 0
        self.precision = Precision()
        self.masks = CleanPassMasks()
        self.generator: torch.Generator | None = None

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        self.hook = EmbeddingHook(model)
        self.regression = info.regression
        self.precision = info.precision
        self.generator = info.generator(next(model.parameters()).device, 4, per_process=True)
        if info.precision.dtype != torch.float32 and info.train_batches is not None:
            # a step of L2 size α per example spreads over its tokens × embedding dimensions
            first = next(info.train_batches())
            tokens = float(first["attention_mask"].sum(-1).float().mean())
            size = self.config.freelb_step_size / math.sqrt(tokens * self.hook.dim)
            scale = embedding_scale(model)
            warn_radius("--freelb_step_size (per element)", size, scale, info.precision.dtype)

    def active(self) -> bool:
        return self.step >= self.config.freelb_start_step and self.config.freelb_steps > 1

    def before_forward(
        self,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        backward: Callable[[torch.Tensor], None],
    ) -> None:
        self.masks.mark(batch["input_ids"].device)

    def start(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """δ_0: uniform in [-1, 1], scaled to L2 size init_mag / √(tokens · dim) per element."""
        magnitude = self.config.freelb_init_mag
        if magnitude == 0:
            return torch.zeros_like(embedded)
        assert self.generator is not None
        noise = torch.rand(embedded.shape, generator=self.generator, device=embedded.device)
        sizes = mask.sum((1, 2), keepdim=True) * embedded.shape[-1]
        return (noise * 2 - 1) * mask * (magnitude / sizes.clamp(min=1).sqrt())

    def _advance(self, delta: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        step = normalize(grad * mask, "l2", "example")
        delta = delta.detach() + self.config.freelb_step_size * step
        if self.config.freelb_max_norm > 0:
            delta = project_ball(delta, self.config.freelb_max_norm, "l2", "example")
        return delta * mask

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
        scale = self.precision.grad_scale()  # fp16: keeps small gradients from underflowing
        loss_clean = task_loss(logits, labels, self.regression)
        losses: list[torch.Tensor] = []
        delta = self.start(embedded, mask)
        for t in range(self.config.freelb_steps):
            if t == 0 and self.config.freelb_init_mag == 0:  # δ_0 = 0: the clean pass itself
                loss, point = loss_clean, embedded
            else:
                point = delta.requires_grad_(True)
                with self.hook.perturbed(point), self.masks.replay(embedded.device):
                    loss = task_loss(model(**inputs).logits, labels, self.regression)
            losses.append(loss)
            if t < self.config.freelb_steps - 1:
                (grad,) = torch.autograd.grad(loss * scale, point, retain_graph=True)
                delta = self._advance(delta, grad, mask)
        self.hook.clear()
        self.last = {"freelb_last_loss": float(losses[-1].detach())}
        # the loop adds the clean loss with weight 1: the term takes it back out
        return {"loss_freelb": torch.stack(losses).mean() - loss_clean}

    def after_step(self, model: nn.Module) -> None:
        self.step += 1

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.step = int(state.get("step", 0))
