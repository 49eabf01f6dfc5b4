"""The method protocol: every training loop (smartft's recipe, `MethodTrainer`, `smartft bench`)
talks to a method only through this class."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

import torch
from torch import nn

from smartft.precision import Precision

C = TypeVar("C")
T = TypeVar("T")


@dataclass(frozen=True)
class SetupInfo:
    """What a method may need to know about the run it joins."""

    total_steps: int
    regression: bool | None  # None: it varies by batch (one output = regression), multi-task
    seed: int
    process_index: int = 0
    # a fresh, unshuffled pass over the run's training batches, for methods that look at the data
    # before training (Child-Tuning D's Fisher information); None where a loop cannot offer one
    train_batches: Callable[[], Iterator[dict[str, torch.Tensor]]] | None = None
    num_processes: int = 1
    # the working precision of forward passes: a method warns (PrecisionWarning) when its
    # perturbation is too small for it, and scales inner gradients by its grad_scale (fp16)
    precision: Precision = field(default_factory=Precision)
    kl_gradient: str = "full"  # symmetric KL: full gradient or mt-dnn's detached form

    def stream_seed(self, stream: int, per_process: bool) -> int:
        """The seed of a method's own random stream (so its draws never shift dropout or data
        order). `per_process`: distinct on every process (noise on each replica's batch);
        otherwise the same everywhere (masks applied to gradients that are synchronised)."""
        return self.seed * 7919 + 1000 * stream + (self.process_index if per_process else 0)

    def generator(self, device: torch.device, stream: int, per_process: bool) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.stream_seed(stream, per_process))


class Method(Generic[C]):
    """Plain fine-tuning: no extra loss terms, nothing to do around the step.

    A method turns (model, batch, clean logits) into named, already weighted loss terms that the
    loop adds to the task loss, and may act on the gradients or after each optimizer update.
    `model` is always the unwrapped module (never a DDP wrapper), so extra forwards need no
    gradient synchronisation. Its settings are dataclasses (`config_classes`, the first one its
    own, `self.config`); diagnostics for the log go into `self.last`.
    """

    name: ClassVar[str] = "plain"
    summary: ClassVar[str] = "standard fine-tuning: task loss only"
    config_classes: ClassVar[tuple[type, ...]] = ()

    def __init__(self, configs: Mapping[type, Any] | None = None) -> None:
        given = configs or {}
        self.configs: dict[type, Any] = {
            cls: given[cls] if given.get(cls) is not None else cls() for cls in self.config_classes
        }
        self.last: dict[str, float] = {}

    @property
    def config(self) -> C:
        """The method's own settings: an instance of its first config class."""
        return cast(C, self.configs[self.config_classes[0]])

    def settings(self, cls: type[T]) -> T:
        """Settings of another config class the method uses (e.g. ALICE's SMART settings)."""
        return cast(T, self.configs[cls])

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        """Called once after the model is on its device and before the first step."""

    def before_forward(
        self,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        backward: Callable[[torch.Tensor], None],
    ) -> None:
        """Called before every micro-batch's clean forward with the loop's own backward function
        (it applies gradient-accumulation and loss scaling): a method may run and
        back-propagate a graph of its own here, before the clean graph exists (SMART's
        low-memory mode)."""

    def loss_terms(
        self, model: nn.Module, batch: dict[str, torch.Tensor], logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Extra, weighted loss terms for this batch, named `loss_*`; the loop adds them to the
        task loss."""
        return {}

    def before_update(self, model: nn.Module) -> None:
        """Called when an update's gradients are complete, before clipping and the optimizer
        step (e.g. to mask gradients)."""

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer update (not after accumulation micro-steps)."""

    def log_values(self) -> dict[str, float]:
        """Diagnostics for the last batch (unweighted terms, norms, 0/1 flags); averaged per log
        line. Weighted loss terms are named `loss_*` to keep the two apart."""
        return dict(self.last)

    def counters(self) -> dict[str, int]:
        """Whole-run counts (e.g. skipped ascent steps) for `all_results.json`."""
        return {}

    def state_tensors(self) -> list[torch.Tensor]:
        """Tensors that must agree on every process (e.g. a teacher's weights)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """The method's own state for exact resume (beyond the model's weights): by default the
        state of every random stream it holds (`torch.Generator` and `random.Random`
        attributes); methods add their counters and buffers."""
        state: dict[str, Any] = {}
        for name, value in vars(self).items():
            if isinstance(value, torch.Generator):
                state[name] = value.get_state()
            elif isinstance(value, random.Random):
                state[name] = value.getstate()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            current = getattr(self, name, None)
            if isinstance(current, torch.Generator):
                current.set_state(value)
            elif isinstance(current, random.Random):
                current.setstate(value)

    def save(self, folder: Path) -> None:
        """Write the method's state into a checkpoint folder (weights-only pickle)."""
        state = self.state_dict()
        if state:
            torch.save(state, folder / f"{self.name}_state.pt")

    def load(self, folder: Path) -> None:
        """Restore what `save` wrote."""
        path = folder / f"{self.name}_state.pt"
        if path.is_file():
            self.load_state_dict(torch.load(path, weights_only=True))
