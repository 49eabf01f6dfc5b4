"""SMART's smoothness-inducing adversarial regularizer R_s, usable from any training loop.

For each example it looks for the perturbation of the word embeddings, inside a small ball, that
most changes the model's output, and returns how much it changes it. SMART, ALICE and the
`SmartTrainer` integration all build on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from smartft.batch import model_inputs, random_rows
from smartft.errors import ConfigError
from smartft.losses import divergence, output_divergence, regression_of, task_loss
from smartft.options import check_ranges, option
from smartft.perturb import EmbeddingHook, LayerInputHook, ascend, eval_mode, frozen, norm
from smartft.precision import Precision, embedding_scale, warn_radius
from smartft.rng import CleanPassMasks, RngState, rng_state, set_rng_state


@dataclass
class SmartConfig:
    """SMART's adversarial smoothness regularizer R_s (defaults: the paper)."""

    TITLE: ClassVar[str] = "SMART: the smoothness regularizer R_s"  # its --help heading

    smart_lambda: float = field(
        default=1.0, metadata=option("weight λ_s of R_s; 0 turns it off (paper: 1, 3 or 5)", low=0)
    )
    smart_eps: float = field(
        default=1e-5,
        metadata=option(
            "radius ε of the perturbation ball (projection=ball), or ball radius as a fraction of "
            "each token's embedding norm (projection=relative); ignored by projection=unit",
            low=0,
        ),
    )
    smart_step_size: float = field(default=1e-3, metadata=option("ascent step size η", low=0))
    smart_noise_std: float = field(
        default=1e-5, metadata=option("std σ of the random start", low=0)
    )
    smart_steps: int = field(default=1, metadata=option("ascent steps K (paper: 1)", low=1))
    smart_norm: str = field(
        default="inf", metadata=option("norm for step normalisation and projection", ("inf", "l2"))
    )
    smart_norm_scope: str = field(
        default="token",
        metadata=option("norms taken per token or per example", ("token", "example")),
    )
    smart_projection: str = field(
        default="ball",
        metadata=option(
            "ball: clip to the ε-ball (paper); unit: rescale to unit norm (reference code); "
            "relative: a ball whose radius, start noise and step are fractions of each token's "
            "own word-embedding norm (one setting carries across models)",
            ("ball", "unit", "relative"),
        ),
    )
    smart_dropout: str = field(
        default="independent",
        metadata=option(
            "dropout in the ascent and adversarial passes: independent (fresh masks, as the paper "
            "and reference code), replay (the clean pass's masks: R_s measures the perturbation "
            "alone), off (no dropout, against one more clean pass without dropout)",
            ("independent", "replay", "off"),
        ),
    )
    smart_fraction: float = field(
        default=1.0,
        metadata=option(
            "fast mode: share of each batch's examples R_s is computed on, drawn at random every "
            "step (1 = exact SMART; the `smart-fast` preset: 0.25)",
            low=0,
            high=1,
            open_low=True,
        ),
    )
    smart_low_memory: bool = field(
        default=False,
        metadata=option(
            "exact SMART with one graph alive at a time: the adversarial branch is "
            "back-propagated before the clean graph is built (one more, graph-free forward); "
            "one process only"
        ),
    )
    smart_loss: str = field(
        default="auto",
        metadata=option(
            "inner (ascent) loss; auto = symmetric KL, or squared error for regression",
            ("auto", "sym_kl", "kl", "mse"),
        ),
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.smart_projection == "relative" and self.smart_norm_scope != "token":
            raise ConfigError(
                "smart_projection=relative measures each token: smart_norm_scope=token"
            )
        if self.smart_dropout == "replay" and self.smart_fraction < 1:
            raise ConfigError(
                "smart_dropout=replay needs smart_fraction=1 (a subset of rows draws other masks)"
            )
        if self.smart_dropout == "off" and self.smart_low_memory:
            raise ConfigError("smart_dropout=off is not available with smart_low_memory")


Prepared = tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]


class Estimate(NamedTuple):
    """What the ascent found for one batch: the (fast-mode) rows and their perturbation."""

    inputs: dict[str, torch.Tensor]
    logits: torch.Tensor
    rows: torch.Tensor | None
    labels: torch.Tensor | None
    delta: torch.Tensor
    mask: torch.Tensor


class SmartRegularizer:
    """λ_s · R_s for one batch, usable from any training loop.

    >>> reg = SmartRegularizer(model, SmartConfig(smart_lambda=1.0))
    >>> logits = model(**inputs).logits
    >>> loss = task_loss + reg(inputs, logits)

    It registers a forward hook on the model's word embeddings (remove with `close()`). The
    perturbation noise uses its own generator, so it never shifts dropout or data order.
    """

    def __init__(
        self,
        model: nn.Module,
        config: SmartConfig | None = None,
        regression: bool | None = False,
        seed: int = 0,
        hook: EmbeddingHook | LayerInputHook | None = None,
        precision: Precision | None = None,
        kl_gradient: str = "full",
    ) -> None:
        self.model = model
        self.kl_gradient = kl_gradient
        self.config = config or SmartConfig()
        self.regression = regression
        self.hook = hook or EmbeddingHook(model)
        self.precision = precision or Precision()
        self.check_radius()
        self.masks = CleanPassMasks()
        self.seed = seed
        self._generator: torch.Generator | None = None
        self.skipped = 0
        self.last: dict[str, float] = {}
        # low-memory mode: (rows, ∂R_s/∂clean logits, R_s) or None if skipped, and the
        # generators' state after the adversarial branch; set by `prepare`, used by `penalty`
        self._prepared: tuple[Prepared | None, RngState] | None = None

    def check_radius(self) -> None:
        """Warn when ε is below what the working precision represents on the embeddings."""
        projection, dtype = self.config.smart_projection, self.precision.dtype
        if projection == "relative" and not isinstance(self.hook, EmbeddingHook):
            raise ConfigError("smart_projection=relative perturbs word embeddings, not layers")
        if dtype == torch.float32 or projection == "unit":
            return
        if projection == "relative":
            warn_radius("--smart_eps (relative)", self.config.smart_eps, 1.0, dtype)
        elif isinstance(self.hook, EmbeddingHook):
            scale = embedding_scale(self.model)
            warn_radius("--smart_eps", self.config.smart_eps, scale, dtype)

    @contextmanager
    def using(self, config: SmartConfig) -> Iterator[None]:
        """Other perturbation settings for the passes inside (ALICE's label term)."""
        saved, self.config = self.config, config
        try:
            yield
        finally:
            self.config = saved

    def mark_clean_pass(self, device: torch.device) -> None:
        """Call just before each clean forward when smart_dropout=replay (the methods do)."""
        if self.config.smart_dropout == "replay":
            self.masks.mark(device)

    def _dropout(self, device: torch.device) -> AbstractContextManager[None]:
        """How the extra passes treat dropout (smart_dropout)."""
        mode = self.config.smart_dropout
        if mode == "replay":
            return self.masks.replay(device)
        if mode == "off":
            return eval_mode(self.model)
        return nullcontext()

    def inner_loss(self, logits: torch.Tensor) -> str:
        kind = self.config.smart_loss
        return output_divergence(regression_of(logits, self.regression)) if kind == "auto" else kind

    def outer(self, logits: torch.Tensor) -> str:
        """ℓ_s between two outputs: symmetric KL, or squared error for regression."""
        return output_divergence(regression_of(logits, self.regression), self.kl_gradient)

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def _forward(
        self, inputs: dict[str, torch.Tensor], rows: torch.Tensor | None, ascent: bool
    ) -> Any:
        """f(x + δ) on the (sub-)batch. Ascent passes run with parameters frozen and the clean
        embedding output detached: they only need ∂/∂δ, so they save far less for backward."""

        def run(delta: torch.Tensor) -> torch.Tensor:
            dropout = self._dropout(delta.device)
            with self.hook.perturbed(delta, rows, detach=ascent), dropout:
                if ascent:
                    with frozen(self.model):
                        return self.model(**inputs).logits  # type: ignore[no-any-return]
                return self.model(**inputs).logits  # type: ignore[no-any-return]

        return run

    def penalty(
        self,
        inputs: dict[str, torch.Tensor],
        logits: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Unweighted R_s, or None when the ascent gradient was not finite (counted, skipped).
        With `labels`, the label-adversarial term instead (ALICE): the ascent and the value use
        the task loss against the gold labels rather than the divergence from the clean output.
        After `prepare` (low-memory mode) it returns the prepared value instead."""
        if self._prepared is not None:
            return self._prepared_value(logits)
        if self.config.smart_dropout == "off" and labels is None:
            with eval_mode(self.model):  # the reference R_s compares with: no dropout either
                logits = self.model(**inputs).logits
        found = self._estimate(inputs, logits, labels)
        if found is None:
            return None
        inputs, logits, rows, labels, delta, mask = found
        perturbed = self._forward(inputs, rows, ascent=False)(delta)
        value = self._value(perturbed, logits, labels)
        self._record(value, delta, mask)
        return value

    def _estimate(
        self, inputs: dict[str, torch.Tensor], logits: torch.Tensor, labels: torch.Tensor | None
    ) -> Estimate | None:
        """The rows regularized (fast mode) and the ascent's δ for them, or None if skipped."""
        cfg = self.config
        generator = self.generator(logits.device)
        inputs, logits, rows = random_rows(inputs, logits, cfg.smart_fraction, generator)
        if labels is not None and rows is not None:
            labels = labels[rows]
        input_ids = inputs["input_ids"]
        mask = inputs.get("attention_mask", torch.ones_like(input_ids))
        mask = mask.unsqueeze(-1).float()
        shape = (*input_ids.shape, self.hook.dim)
        start = torch.randn(shape, generator=generator, device=generator.device)
        target, inner = logits.detach(), self.inner_loss(logits)
        size: float | torch.Tensor = 1.0
        projection = cfg.smart_projection
        if projection == "relative":  # every size a fraction of the token's own embedding
            assert isinstance(self.hook, EmbeddingHook)
            size = self.hook.token_norms(input_ids, cfg.smart_norm)
            projection = "ball"

        def inner_loss(out: torch.Tensor) -> torch.Tensor:
            if labels is not None:
                return task_loss(out, labels, self.regression)
            return divergence(inner, out, target)

        delta = ascend(
            self._forward(inputs, rows, ascent=True),
            start * (cfg.smart_noise_std * size),
            mask,
            inner_loss,
            steps=cfg.smart_steps,
            step_size=cfg.smart_step_size * size,
            projection=projection,
            eps=cfg.smart_eps * size,
            kind=cfg.smart_norm,
            scope=cfg.smart_norm_scope,
            scale=self.precision.grad_scale(),
        )
        if delta is None:
            self.skipped += 1
            self.last = {"smart_skipped": 1.0}
            return None
        return Estimate(inputs, logits, rows, labels, delta, mask)

    def _value(
        self, perturbed: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor | None
    ) -> torch.Tensor:
        """ℓ_s(f(x + δ), f(x)), or the task loss of f(x + δ) against the gold labels."""
        if labels is not None:
            return task_loss(perturbed, labels, self.regression)
        return divergence(self.outer(logits), perturbed, logits)

    def _record(self, value: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor) -> None:
        sizes = norm(delta, self.config.smart_norm, "token").squeeze(-1)
        token_mask = mask.squeeze(-1) > 0
        self.last = {
            "smart_rs": float(value.detach()),
            "smart_skipped": 0.0,
            "smart_delta_norm": float(sizes[token_mask].mean()) if token_mask.any() else 0.0,
        }

    def prepare(
        self,
        inputs: dict[str, torch.Tensor],
        backward: Callable[[torch.Tensor], None],
        weight: float,
    ) -> None:
        """Low-memory mode, before the clean forward: a clean pass without a graph gives the
        target, then the ascent and the adversarial branch run and `weight`·R_s is
        back-propagated (through the loop's `backward`), so no two graphs are ever alive at
        once. R_s's gradient with respect to the clean logits is kept for the clean backward
        (`penalty` then returns a value that carries it), and the generators are rewound so
        the loop's clean forward draws the same dropout masks as the pass here. The sum is the
        exact SMART gradient, for one more forward (a clean one without a graph)."""
        self.hook.clear()
        device = inputs["input_ids"].device
        before = rng_state(device)
        self.mark_clean_pass(device)
        with torch.no_grad():
            clean = self.model(**inputs).logits
        found = self._estimate(inputs, clean, None)
        result: Prepared | None = None
        if found is not None:
            inputs, clean, rows, _, delta, mask = found
            perturbed = self._forward(inputs, rows, ascent=False)(delta)
            leaf = clean.detach().requires_grad_(True)
            value = self._value(perturbed, leaf, None)
            (grad,) = torch.autograd.grad(value, leaf, retain_graph=True)
            backward(weight * value)
            self._record(value, delta, mask)
            result = (rows, grad, value.detach())
        self._prepared = (result, rng_state(device))
        set_rng_state(before, device)

    def _prepared_value(self, logits: torch.Tensor) -> torch.Tensor | None:
        """R_s's value with its gradient with respect to these (replayed) clean logits; puts
        the generators where the straightforward order would leave them."""
        assert self._prepared is not None
        result, after = self._prepared
        self._prepared = None
        set_rng_state(after, logits.device)
        if result is None:
            return None
        rows, grad, value = result
        part = logits if rows is None else logits[rows]
        return value + ((part - part.detach()) * grad).sum()

    def __call__(self, inputs: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        """λ_s · R_s (a zero tensor when the term is off or was skipped)."""
        if self.config.smart_lambda == 0:
            return logits.new_zeros(())
        value = self.penalty(model_inputs(inputs), logits)
        self.hook.clear()
        if value is None:
            return logits.new_zeros(())
        return self.config.smart_lambda * value

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"skipped": self.skipped}
        if self._generator is not None:
            state["generator"] = self._generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped = int(state.get("skipped", 0))
        if "generator" in state:
            generator = self.generator(
                torch.device("cpu") if self._generator is None else self._generator.device
            )
            generator.set_state(state["generator"])

    def close(self) -> None:
        self.hook.remove()
