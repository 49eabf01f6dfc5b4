"""LNSR (Hua et al., 2021): layer-wise noise stability regularization. Gaussian noise is added to
the input of one transformer layer and the change it causes in the outputs of that layer and every
layer above is penalised, so the network learns to be stable to small hidden-state noise.

The noised forward replays the clean forward's dropout masks (the random state is saved before the
clean forward and restored for the noised one): otherwise two independent dropout masks differ far
more than the noise does, the penalty measures dropout rather than noise (about 20 on MiniLM at
σ = 0, 30x the task loss) and the model learns nothing (RTE seed 1 stayed at the majority label)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.batch import model_inputs
from smartft.errors import ConfigError
from smartft.methods.base import Method, SetupInfo
from smartft.options import check_ranges, option
from smartft.parts import transformer_layers
from smartft.precision import warn_radius
from smartft.rng import RngState, rng_state, set_rng_state


@dataclass
class LNSRConfig:
    """Where the noise goes and how strong it is (our defaults; the paper tunes σ and λ)."""

    TITLE: ClassVar[str] = "LNSR"  # its --help heading

    lnsr_layer: int = field(
        default=0,
        metadata=option("index of the transformer layer whose input gets the noise", low=0),
    )
    lnsr_sigma: float = field(default=0.01, metadata=option("std of the Gaussian noise", low=0))
    lnsr_lambda: float = field(
        default=1.0, metadata=option("weight of the stability penalty", low=0)
    )

    def __post_init__(self) -> None:
        check_ranges(self)


def hidden(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[no-any-return]


class LNSR(Method[LNSRConfig]):
    """λ · mean over layers ≥ l of ‖h_j(x; noise) − h_j(x)‖² per real token."""

    name: ClassVar[str] = "lnsr"
    summary: ClassVar[str] = "noise at a hidden layer, penalise the change above it (~2x)"
    config_classes: ClassVar[tuple[type, ...]] = (LNSRConfig,)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.layers: list[nn.Module] = []
        self.captured: list[torch.Tensor] = []
        self.noise: torch.Tensor | None = None
        self.generator: torch.Generator | None = None
        self.clean_rng: RngState | None = None

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        try:
            stack = transformer_layers(model)
        except TypeError as err:
            raise ConfigError(f"lnsr: {err}") from None
        if self.config.lnsr_layer >= len(stack):
            raise ConfigError(f"lnsr_layer {self.config.lnsr_layer}: the model has {len(stack)}")
        self.layers = list(stack)[self.config.lnsr_layer :]
        self.layers[0].register_forward_pre_hook(self._add_noise, with_kwargs=True)
        for layer in self.layers:
            layer.register_forward_hook(self._capture)
        self.generator = info.generator(next(model.parameters()).device, 2, per_process=True)
        if info.precision.dtype != torch.float32 and info.train_batches is not None:
            scale = self.hidden_scale(model, next(info.train_batches()))
            warn_radius("--lnsr_sigma", self.config.lnsr_sigma, scale, info.precision.dtype)

    def hidden_scale(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
        """The median per-token ∞-norm of the hidden states the noise is added to (one batch,
        eval mode, no graph: no random numbers drawn)."""
        seen: list[torch.Tensor] = []

        def look(module: nn.Module, args: Any, kwargs: Any) -> None:
            states = args[0] if args else kwargs["hidden_states"]
            seen.append(states.detach().float().abs().amax(-1))

        handle = self.layers[0].register_forward_pre_hook(look, with_kwargs=True)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(**model_inputs(batch))
        finally:
            handle.remove()
            model.train(was_training)
        mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"])).bool()
        return float(seen[0][mask].median())

    def before_forward(
        self,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        backward: Callable[[torch.Tensor], None],
    ) -> None:
        self.clean_rng = rng_state(next(model.parameters()).device)

    def _add_noise(self, module: nn.Module, args: Any, kwargs: Any) -> Any:
        if self.noise is None:
            return None
        if args:
            return (args[0] + self.noise, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + self.noise}

    def _capture(self, module: nn.Module, args: Any, output: Any) -> None:
        if torch.is_grad_enabled():  # training forwards, not evaluation
            self.captured.append(hidden(output))

    def penalty(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Run the noised forward; compare with the outputs captured in the clean one."""
        if self.clean_rng is None:
            raise RuntimeError("lnsr: before_forward must run before each clean forward")
        clean, self.captured = self.captured[-len(self.layers) :], []
        assert self.generator is not None and len(clean) == len(self.layers)
        shape, device = clean[0].shape, clean[0].device
        self.noise = (
            torch.randn(shape, generator=self.generator, device=device) * self.config.lnsr_sigma
        )
        after_clean = rng_state(device)
        set_rng_state(self.clean_rng, device)  # the clean forward's dropout masks
        try:
            model(**inputs)
        finally:
            self.noise, self.clean_rng = None, None
            set_rng_state(after_clean, device)  # the run's random stream as without LNSR
        noised, self.captured = self.captured, []
        mask = inputs.get("attention_mask")
        weight = torch.ones(shape[:2], device=device) if mask is None else mask.float()
        total = sum(
            ((a - b).pow(2).sum(-1) * weight).sum() / weight.sum().clamp(min=1)
            for a, b in zip(noised, clean, strict=True)
        )
        return torch.as_tensor(total) / len(self.layers)

    def loss_terms(
        self, model: nn.Module, batch: dict[str, torch.Tensor], logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        value = self.penalty(model, model_inputs(batch))
        self.last = {"lnsr_penalty": float(value.detach())}
        return {"loss_lnsr": self.config.lnsr_lambda * value}
