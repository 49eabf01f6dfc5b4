"""The method protocol: the training loop only ever talks to a method through this class."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class SetupInfo:
    """What a method may need to know about the run it joins."""

    total_steps: int
    regression: bool
    seed: int
    process_index: int = 0
    # a fresh pass over the training batches (unshuffled), for methods that look at the data
    # before training (e.g. Child-Tuning D's Fisher information)
    train_batches: Callable[[], Iterator[dict[str, torch.Tensor]]] | None = None
    num_processes: int = 1

    def stream_seed(self, stream: int, per_process: bool) -> int:
        """The seed of a method's own random stream (so its draws never shift dropout or data
        order). `per_process`: distinct on every process (noise on each replica's batch);
        otherwise the same everywhere (masks applied to gradients that are synchronised)."""
        return self.seed * 7919 + 1000 * stream + (self.process_index if per_process else 0)

    def generator(self, device: torch.device, stream: int, per_process: bool) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.stream_seed(stream, per_process))


class Method:
    """Plain fine-tuning: no extra loss terms, nothing to do around the step.

    A method turns (model, batch, clean logits) into named, already weighted loss terms that the
    loop adds to the task loss, and may act after each optimizer update. `model` is always the
    unwrapped module (never a DDP wrapper), so extra forwards need no gradient synchronisation.
    """

    name: ClassVar[str] = "plain"
    summary: ClassVar[str] = "standard fine-tuning: task loss only"
    config_classes: ClassVar[tuple[type, ...]] = ()

    def __init__(self, configs: dict[type, Any]) -> None:
        self.configs = configs

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        """Called once after the model is on its device and before the first step."""

    def loss_terms(
        self, model: nn.Module, batch: dict[str, torch.Tensor], logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Extra, weighted loss terms for this batch; the loop adds them to the task loss."""
        return {}

    def task_loss_weight(self) -> float:
        """Weight of the clean task loss in this step's objective (FreeLB averages it with its
        perturbed losses)."""
        return 1.0

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

    def before_update(self, model: nn.Module) -> None:
        """Called when an update's gradients are complete, before clipping and the optimizer
        step (e.g. to mask gradients)."""

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer update (not after accumulation micro-steps)."""

    def log_values(self) -> dict[str, float]:
        """Diagnostics for the last batch (unweighted terms, norms, 0/1 flags); averaged per log
        line. Weighted loss terms are named `loss_*` to keep the two apart."""
        return {}

    def counters(self) -> dict[str, int]:
        """Whole-run counts (e.g. skipped ascent steps) for `all_results.json`."""
        return {}

    def state_tensors(self) -> list[torch.Tensor]:
        """Tensors that must agree on every process (e.g. a teacher's weights)."""
        return []

    def save(self, folder: Path) -> None:
        """Write the method's state (e.g. a teacher) into a checkpoint folder."""

    def load(self, folder: Path) -> None:
        """Restore what `save` wrote."""


RngState = tuple[torch.Tensor, torch.Tensor | None]


def rng_state(device: torch.device) -> RngState:
    """The generators dropout draws from on `device` (CPU, and CUDA when it runs there): saved
    before a forward and restored before a second one, the second draws the same dropout masks."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def set_rng_state(state: RngState, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without labels: what the model's forward takes."""
    return {k: v for k, v in batch.items() if k != "labels"}


HEAD_NAMES = ("classifier", "score", "pre_classifier", "qa_outputs")


def head_modules(model: nn.Module) -> list[nn.Linear]:
    """The linear layers of the task head (new at fine-tuning time, not pre-trained)."""
    found = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.split(".")[0] in HEAD_NAMES
    ]
    if not found:
        raise TypeError("cannot find the model's task head (classifier / score) linear layers")
    return found


def pretrained_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable parameters outside the task head: the ones that came from the checkpoint."""
    head = {id(p) for m in head_modules(model) for p in m.parameters()}
    return {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in head}
