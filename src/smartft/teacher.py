"""The moving-average ("mean teacher") model of momentum Bregman proximal point optimization.

After every optimizer update the teacher moves towards the student, θ̃ ← β θ̃ + (1 − β) θ, with
β = `beta` for the first `warmup_steps` updates and `beta_final` after (the paper: 0.99 for the
first 10 %, then 0.999). β = 0 gives the vanilla variant (VBPP): the teacher is the previous
iterate. The Bregman term μ · ℓ_s(f(x; θ), f(x; θ̃)) keeps each update close to the teacher's
outputs on clean inputs: a trust region in function space.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from smartft.errors import ConfigError
from smartft.losses import divergence
from smartft.options import check_ranges, option
from smartft.tagging import keeps_in_copies


@dataclass
class BregmanConfig:
    """Momentum Bregman proximal point: a moving-average teacher and its trust-region term."""

    TITLE: ClassVar[str] = "SMART: the Bregman teacher"  # its --help heading

    bregman_mu: float = field(
        default=1.0,
        metadata=option("weight μ of the Bregman term; 0 turns the teacher off (paper: 1)", low=0),
    )
    bregman_beta: float = field(
        default=0.99,
        metadata=option("teacher momentum during warm-up", low=0, high=1, open_high=True),
    )
    bregman_beta_final: float = field(
        default=0.999, metadata=option("teacher momentum after", low=0, high=1, open_high=True)
    )
    bregman_warmup_ratio: float = field(
        default=0.1, metadata=option("fraction of updates that use bregman_beta", low=0, high=1)
    )
    bregman_mode: str = field(
        default="momentum",
        metadata=option(
            "momentum: moving average (MBPP); vanilla: previous iterate (VBPP)",
            ("momentum", "vanilla"),
        ),
    )
    bregman_fraction: float = field(
        default=1.0,
        metadata=option(
            "fast mode: share of each batch's examples the Bregman term (the teacher's forward) "
            "is computed on, drawn at random every step (1 = exact; the `smart-fast` preset: 0.25)",
            low=0,
            high=1,
            open_low=True,
        ),
    )
    bregman_horizon: float = field(
        default=0.0,
        metadata=option(
            "if > 0: the teacher averages about this fraction of the run's updates, one momentum "
            "β = 1 - 1/(horizon x updates) throughout (replaces bregman_beta, _beta_final and "
            "_warmup_ratio; 0 = the paper's schedule)",
            low=0,
            high=1,
        ),
    )
    bregman_start: float = field(
        default=0.0,
        metadata=option(
            "fraction of the updates before the Bregman term starts; until then the teacher "
            "copies the student, so it starts from the fine-tuned model, not the random head "
            "(e.g. the warm-up's 0.1, or 1/epochs for after the first epoch)",
            low=0,
            high=1,
            open_high=True,
        ),
    )
    bregman_dropout: str = field(
        default="off",
        metadata=option(
            "dropout in the teacher's forward: off (eval mode, the paper's mean teacher) or "
            "replay (the student's clean-pass masks: teacher and student compared alike)",
            ("off", "replay"),
        ),
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.bregman_dropout == "replay" and self.bregman_fraction < 1:
            raise ConfigError(
                "bregman_dropout=replay needs bregman_fraction=1 (a subset draws other masks)"
            )


def share_frozen(teacher: nn.Module, student: nn.Module) -> set[str]:
    """Make the teacher use the student's frozen parameters themselves (a LoRA run's base model:
    they never change, so a copy would only cost memory); returns their names."""
    shared = set()
    for name, param in student.named_parameters():
        if param.requires_grad:
            continue
        owner, _, leaf = name.rpartition(".")
        teacher.get_submodule(owner)._parameters[leaf] = param
        shared.add(name)
    return shared


def own_bytes(teacher: MeanTeacher) -> int:
    """Memory the teacher's own (averaged, not shared) parameters take."""
    return sum(
        p.numel() * p.element_size()
        for n, p in teacher.model.named_parameters()
        if n not in teacher.shared
    )


class MeanTeacher:
    """A frozen copy of the model that tracks the student by exponential moving average.

    The teacher runs in eval mode (no dropout) under `torch.no_grad()`, so it draws no random
    numbers and builds no graph.
    """

    def __init__(
        self,
        model: nn.Module,
        beta: float = 0.99,
        beta_final: float = 0.999,
        warmup_steps: int = 0,
        start_step: int = 0,
    ) -> None:
        for value in (beta, beta_final):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"teacher momentum must be in [0, 1), got {value}")
        self.model = copy.deepcopy(model)
        for module in self.model.modules():  # a hook on the student must not perturb the teacher
            for hooks in (module._forward_hooks, module._forward_pre_hooks):
                for key in [k for k, hook in hooks.items() if not keeps_in_copies(hook)]:
                    del hooks[key]
        self.shared = share_frozen(self.model, model)
        self.model.eval().requires_grad_(False)
        self.beta = beta
        self.beta_final = beta_final
        self.warmup_steps = warmup_steps
        self.start_step = start_step
        self.step = 0

    def active(self) -> bool:
        """Whether the Bregman term applies yet (before `start_step` the teacher copies)."""
        return self.step >= self.start_step

    def current_beta(self) -> float:
        if not self.active():
            return 0.0
        return self.beta if self.step < self.warmup_steps else self.beta_final

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        """θ̃ ← β θ̃ + (1 − β) θ for parameters; buffers are copied."""
        beta = self.current_beta()
        student_params = dict(student.named_parameters())
        for name, param in self.model.named_parameters():
            if name not in self.shared:
                param.lerp_(student_params[name].detach().to(param.dtype), 1.0 - beta)
        student_buffers = dict(student.named_buffers())
        for name, buffer in self.model.named_buffers():
            buffer.copy_(student_buffers[name])
        self.step += 1

    def outputs(self, inputs: dict[str, torch.Tensor], dropout: bool = False) -> torch.Tensor:
        """The teacher's logits: computed in inference mode (no autograd bookkeeping at all),
        then copied out of it so that the Bregman term can save them for its backward.
        `dropout`: in training mode (the caller sets the random state, to replay masks)."""
        self.model.train(dropout)
        try:
            with torch.inference_mode():
                logits = self.model(**inputs).logits
        finally:
            self.model.eval()
        return logits.clone()  # type: ignore[no-any-return]

    def bregman(
        self,
        inputs: dict[str, torch.Tensor],
        student_logits: torch.Tensor,
        kind: str,
        dropout: bool = False,
    ) -> torch.Tensor:
        """D_Breg = ℓ_s(f(x; θ), f(x; θ̃)) on the clean batch; gradient flows to the student only."""
        return divergence(kind, student_logits, self.outputs(inputs, dropout))

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.step = int(state["step"])


TEACHER_WEIGHTS = "smart_teacher.safetensors"
TEACHER_STATE = "smart_teacher.json"


def save_teacher(teacher: MeanTeacher, folder: str | Path) -> None:
    """Weights as safetensors (no pickle), the step as JSON."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(teacher.model, str(folder / TEACHER_WEIGHTS))
    (folder / TEACHER_STATE).write_text(json.dumps({"step": teacher.step}), encoding="utf-8")


def load_teacher(teacher: MeanTeacher, folder: str | Path) -> bool:
    """Restore a teacher saved by `save_teacher`; False if the folder holds none."""
    from safetensors.torch import load_model

    folder = Path(folder)
    if not (folder / TEACHER_WEIGHTS).is_file():
        return False
    load_model(teacher.model, str(folder / TEACHER_WEIGHTS))
    teacher.step = int(json.loads((folder / TEACHER_STATE).read_text(encoding="utf-8"))["step"])
    return True


def make_teacher(model: nn.Module, config: BregmanConfig, total_steps: int) -> MeanTeacher:
    """The teacher the config describes; vanilla mode is momentum 0 (the previous iterate)."""
    start = math.ceil(config.bregman_start * total_steps)
    if config.bregman_mode == "vanilla":
        return MeanTeacher(model, beta=0.0, beta_final=0.0, start_step=start)
    if config.bregman_horizon > 0:
        beta = 1.0 - 1.0 / max(1.0, config.bregman_horizon * total_steps)
        return MeanTeacher(model, beta, beta, 0, start)
    warmup = math.ceil(config.bregman_warmup_ratio * total_steps)
    return MeanTeacher(model, config.bregman_beta, config.bregman_beta_final, warmup, start)
