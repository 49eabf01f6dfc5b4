"""Where and how SMART perturbs inputs: a hook on the word embeddings, noise, ascent, projections.

The perturbation is added to the *word-embedding output* through a forward hook, before position
and token-type embeddings and LayerNorm. Feeding the full embedding output back as `inputs_embeds`
(what the reference code does) applies positions and LayerNorm twice, so even a zero perturbation
changes the function; the hook keeps the clean function exactly and works for any Hugging Face
encoder whose `get_input_embeddings()` is the word-embedding table, inside DDP too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from smartft.parts import transformer_layers

TINY = 1e-12


class EmbeddingHook:
    """Adds `delta` to the word-embedding output while a perturbation is active.

    It also keeps the clean pass's word-embedding output (when that pass builds a graph) and
    reuses it for the perturbed passes of the same batch instead of a second lookup. The value is
    identical, and the adversarial branch's gradient then joins the clean one before the
    embedding backward, so the vocabulary-sized gradient of the embedding table is built once
    per step instead of once per branch.
    """

    def __init__(self, model: nn.Module) -> None:
        embeddings = model.get_input_embeddings()  # type: ignore[operator]
        if not isinstance(embeddings, nn.Module):
            raise TypeError("the model has no input embedding module to perturb")
        self.embeddings: nn.Module = embeddings
        self.delta: torch.Tensor | None = None
        self.rows: torch.Tensor | None = None
        self.detach = False
        self._clean: tuple[torch.Tensor, torch.Tensor, int] | None = None
        self._handle = embeddings.register_forward_hook(self._hook)

    @property
    def dim(self) -> int:
        weight = getattr(self.embeddings, "weight", None)
        if weight is None:
            raise TypeError("the input embedding module has no weight")
        return int(weight.shape[-1])

    def token_norms(self, ids: torch.Tensor, kind: str) -> torch.Tensor:
        """Each token's word-embedding ∞- or L2-norm, [batch, length, 1] (no gradient)."""
        weight = getattr(self.embeddings, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise TypeError("the input embedding module has no weight")
        return norm(weight.detach()[ids].float(), kind, "token")

    def _version(self) -> int:
        weight = getattr(self.embeddings, "weight", None)
        return int(weight._version) if isinstance(weight, torch.Tensor) else -1

    def _reusable(self, ids: torch.Tensor) -> torch.Tensor | None:
        """The clean output for these ids (rows `self.rows`, same or shorter length), if kept."""
        if self._clean is None or self._clean[2] != self._version():
            return None
        clean_ids, clean_out, _ = self._clean
        if self.rows is not None:
            clean_ids, clean_out = clean_ids[self.rows], clean_out[self.rows]
        length = ids.shape[-1]
        if clean_ids.shape[:-1] != ids.shape[:-1] or clean_ids.shape[-1] < length:
            return None
        if not torch.equal(clean_ids[..., :length], ids):
            return None
        return clean_out[..., :length, :]

    def _hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        ids = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        if self.delta is None:
            if ids is not None and output.requires_grad:
                self._clean = (ids, output, self._version())
            return output
        if ids is not None:
            clean = self._reusable(ids)
            if clean is not None:
                output = clean.detach() if self.detach else clean
        return output + self.delta.to(output.dtype)

    @contextmanager
    def perturbed(
        self, delta: torch.Tensor, rows: torch.Tensor | None = None, detach: bool = False
    ) -> Iterator[None]:
        """Add `delta` in the forwards run inside; `rows` says which rows of the last clean batch
        these inputs are (for reuse), `detach` cuts the reused clean output from its graph."""
        self.delta, self.rows, self.detach = delta, rows, detach
        try:
            yield
        finally:
            self.delta, self.rows, self.detach = None, None, False

    def clean_output(self) -> torch.Tensor | None:
        """The last clean pass's word-embedding output (in its graph), if kept."""
        return self._clean[1] if self._clean is not None else None

    def clear(self) -> None:
        """Forget the clean pass's output (call when the batch is done)."""
        self._clean = None

    def remove(self) -> None:
        self._handle.remove()
        self.clear()


class LayerInputHook:
    """Adds `delta` to the hidden states entering transformer layer `index` (ALICE++ perturbs a
    randomly chosen layer). Same interface as EmbeddingHook, without the clean-output reuse."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = transformer_layers(model)
        self.index = 0
        self.delta: torch.Tensor | None = None
        config: Any = model.config
        self.dim = int(config.hidden_size)
        self._handles = [
            layer.register_forward_pre_hook(self._make_hook(i), with_kwargs=True)
            for i, layer in enumerate(self.layers)
        ]

    def _make_hook(self, position: int) -> Any:
        def hook(module: nn.Module, args: Any, kwargs: Any) -> Any:
            if self.delta is None or position != self.index:
                return None
            if args:
                return (args[0] + self.delta, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + self.delta}

        return hook

    @contextmanager
    def perturbed(
        self, delta: torch.Tensor, rows: torch.Tensor | None = None, detach: bool = False
    ) -> Iterator[None]:
        self.delta = delta
        try:
            yield
        finally:
            self.delta = None

    def clear(self) -> None:
        """Nothing is kept between passes."""

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Parameters stop requiring gradients inside: a forward builds no parameter-gradient paths,
    so it saves only what a gradient with respect to its inputs needs (less memory)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for param in params:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in params:
            param.requires_grad_(True)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off inside (the model's training flag restored after)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _reduce_dims(delta: torch.Tensor, scope: str) -> tuple[int, ...]:
    if scope == "token":
        return (-1,)
    if scope == "example":
        return tuple(range(1, delta.dim()))
    raise ValueError(f"unknown norm scope '{scope}' (token, example)")


def norm(delta: torch.Tensor, kind: str, scope: str) -> torch.Tensor:
    """Per-token or per-example ∞- or L2-norm, kept broadcastable against `delta`."""
    dims = _reduce_dims(delta, scope)
    if kind == "inf":
        return delta.abs().amax(dim=dims, keepdim=True)
    if kind == "l2":
        return delta.pow(2).sum(dim=dims, keepdim=True).sqrt()
    raise ValueError(f"unknown norm '{kind}' (inf, l2)")


def normalize(grad: torch.Tensor, kind: str, scope: str) -> torch.Tensor:
    """The ascent direction: the gradient scaled to unit norm (zero stays zero)."""
    return grad / (norm(grad, kind, scope) + TINY)


def project_ball(
    delta: torch.Tensor, eps: float | torch.Tensor, kind: str, scope: str
) -> torch.Tensor:
    """Projection onto {‖δ‖ ≤ ε}: a clip for ∞-norm, a rescale for L2 (the paper's method)."""
    if kind == "inf":  # per token or per example, the ∞-ball is the same box on every coordinate
        if isinstance(eps, torch.Tensor):  # a radius per token
            return torch.maximum(torch.minimum(delta, eps), -eps)
        return delta.clamp(-eps, eps)
    size = norm(delta, kind, scope)
    return delta * torch.clamp(eps / (size + TINY), max=1.0)


def renormalize_unit(delta: torch.Tensor, kind: str, scope: str) -> torch.Tensor:
    """Rescale to unit norm, as the reference code does after every step (ε is then only a
    divide-by-zero guard, so the effective radius is 1 whatever ε says)."""
    return delta / (norm(delta, kind, scope) + TINY)


def project(
    delta: torch.Tensor, projection: str, eps: float | torch.Tensor, kind: str, scope: str
) -> torch.Tensor:
    if projection == "ball":
        return project_ball(delta, eps, kind, scope)
    if projection == "unit":
        return renormalize_unit(delta, kind, scope)
    raise ValueError(f"unknown projection '{projection}' (ball, unit)")


def ascend(
    forward: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    mask: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    steps: int,
    step_size: float | torch.Tensor,
    projection: str,
    eps: float | torch.Tensor,
    kind: str,
    scope: str,
    scale: float = 1.0,
) -> torch.Tensor | None:
    """Projected gradient ascent on the perturbation only; None if a gradient is not finite.

    `forward(delta)` returns the model output with `delta` added to the word embeddings; only
    `delta` is differentiated (`torch.autograd.grad`), so no parameter gradient is accumulated.
    `scale` multiplies the loss first (fp16's gradient scale, so that small gradients do not
    underflow); the step uses the gradient's direction only, so it changes nothing else.
    """
    delta = start * mask
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = loss_fn(forward(delta)) * scale
        (grad,) = torch.autograd.grad(loss, delta)
        if not torch.isfinite(grad).all():
            return None
        step = normalize(grad * mask, kind, scope)
        delta = project(delta.detach() + step_size * step, projection, eps, kind, scope) * mask
    return delta.detach()
