"""SMART (Jiang et al., ACL 2020): smoothness-inducing adversarial regularization plus momentum
Bregman proximal point optimization. Both halves switch on and off independently (weight 0 = off,
and an off half costs nothing and draws no random numbers)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.batch import model_inputs, random_rows
from smartft.errors import ConfigError
from smartft.losses import output_divergence, regression_of
from smartft.methods.base import Method, SetupInfo
from smartft.regularizer import SmartConfig, SmartRegularizer
from smartft.rng import CleanPassMasks
from smartft.teacher import (
    TEACHER_WEIGHTS,
    BregmanConfig,
    MeanTeacher,
    load_teacher,
    make_teacher,
    own_bytes,
    save_teacher,
)

REGULARIZER_FILE = "smart_regularizer.pt"


def check_low_memory(config: SmartConfig, info: SetupInfo) -> None:
    """The low-memory mode's extra backward runs on the unwrapped model, outside the gradient
    synchronisation of multi-process training."""
    if config.smart_low_memory and info.num_processes > 1:
        raise ConfigError(
            f"smart_low_memory runs on one process (this run has {info.num_processes}); "
            "drop the flag for multi-process training"
        )


class Smart(Method[SmartConfig]):
    """R_s on word embeddings (λ_s) plus the mean-teacher Bregman term (μ)."""

    name: ClassVar[str] = "smart"
    summary: ClassVar[str] = "adversarial smoothness R_s + momentum Bregman proximal point (~3x)"
    config_classes: ClassVar[tuple[type, ...]] = (SmartConfig, BregmanConfig)

    def __init__(self, configs: dict[type, Any] | None = None) -> None:
        super().__init__(configs)
        self.bregman = self.settings(BregmanConfig)
        self.regularizer: SmartRegularizer | None = None
        self.teacher: MeanTeacher | None = None
        self.teacher_rows: torch.Generator | None = None  # fast mode's row draws for the teacher
        self.masks = CleanPassMasks()  # bregman_dropout=replay: the student's clean-pass masks
        self.regression: bool | None = False
        self.kl_gradient = "full"

    def setup(self, model: nn.Module, info: SetupInfo) -> None:
        self.regression, self.kl_gradient = info.regression, info.kl_gradient
        if self.bregman.bregman_mu > 0:  # copy the model before the regularizer hooks it
            self.teacher = make_teacher(model, self.bregman, info.total_steps)
            device = next(model.parameters()).device
            self.teacher_rows = info.generator(device, 3, per_process=True)
        if self.config.smart_lambda > 0:
            check_low_memory(self.config, info)
            seed = info.stream_seed(0, per_process=True)
            self.regularizer = SmartRegularizer(
                model,
                self.config,
                info.regression,
                seed,
                precision=info.precision,
                kl_gradient=info.kl_gradient,
            )

    def loss_terms(
        self, model: nn.Module, batch: dict[str, torch.Tensor], logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        inputs = model_inputs(batch)
        terms: dict[str, torch.Tensor] = {}
        self.last = {}
        if self.regularizer is not None:
            value = self.regularizer.penalty(inputs, logits)
            self.regularizer.hook.clear()
            self.last.update(self.regularizer.last)
            if value is not None:
                terms["loss_smart"] = self.config.smart_lambda * value
        if self.teacher is not None and self.teacher.active():
            assert self.teacher_rows is not None
            rows = random_rows(inputs, logits, self.bregman.bregman_fraction, self.teacher_rows)
            replay = self.bregman.bregman_dropout == "replay"
            kind = output_divergence(regression_of(logits, self.regression), self.kl_gradient)
            with self.masks.replay(logits.device) if replay else nullcontext():
                value = self.teacher.bregman(rows[0], rows[1], kind, dropout=replay)
            self.last["bregman_d"] = float(value.detach())
            self.last["bregman_beta"] = self.teacher.current_beta()
            terms["loss_bregman"] = self.bregman.bregman_mu * value
        return terms

    def before_forward(
        self,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        backward: Callable[[torch.Tensor], None],
    ) -> None:
        device = batch["input_ids"].device
        if self.bregman.bregman_dropout == "replay":
            self.masks.mark(device)
        if self.regularizer is None:
            return
        if self.config.smart_low_memory:  # (it marks the clean pass itself)
            self.regularizer.prepare(model_inputs(batch), backward, self.config.smart_lambda)
        else:
            self.regularizer.mark_clean_pass(device)

    def after_step(self, model: nn.Module) -> None:
        if self.teacher is not None:
            self.teacher.update(model)

    def counters(self) -> dict[str, int]:
        counts = {"smart_skipped_total": self.regularizer.skipped if self.regularizer else 0}
        if self.teacher is not None:  # its own memory: all of the model, or a LoRA run's adapters
            counts["teacher_own_bytes"] = own_bytes(self.teacher)
        return counts

    def state_tensors(self) -> list[torch.Tensor]:
        return list(self.teacher.model.state_dict().values()) if self.teacher else []

    def save(self, folder: Path) -> None:
        state: dict[str, Any] = {}
        if self.teacher is not None:
            save_teacher(self.teacher, folder)
            assert self.teacher_rows is not None
            state["teacher_rows"] = self.teacher_rows.get_state()
        if self.regularizer is not None:
            state.update(self.regularizer.state_dict())
        torch.save(state, folder / REGULARIZER_FILE)

    def load(self, folder: Path) -> None:
        if self.teacher is not None and not load_teacher(self.teacher, folder):
            raise FileNotFoundError(f"{folder} holds no SMART teacher ({TEACHER_WEIGHTS})")
        if not (folder / REGULARIZER_FILE).is_file():
            return
        state = torch.load(folder / REGULARIZER_FILE, weights_only=True)
        if self.teacher_rows is not None and "teacher_rows" in state:
            self.teacher_rows.set_state(state["teacher_rows"])
        if self.regularizer is not None:
            self.regularizer.load_state_dict(state)
